"""Activation patching on a circuit task's prompts: the heat maps shown beside a circuit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from interp.circuits.tasks import make_task, pairs_task
from interp.core.locking import holds_model
from interp.patching import ActivationPatching, activation_patching


@holds_model
def task_patching(
    model: Any,
    task: str | tuple[str | Sequence[str], str | Sequence[str]],
    site: str = "resid_pre",
    *,
    metric: str = "kl",
    positions: str | None = None,
    n_prompts: int = 4,
    seed: int = 0,
) -> ActivationPatching:
    """:func:`interp.patching.activation_patching` of ``site`` on a built-in task's prompts or a ``(clean,
    corrupted)`` pair, with a metric that needs no answer token by default (``"kl"``, to the clean run).

    Examples:
        >>> from interp.core.toy_models import load_toy
        >>> task_patching(load_toy(), "induction", "z", positions="all", n_prompts=1).patched.shape
        torch.Size([2, 1, 4])
    """
    built = make_task(model, task, n_prompts=n_prompts, seed=seed) if isinstance(task, str) else pairs_task(
        model, task[0], task[1])
    return activation_patching(model, built.clean, built.corrupted, site, metric, positions=positions, progress=False)
