"""Patched forwards, several patches per forward: the batch is the prompts repeated once per patch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Int

from interp.core.hooks import hooked
from interp.core.model_info import model_info
from interp.patching.metrics import Metric, per_patch

_LOGIT_BUDGET = 2**24
"""Most float elements of one forward's logits (64 MB in float32): bounds the rows of one patched forward."""


def patches_per_forward(model: Any, n_prompts: int, width: int, batch_size: int | None) -> int:
    """How many patches one forward carries: ``batch_size`` if given, else as many as fit the logit budget.

    Raises:
        ValueError: ``batch_size`` below 1.
    """
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}; pass a positive number of patches per forward or None")
        return batch_size
    info = model_info(model)
    widest = max(info.d_vocab, info.d_mlp, info.d_model)
    return max(1, _LOGIT_BUDGET // (widest * width * n_prompts))


def patched_metric(
    model: Any,
    tokens: Int[torch.Tensor, "batch pos"],
    k: int,
    hooks: Sequence[tuple[str, Callable[..., Any]]],
    metric: Metric,
) -> torch.Tensor:
    """Run ``tokens`` repeated ``k`` times under ``hooks``; the metric averaged over prompts, one per copy.

    Row ``i * batch + j`` is prompt ``j`` of patch ``i``; the hooks patch each copy its own way.
    """
    with torch.no_grad(), hooked(model, hooks):
        logits = model(tokens.repeat(k, 1))
    return per_patch(metric(logits), tokens.shape[0])


def copy_rows(patch: int, n_prompts: int) -> slice:
    """The batch rows of patch number ``patch`` within one forward."""
    return slice(patch * n_prompts, (patch + 1) * n_prompts)
