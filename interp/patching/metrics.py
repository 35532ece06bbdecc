"""What a patching run measures: a number per prompt, read from the logits at each prompt's last real token.

:func:`resolve_metric` turns the ``metric`` argument of :func:`interp.patching.activation_patching` and
:func:`interp.patching.path_patching` into a function ``logits [batch pos vocab] -> [batch]``:

- ``"logit_diff"``: logit of ``answer`` minus logit of ``wrong`` (the IOI paper's metric);
- ``"prob"``: probability of ``answer``;
- ``"kl"``: ``KL(clean || run)`` of the next-token distributions (0 on the clean run itself);
- a callable ``f(logits, last_positions) -> [batch]`` (or a scalar), for anything else.

The patching functions average it over the prompts, so each patch gets one number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float, Int

from interp.core.tokens import to_single_token

METRICS = ("kl", "logit_diff", "prob")
"""Names :func:`resolve_metric` accepts (besides a callable)."""

Metric = Callable[[torch.Tensor], torch.Tensor]
"""``logits [batch pos vocab] -> [batch]``, one number per prompt."""

Target = int | str | Sequence[int | str] | torch.Tensor | None
"""A token to score: one id or single-token string for every prompt, or one per prompt."""


def target_ids(model: Any, target: Target, n_prompts: int, name: str) -> Int[torch.Tensor, " batch"]:
    """One token id per prompt from ``target`` (strings must encode to a single token).

    Raises:
        ValueError: a missing target, a list of the wrong length, or a string that is not one token.

    Examples:
        >>> target_ids(None, [3, 4], 2, "answer").tolist()
        [3, 4]
        >>> target_ids(None, 7, 3, "answer").tolist()
        [7, 7, 7]
    """
    if target is None:
        raise ValueError(f"{name}=None; this metric needs {name} (a token id or single-token string per prompt)")
    if isinstance(target, torch.Tensor):
        items = target.flatten().tolist()
    else:
        items = [target] if isinstance(target, (int, str)) else list(target)
    ids = [to_single_token(model, t) if isinstance(t, str) else int(t) for t in items]
    if len(ids) == 1:
        ids = ids * n_prompts
    if len(ids) != n_prompts:
        raise ValueError(f"{name} has {len(ids)} tokens for {n_prompts} prompts; pass one, or one per prompt")
    return torch.tensor(ids, dtype=torch.long)


def last_logits(
    logits: Float[torch.Tensor, "rows pos vocab"], last: Int[torch.Tensor, " batch"]
) -> Float[torch.Tensor, "rows vocab"]:
    """Each row's logits at its last real token (``last`` repeats when the batch holds several patches)."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, last.repeat(logits.shape[0] // len(last)).to(logits.device)].float()


def resolve_metric(
    model: Any,
    metric: str | Callable[..., Any],
    last: Int[torch.Tensor, " batch"],
    clean_logits: Float[torch.Tensor, "batch pos vocab"],
    answer: Target = None,
    wrong: Target = None,
) -> Metric:
    """The per-prompt metric named by ``metric`` (see the module docstring).

    Args:
        model: The model (its tokenizer turns string targets into ids).
        metric: ``"logit_diff"``, ``"prob"``, ``"kl"`` or a callable ``f(logits, last_positions)``.
        last: Index of each prompt's last real token.
        clean_logits: Logits of the clean run (the reference distribution of ``"kl"``).
        answer: The token that should win (``"logit_diff"``, ``"prob"``).
        wrong: The token it should beat (``"logit_diff"``).

    Returns:
        A function of logits ``[k * batch pos vocab]`` (the batch repeated ``k`` times) returning ``[k * batch]``.

    Raises:
        ValueError: an unknown metric name, or a missing or malformed target.
    """
    n = len(last)
    if callable(metric):
        def custom(logits: torch.Tensor) -> torch.Tensor:
            k = logits.shape[0] // n
            values = [torch.as_tensor(metric(logits[i * n:(i + 1) * n], last), dtype=torch.float32) for i in range(k)]
            return torch.cat([v.expand(n) if v.ndim == 0 else v.reshape(n) for v in values])
        return custom
    if metric == "logit_diff":
        good, bad = target_ids(model, answer, n, "answer"), target_ids(model, wrong, n, "wrong")
        return lambda logits: _pick(last_logits(logits, last), good) - _pick(last_logits(logits, last), bad)
    if metric == "prob":
        good = target_ids(model, answer, n, "answer")
        return lambda logits: _pick(last_logits(logits, last).softmax(-1), good)
    if metric == "kl":
        reference = last_logits(clean_logits, last).log_softmax(-1)

        def kl(logits: torch.Tensor) -> torch.Tensor:
            ref = reference.repeat(logits.shape[0] // n, 1).to(logits.device)
            return (ref.exp() * (ref - last_logits(logits, last).log_softmax(-1))).sum(-1)
        return kl
    raise ValueError(f"metric={metric!r}; use one of {', '.join(METRICS)} or a callable f(logits, last_positions)")


def per_patch(values: Float[torch.Tensor, " rows"], n_prompts: int) -> Float[torch.Tensor, " patches"]:
    """Average a metric over the prompts of each patch (rows are ``patch * n_prompts + prompt``)."""
    return values.reshape(-1, n_prompts).mean(dim=1).cpu()


def _pick(values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    ids = ids.repeat(values.shape[0] // len(ids)).to(values.device)
    return values.gather(1, ids[:, None])[:, 0]
