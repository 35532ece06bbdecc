"""Knock out one attention head on one prompt and see what happens to each token's loss.

:func:`knock_out_head` is the live, single-prompt companion of :mod:`interp.heads.ablation` (which
scores every head over a batch): it runs the prompt clean and with one head's output ``z``
(``blocks.{L}.attn.hook_z``) replaced, and returns the next-token loss at every position for both.

On one prompt there is no batch to average over, so ``"mean"`` replaces the head's ``z`` at every
position by its mean over the prompt's positions: the head keeps its average contribution but
stops carrying position- and token-specific information. ``"zero"`` removes it entirely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from interp.core.capturing import capture
from interp.core.hooks import hook_name, hooked
from interp.core.locking import holds_model
from interp.core.model_info import check_head, check_layer, model_info
from interp.core.tokens import Prompts
from interp.heads.ablation import check_ablation, next_token_losses


@dataclass
class HeadKnockout:
    """Per-token next-token losses of one prompt, clean and with one head knocked out."""

    tokens: list[str]
    """The prompt's tokens (BOS included when the model prepends it)."""
    layer: int
    """Layer of the knocked-out head."""
    head: int
    """Index of the knocked-out head."""
    method: str
    """``"zero"`` or ``"mean"`` (see the module docstring)."""
    clean: Float[torch.Tensor, " pos"]
    """Loss of predicting token ``p + 1`` at position ``p`` (one fewer than the tokens), clean model."""
    ablated: Float[torch.Tensor, " pos"]
    """The same losses with the head knocked out."""

    @property
    def clean_loss(self) -> float:
        """Mean next-token loss of the clean model (nats)."""
        return float(self.clean.mean())

    @property
    def ablated_loss(self) -> float:
        """Mean next-token loss with the head knocked out (nats)."""
        return float(self.ablated.mean())

    @property
    def delta(self) -> float:
        """Loss increase caused by the knock-out (nats); negative when the head hurt the prediction."""
        return self.ablated_loss - self.clean_loss

    def to_frame(self) -> Any:
        """One row per predicted token: ``position``, ``context`` token, ``next`` token, both losses, change."""
        import pandas as pd

        n = len(self.clean)
        return pd.DataFrame(
            {
                "position": list(range(n)),
                "context": self.tokens[:n],
                "next": self.tokens[1 : n + 1],
                "clean": self.clean.tolist(),
                "ablated": self.ablated.tolist(),
                "change": (self.ablated - self.clean).tolist(),
            }
        )

    def figure(self) -> Any:
        """Bar chart of the loss change on each next token (red: the head helped predict it)."""
        import plotly.graph_objects as go

        change = (self.ablated - self.clean).tolist()
        labels = [f"{i}: {t!r}" for i, t in enumerate(self.tokens[1 : len(change) + 1], start=1)]
        fig = go.Figure(
            go.Bar(
                x=labels,
                y=change,
                marker_color=["#d62728" if c > 0 else "#1f77b4" for c in change],
                hovertemplate="predicting %{x}<br>loss change %{y:.3f} nats<extra></extra>",
            )
        )
        fig.update_layout(
            title=(
                f"L{self.layer}H{self.head} {self.method}-ablated: loss {self.clean_loss:.3f} → "
                f"{self.ablated_loss:.3f} nats ({self.delta:+.3f})"
            ),
            xaxis=dict(title="predicted token", type="category"),
            yaxis_title="loss change (nats)",
            height=340,
            margin=dict(l=10, r=10, t=50, b=10),
        )
        return fig


@holds_model
def knock_out_head(model: Any, prompt: Prompts, layer: int, head: int, method: str = "zero") -> HeadKnockout:
    """Run ``prompt`` clean and with head ``(layer, head)`` knocked out; compare next-token losses.

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`.
        prompt: One prompt (string or a single row of tokens) of at least two tokens.
        layer: Layer of the head, ``0..n_layers-1``.
        head: Query head index, ``0..n_heads-1``.
        method: ``"zero"`` or ``"mean"`` (mean of the head's output over the prompt's positions).

    Returns:
        A :class:`HeadKnockout`.

    Raises:
        ValueError: a bad layer, head, method or prompt, or a prompt of a single token.

    Examples:
        >>> result = knock_out_head(model, "the cat sat on the mat", layer=1, head=0)  # doctest: +SKIP
        >>> result.delta  # doctest: +SKIP
    """
    info = model_info(model)
    check_layer(info, layer)
    check_head(info, head)
    check_ablation(method)
    one_row = isinstance(prompt, torch.Tensor) and (prompt.ndim == 1 or len(prompt) == 1)
    if not isinstance(prompt, str) and not one_row:
        raise ValueError("knock_out_head takes one prompt (a string or a single row of tokens), not a batch")
    z_name = hook_name("z", layer)
    cap = capture(model, prompt, names=[z_name])
    tokens = cap.tokens
    if tokens.shape[1] < 2:
        raise ValueError(f"the prompt is {tokens.shape[1]} token; a next-token loss needs at least 2")
    fill = cap[z_name][:, :, head].mean(dim=1, keepdim=True) if method == "mean" else 0.0

    def knock_out(z: torch.Tensor, hook: Any) -> torch.Tensor:
        z = z.clone()
        z[:, :, head] = fill
        return z

    with torch.no_grad(), hooked(model, [(z_name, knock_out)]):
        ablated_logits = model(tokens)
    n = tokens.shape[1] - 1  # next_token_losses pads the last position with 0
    return HeadKnockout(
        tokens=cap.str_tokens[0],
        layer=layer,
        head=head,
        method=method,
        clean=next_token_losses(cap.logits, tokens)[0, :n].float().cpu(),
        ablated=next_token_losses(ablated_logits, tokens)[0, :n].float().cpu(),
    )
