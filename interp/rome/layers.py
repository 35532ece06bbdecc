"""Which block a ROME edit goes into: the one whose MLP output at the subject carries the fact, by causal tracing."""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from interp.core.files import atomic_write_text
from interp.core.hooks import hook_name
from interp.core.locking import holds_model
from interp.core.tokens import tokenize
from interp.reference.registry import load_world
from interp.rome.keys import cache_dir, fingerprint
from interp.rome.sizing import PROFILE_FACTS, profile_facts, trace_samples
from interp.tracing import average_indirect_effect, subject_span, trace_state


@holds_model
def choose_layer(model: Any, prompt: str, subject: str, *, samples: int | None = None, progress: bool = True) -> int:
    """The block whose MLP output at the subject's last token carries the most of the fact, by causal tracing.

    Rule (ROME's): for a model whose checkpoint has a ``world.json`` (the reference models), the layer maximising
    the average indirect effect of the MLP output at the subject's last token over the world's facts
    (:func:`layer_profile`, computed once per model and cached); otherwise the layer maximising it in a causal
    trace of ``prompt`` itself (``kind="mlp"``, window 1, the model's own top answer as the traced answer). Ties go
    to the earlier layer. The last block is left out unless the subject ends the prompt, since its MLP output at the
    subject never reaches the prediction. One prompt's trace is noisy (on ref-llama the Eiffel Tower prompt alone
    picks layer 1, whose edit also moves the Louvre to Rome, where the averaged profile picks layer 0). The trace is
    computed once per (model, prompt, subject, samples) and cached (:func:`traced_scores`). ``samples`` (noise draws
    of that trace; ``None`` sizes them for the model: 10 up to GPT-2 small, 3 from about 1B parameters on) and
    ``progress`` (a bar over the traced layers or facts) go to the trace or the profile.
    """
    profile = layer_profile(model, progress=progress)
    scores = profile if profile is not None else traced_scores(model, prompt, subject, samples=samples,
                                                               progress=progress)
    text = prompt.replace("{}", subject)
    if len(scores) > 1 and subject_span(model, text, subject)[1] < len(tokenize(model, text).tokens[0]):
        scores = scores[:-1]
    return int(scores.argmax())


@holds_model
def layer_profile(
    model: Any, *, n_facts: int | None = None, samples: int = 5, seed: int = 0, progress: bool = True
) -> torch.Tensor | None:
    """Average indirect effect per layer of the MLP output at the subject's last token, over world facts.

    ``n_facts`` facts drawn with ``seed`` from the ``world.json`` beside the model's checkpoint, each traced on its
    relation's first training template (``kind="mlp"``, window 1, ``samples`` noise draws). ``None`` sizes the count
    for the model (:func:`interp.rome.sizing.profile_facts`: 20 on the reference models, fewer, down to 5, where the
    traces would exceed ``TRACE_FLOPS``). Cached on disk beside the key statistics, keyed by the model's fingerprint
    (a cache that cannot be written is skipped). ``None`` when the checkpoint has no ``world.json``. ``progress``
    shows a bar over the facts.
    """
    folder = Path(str(getattr(getattr(model, "cfg", None), "model_name", "")))
    if not (folder / "world.json").is_file():
        return None
    world = load_world(model)
    if n_facts is None:
        most = random.Random(seed).sample(world["facts"], min(PROFILE_FACTS[1], len(world["facts"])))
        lengths = [len(tokenize(model, text).tokens[0]) for text, _ in _fact_prompts(world, most)]
        n_facts = profile_facts(model, sum(lengths) / max(1, len(lengths)), samples)
    path = cache_dir() / f"{fingerprint(model)[:16]}-layer-profile-{n_facts}-{samples}-{seed}.json"
    if path.is_file():
        try:
            cached = torch.tensor(json.loads(path.read_text()), dtype=torch.float32)
            if cached.ndim == 1 and len(cached) == model.cfg.n_layers and bool(torch.isfinite(cached).all()):
                return cached
            raise ValueError(f"shape {tuple(cached.shape)}, expected ({model.cfg.n_layers},) finite values")
        except (ValueError, TypeError, UnicodeDecodeError, OSError) as err:  # JSONDecodeError is a ValueError
            warnings.warn(f"discarding the corrupt layer-profile cache {path} ({err}); recomputing it", stacklevel=2)
    facts = random.Random(seed).sample(world["facts"], min(n_facts, len(world["facts"])))
    prompts = _fact_prompts(world, facts)
    # One fact at a time for the bar; the mean of the per-fact effects is average_indirect_effect's, bit for bit.
    effects = [average_indirect_effect(model, [fact], kind="mlp", window=1, samples=samples, seed=seed)
               for fact in tqdm(prompts, desc="ROME layer profile", leave=False, disable=not progress)]
    profile = torch.stack(effects).mean(0)
    try:
        atomic_write_text(path, json.dumps(profile.tolist()))
    except OSError:
        pass
    return profile


