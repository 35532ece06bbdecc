"""interp: a mechanistic-interpretability toolkit on TransformerLens' ``TransformerBridge``.

Load a model with :func:`load`, run it once with :func:`capture`, and read activations from the
returned :class:`Capture`.
"""

from interp import circuits, journey, patching, reference, rome, store
from interp.circuits import Circuit, find_circuit
from interp.core import (
    ALIASES,
    Capture,
    ModelInfo,
    NotCapturedError,
    Tokenized,
    capture,
    check_checkpoint_dir,
    check_head,
    check_layer,
    expand_kv_heads,
    load,
    model_info,
    resolve_names,
    str_tokens,
    to_single_token,
    tokenize,
)
from interp.generation import Generation, NextToken, SpeculativeGeneration, generate, next_token, speculative_generate
from interp.heads import HeadCensus, HeadKnockout, InductionReport, find_induction_heads, head_census, knock_out_head
from interp.journey import analogy
from interp.lens import LensResult, TunedLens, logit_lens
from interp.patching import ActivationPatching, PathPatching, activation_patching, path_patching
from interp.tracing import TraceResult, causal_trace
from interp.views import (
    ACTIVATION_SITES,
    ActivationView,
    AttentionView,
    PositionSummary,
    activation_view,
    attention_view,
)

__all__ = [
    "ACTIVATION_SITES",
    "ALIASES",
    "ActivationPatching",
    "ActivationView",
    "AttentionView",
    "Capture",
    "Circuit",
    "Generation",
    "HeadCensus",
    "HeadKnockout",
    "InductionReport",
    "LensResult",
    "ModelInfo",
    "NextToken",
    "NotCapturedError",
    "PathPatching",
    "PositionSummary",
    "SpeculativeGeneration",
    "Tokenized",
    "TraceResult",
    "TunedLens",
    "activation_patching",
    "activation_view",
    "analogy",
    "attention_view",
    "capture",
    "causal_trace",
    "check_checkpoint_dir",
    "check_head",
    "check_layer",
    "circuits",
    "expand_kv_heads",
    "find_circuit",
    "find_induction_heads",
    "generate",
    "head_census",
    "journey",
    "knock_out_head",
    "load",
    "logit_lens",
    "model_info",
    "next_token",
    "patching",
    "path_patching",
    "reference",
    "resolve_names",
    "rome",
    "speculative_generate",
    "store",
    "str_tokens",
    "to_single_token",
    "tokenize",
]
