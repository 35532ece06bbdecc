"""How capture attaches its hooks: the same tensors as TransformerLens' own cache, and nothing left behind."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.core.hooks import fired_hooks

PROMPTS = ["The cat sat on the mat", "Paris is"]


def _hook_counts(model) -> dict[str, int]:
    return {name: len(point.fwd_hooks) for name, point in model.hook_dict.items()}


def test_capture_equals_transformer_lens_run_with_cache(tiny_model):
    cap = interp.capture(tiny_model, PROMPTS, "all")
    wanted = set(interp.resolve_names(tiny_model, "all"))
    with torch.no_grad():
        logits, cache = tiny_model.run_with_cache(cap.tokens, attention_mask=cap.attention_mask,
                                                  names_filter=wanted.__contains__, return_cache_object=False)
    assert cap.hook_names == list(cache)  # every hook, in the order the model fired them
    assert torch.equal(cap.logits, logits)
    for name, x in cache.items():
        assert cap[name].dtype == x.dtype and torch.equal(cap[name], x), name


def test_no_hook_is_left_behind_even_when_the_pass_fails(tiny_gpt2):
    before = _hook_counts(tiny_gpt2)
    interp.capture(tiny_gpt2, PROMPTS, "all")
    assert _hook_counts(tiny_gpt2) == before

    def fail(name: str, x: torch.Tensor) -> None:
        raise RuntimeError(f"stop at {name}")

    with pytest.raises(RuntimeError, match="stop at"):
        interp.capture(tiny_gpt2, PROMPTS, "all", on_layer=fail)
    assert _hook_counts(tiny_gpt2) == before


def test_resolved_names_resolve_to_themselves(tiny_model):
    resolved = interp.resolve_names(tiny_model, "all")
    assert interp.resolve_names(tiny_model, resolved) == resolved
    assert interp.resolve_names(tiny_model, [*resolved[::-1], resolved[0]]) == resolved[::-1]  # first seen wins
    assert interp.resolve_names(tiny_model, [resolved[0], "pattern"]) == [resolved[0]] + [
        n for n in interp.resolve_names(tiny_model, "pattern") if n != resolved[0]]
    # A name must still be a hook, and one that fires (GPT-2's bridge lists rotary hooks it never calls).
    for bad in ["blocks.0.hook_nowhere", *sorted(set(tiny_model.hook_dict) - fired_hooks(tiny_model))]:
        with pytest.raises(ValueError, match=bad.replace(".", r"\.")):
            interp.resolve_names(tiny_model, [*resolved, bad])
