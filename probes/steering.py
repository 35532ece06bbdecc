"""Steer a model along a probe's class direction, and measure what that does to its next-token predictions."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from jaxtyping import Float

import interp
from interp.core.hooks import hooked
from interp.core.locking import holds_model
from probes.activations import hook_name
from probes.plots import steering_figure
from probes.report import Probe
from probes.task import Label


class Steering(NamedTuple):
    """What a :func:`steer` context adds, and where."""

    hook: str
    """Hook the vector is added at."""
    vector: Float[torch.Tensor, " d_model"]
    """``alpha`` times the probe's unit class direction."""


@contextlib.contextmanager
def steer(model: Any, probe: Probe, label: Label, alpha: float) -> Iterator[Steering]:
    """Add ``alpha`` times the probe's unit direction for ``label`` to the residual stream, at every position.

    The vector is added where the probe reads (its layer and site), by a forward hook that is
    removed when the context exits, also when it exits with an exception.

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`.
        probe: A probe from :meth:`probes.ProbeReport.probe`.
        label: The class to steer towards (a negative ``alpha`` steers away from it).
        alpha: Length of the added vector, in residual-stream units (compare with the typical
            residual norm at that layer).

    Yields:
        The :class:`Steering` in effect.

    Raises:
        ValueError: an unknown label, a non-finite alpha, or a probe that does not fit the model.

    Examples:
        >>> with probes.steer(model, report.probe(), "France", alpha=8.0):  # doctest: +SKIP
        ...     logits = model("Tokyo is a city in the country of")
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ValueError(f"alpha={alpha!r}; it must be a finite number")
    info = interp.model_info(model)
    interp.check_layer(info, probe.layer)
    if probe.weight.shape[0] != info.d_model:
        raise ValueError(
            f"probe reads d_model={probe.weight.shape[0]} activations; the model has d_model={info.d_model}"
        )
    name = hook_name(probe.site, probe.layer)
    param = next(model.parameters())
    vector = (alpha * probe.direction(label)).to(device=info.device, dtype=param.dtype)

    def add(x: torch.Tensor, hook: Any) -> torch.Tensor:
        return x + vector

    with hooked(model, [(name, add)]):
        yield Steering(hook=name, vector=vector)


@dataclass
class SteeringEffect:
    """Next-token probabilities at the last token of each prompt, without and with steering."""

    label: str
    """Class steered towards."""
    alpha: float
    """Length of the added vector."""
    layer: int
    """Block where it was added."""
    prompts: list[str]
    """The prompts."""
    tokens: list[str]
    """Vocabulary, decoded one token at a time (index = token id)."""
    before: Float[torch.Tensor, "batch vocab"]
    """Probabilities without steering."""
    after: Float[torch.Tensor, "batch vocab"]
    """Probabilities with steering."""
    k: int = 10
    """How many tokens :meth:`to_frame` lists."""

    def to_frame(self) -> Any:
        """The ``k`` tokens whose mean probability changed most, with before, after and change."""
        import pandas as pd

        before, after = self.before.mean(dim=0), self.after.mean(dim=0)
        change = after - before
        top = change.abs().topk(min(self.k, change.numel())).indices.tolist()
        return pd.DataFrame(
            {
                "token": [self.tokens[i] for i in top],
                "before": before[top].tolist(),
                "after": after[top].tolist(),
                "change": change[top].tolist(),
            }
        )

    def figure(self) -> Any:
        """Bars of before/after probabilities of the most changed tokens (plotly)."""
        return steering_figure(self)


@holds_model
def steering_effect(
    model: Any, probe: Probe, label: Label, alpha: float, prompts: str | Sequence[str], k: int = 10
) -> SteeringEffect:
    """Compare next-token probabilities with and without :func:`steer`.

    Args:
        model: A ``TransformerBridge``.
        probe: The probe whose direction is added.
        label: The class to steer towards.
        alpha: Length of the added vector.
        prompts: A prompt or list of prompts; the prediction after each one's last token is compared.
        k: Tokens listed by :meth:`SteeringEffect.to_frame`.

    Returns:
        The :class:`SteeringEffect`.

    Examples:
        >>> effect = probes.steering_effect(  # doctest: +SKIP
        ...     model, report.probe(), "Japan", 8.0, "Paris is in the country of"
        ... )
        >>> effect.to_frame()  # doctest: +SKIP
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    before = interp.capture(model, prompts, names=[]).last_logits.float().softmax(dim=-1).cpu()
    with steer(model, probe, label, alpha):
        after = interp.capture(model, prompts, names=[]).last_logits.float().softmax(dim=-1).cpu()
    vocab = interp.model_info(model).d_vocab
    tokens = interp.str_tokens(model, torch.arange(vocab))
    return SteeringEffect(str(label), float(alpha), probe.layer, prompts, tokens, before, after, k)
