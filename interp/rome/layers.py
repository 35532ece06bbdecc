"""Which block a ROME edit goes into: the one whose MLP output at the subject carries the fact, by causal tracing."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path
from typing import Any

import torch

from interp.core.locking import holds_model
from interp.core.files import atomic_write_text
from interp.core.tokens import tokenize
from interp.reference.registry import load_world
from interp.rome.keys import cache_dir, fingerprint
from interp.tracing import average_indirect_effect, causal_trace, subject_span


@holds_model
def choose_layer(model: Any, prompt: str, subject: str, *, samples: int = 10) -> int:
    """The block whose MLP output at the subject's last token carries the most of the fact, by causal tracing.

    Rule (ROME's): for a model whose checkpoint has a ``world.json`` (the reference models), the layer maximising
    the average indirect effect of the MLP output at the subject's last token over the world's facts
    (:func:`layer_profile`, computed once per model and cached); otherwise the layer maximising it in a causal
    trace of ``prompt`` itself (``kind="mlp"``, window 1, the model's own top answer as the traced answer). Ties go
    to the earlier layer. The last block is left out unless the subject ends the prompt, since its MLP output at the
    subject never reaches the prediction. One prompt's trace is noisy (on ref-llama the Eiffel Tower prompt alone
    picks layer 1, whose edit also moves the Louvre to Rome, where the averaged profile picks layer 0).
    """
    profile = layer_profile(model)
    if profile is not None:
        scores = profile
    else:
        trace = causal_trace(model, prompt, subject, kind="mlp", window=1, samples=samples)
        scores = trace.scores[trace.subject_last]
    text = prompt.replace("{}", subject)
    if len(scores) > 1 and subject_span(model, text, subject)[1] < len(tokenize(model, text).tokens[0]):
        scores = scores[:-1]
    return int(scores.argmax())


@holds_model
def layer_profile(model: Any, *, n_facts: int = 20, samples: int = 5, seed: int = 0) -> torch.Tensor | None:
    """Average indirect effect per layer of the MLP output at the subject's last token, over world facts.

    ``n_facts`` facts drawn with ``seed`` from the ``world.json`` beside the model's checkpoint, each traced on its
    relation's first training template (``kind="mlp"``, window 1, ``samples`` noise draws). Cached on disk beside
    the key statistics, keyed by the model's fingerprint (a cache that cannot be written is skipped). ``None`` when
    the checkpoint has no ``world.json``.
    """
    folder = Path(str(getattr(getattr(model, "cfg", None), "model_name", "")))
    if not (folder / "world.json").is_file():
        return None
    path = cache_dir() / f"{fingerprint(model)[:16]}-layer-profile-{n_facts}-{samples}-{seed}.json"
    if path.is_file():
        try:
            cached = torch.tensor(json.loads(path.read_text()), dtype=torch.float32)
            if cached.ndim == 1 and len(cached) == model.cfg.n_layers and bool(torch.isfinite(cached).all()):
                return cached
            raise ValueError(f"shape {tuple(cached.shape)}, expected ({model.cfg.n_layers},) finite values")
        except (ValueError, TypeError, UnicodeDecodeError, OSError) as err:  # JSONDecodeError is a ValueError
            warnings.warn(f"discarding the corrupt layer-profile cache {path} ({err}); recomputing it", stacklevel=2)
    world = load_world(model)
    facts = random.Random(seed).sample(world["facts"], min(n_facts, len(world["facts"])))
    prompts = [(world["templates"][f["relation"]]["train"][0].replace("{subject}", "{}"), f["subject"]) for f in facts]
    profile = average_indirect_effect(model, prompts, kind="mlp", window=1, samples=samples, seed=seed)
    try:
        atomic_write_text(path, json.dumps(profile.tolist()))
    except OSError:
        pass
    return profile
