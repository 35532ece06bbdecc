"""Incremental decoding through the bridge with Hugging Face's own KV cache.

The bridge's manual KV-cache entry point is ``model(tokens, return_type="logits_and_cache",
past_key_values=cache)``: hooks still fire, and only the new tokens' keys and values are computed.

Why :func:`enable_kv_cache` exists: TransformerLens 4.3's attention bridges look the cache up under
the keyword ``past_key_values`` (or ``layer_past``), but transformers 5 hands it to attention modules
as ``cache``. The bridge then never writes keys/values into the cache, and every cached decode step
attends to its own token only, so ``TransformerBridge.generate(use_past_kv_cache=True)`` silently
returns different tokens from the uncached loop. The fix forwards ``cache`` to the name the bridge
reads; it is idempotent, and a forward pass without a cache is untouched. ``tests/test_generate.py``
checks that cached and uncached logits agree, so a TransformerLens release that fixes this upstream
(or breaks it differently) is noticed.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int

_PATCHED = "_interp_forwards_cache_kwarg"


def enable_kv_cache() -> None:
    """Make the bridge's attention write to the KV cache transformers 5 passes as ``cache``.

    Safe to call any number of times; every public function here calls it first.
    """
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    original = AttentionBridge._update_kv_cache
    if getattr(original, _PATCHED, False):
        return

    def _update_kv_cache(self: Any, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> Any:
        if kwargs.get("past_key_values") is None and kwargs.get("layer_past") is None:
            if kwargs.get("cache") is not None:
                kwargs["past_key_values"] = kwargs["cache"]
        return original(self, k, v, **kwargs)

    setattr(_update_kv_cache, _PATCHED, True)
    AttentionBridge._update_kv_cache = _update_kv_cache


def prefill(model: Any, tokens: Int[torch.Tensor, "batch pos"]) -> tuple[Float[torch.Tensor, "batch pos vocab"], Any]:
    """Run ``tokens`` from an empty cache, returning the logits and the filled cache.

    Args:
        model: A ``TransformerBridge``.
        tokens: Token ids, ``[batch pos]``, on the model's device.

    Returns:
        ``(logits, cache)``; ``cache`` is a Hugging Face ``DynamicCache`` holding ``pos`` positions.
    """
    enable_kv_cache()
    with torch.no_grad():
        logits, cache = model(tokens, return_type="logits_and_cache", use_cache=True)
    return logits, cache


def extend(model: Any, tokens: Int[torch.Tensor, "batch new"], cache: Any) -> Float[torch.Tensor, "batch new vocab"]:
    """Run ``tokens`` after the positions already in ``cache``, appending theirs to it.

    Positions continue from ``cache.get_seq_length()`` (Hugging Face derives them from the cache),
    so learned position embeddings and RoPE see the same positions as in one uncached pass.

    Returns:
        Logits of the new tokens.
    """
    enable_kv_cache()
    with torch.no_grad():
        # transformers 5 calls the argument ``cache`` (``past_key_values`` is its deprecated alias).
        logits = model(tokens, return_type="logits", cache=cache, use_cache=True)
    return logits


def cache_length(cache: Any) -> int:
    """Number of positions held in ``cache``."""
    return int(cache.get_seq_length())


def keep_for_rollback(cache: Any) -> Any:
    """Let the sliding-window layers of ``cache`` (Mistral, Gemma) be cropped later; returns ``cache``.

    A sliding-window layer keeps only its last ``window - 1`` positions, so once the window is full it
    cannot give back rejected positions: Hugging Face raises in :func:`crop`. With past recording on,
    each update keeps every new position until the next :func:`crop`, which trims back to the window.
    Full-attention layers have nothing to switch on.
    """
    for layer in getattr(cache, "layers", ()):
        if hasattr(layer, "activate_past_recording"):
            layer.activate_past_recording()
    return cache


def crop(cache: Any, length: int) -> None:
    """Drop cached positions beyond the first ``length`` (rejected draft tokens), in place.

    Raises:
        ValueError: ``length`` is negative or longer than the cache.
    """
    held = cache_length(cache)
    if not 0 <= length <= held:
        raise ValueError(f"length={length}, cache holds 0..{held} positions")
    # transformers 5 takes the number of tokens to remove, as a negative count.
    cache.crop(length - held)