@holds_model
def traced_scores(
    model: Any, prompt: str, subject: str, *, samples: int | None = None, progress: bool = True
) -> torch.Tensor:
    """Per layer, the answer's probability in a causal trace of ``prompt`` with block ``L``'s MLP output at the
    subject's last token restored (``kind="mlp"``, window 1, the model's own top answer as the traced answer).

    This is the subject's-last-token row of :func:`interp.causal_trace`'s scores, computed with
    :func:`interp.tracing.trace_state` (same noise draws) for that one position only: ``n_layers * samples``
    corrupted rows instead of ``n_layers * tokens * samples`` (27 times fewer for a 27-token prompt). It is cached
    on disk beside the key statistics, keyed by the model's :func:`fingerprint` (which leaves out the MLP output
    projections that edits change) and a hash of the request; the file is written atomically, and one that cannot
    be read is recomputed. ``samples=None`` sizes the noise draws for the model
    (:func:`interp.rome.sizing.trace_samples`: 10 up to GPT-2 small, 3 from about 1B parameters on); ``progress``
    shows a bar over the layers.
    """
    text = prompt.replace("{}", subject)
    if samples is None:
        samples = trace_samples(model, len(tokenize(model, text).tokens[0]))
    request = json.dumps([prompt, subject, samples]).encode()
    path = cache_dir() / f"{fingerprint(model)[:16]}-trace-{hashlib.sha256(request).hexdigest()[:16]}.json"
    n_layers = model.cfg.n_layers
    if path.is_file():
        try:
            cached = torch.tensor(json.loads(path.read_text()), dtype=torch.float32)
            if cached.ndim == 1 and len(cached) == n_layers and bool(torch.isfinite(cached).all()):
                return cached
            raise ValueError(f"shape {tuple(cached.shape)}, expected ({n_layers},) finite values")
        except (ValueError, TypeError, UnicodeDecodeError, OSError) as err:  # JSONDecodeError is a ValueError
            warnings.warn(f"discarding the corrupt trace cache {path} ({err}); recomputing it", stacklevel=2)
    last = subject_span(model, text, subject)[1] - 1
    layers = tqdm(range(n_layers), desc="ROME layer choice (causal trace)", leave=False, disable=not progress)
    scores = torch.tensor([trace_state(model, prompt, subject, {hook_name("mlp_out", layer): [last]}, samples=samples)
                           for layer in layers], dtype=torch.float32)
    try:
        atomic_write_text(path, json.dumps(scores.tolist()))
    except OSError:
        pass
    return scores


def _fact_prompts(world: dict[str, Any], facts: list[dict[str, str]]) -> list[tuple[str, str]]:
    """``(prompt with {}, subject)`` of each fact, on its relation's first training template."""
    return [(world["templates"][f["relation"]]["train"][0].replace("{subject}", "{}"), f["subject"]) for f in facts]
