"""Activations of a corpus on disk, and the max-activating examples of any unit read from them.

:func:`build` streams a corpus through a model and stores chosen sites (resumable, shard by shard, optionally
on Ray workers); :func:`open` reopens a store; :meth:`ActivationStore.top_examples` answers "where does this
neuron or direction fire hardest?" exactly, with contexts, a histogram and the direct logit effect.
"""

from interp.store.activation_store import ActivationStore
from interp.store.activation_store import open_store as open
from interp.store.building import build
from interp.store.examples import LogitEffect, TopExamples, logit_effect, top_examples, unit_activations

__all__ = [
    "ActivationStore",
    "LogitEffect",
    "TopExamples",
    "build",
    "logit_effect",
    "open",
    "top_examples",
    "unit_activations",
]
