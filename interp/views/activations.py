"""One layer's activations at one site, as positions × dimensions, ready to browse.

:func:`activation_view` reads a site (residual stream before/after attention/after the block,
attention output, MLP output or MLP neurons) through :func:`interp.capture` and returns an
:class:`ActivationView`: the matrix, per-token norms, a per-position summary, and the figures the
dashboard's Activations browser and notebooks share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from interp.core.capturing import capture
from interp.core.hooks import LAYER_SITES, hook_name
from interp.core.locking import holds_model
from interp.core.model_info import check_layer, model_info
from interp.core.tokens import Prompts

ACTIVATION_SITES: dict[str, str] = {
    site: LAYER_SITES[site] for site in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "neurons")
}
"""Sites :func:`activation_view` can read, each with its TransformerLens hook name."""


@dataclass
class PositionSummary:
    """What one position's activation vector looks like."""

    position: int
    """Token position in the prompt."""
    token: str
    """The token at that position."""
    norm: float
    """L2 norm of the vector."""
    mean: float
    """Mean over dimensions."""
    std: float
    """Standard deviation over dimensions."""
    top_dims: list[tuple[int, float]]
    """The dimensions with the largest absolute value, as ``(dim, value)``, largest first."""

    def to_frame(self) -> Any:
        """The top dimensions as a table (``dim``, ``value``)."""
        import pandas as pd

        return pd.DataFrame(self.top_dims, columns=["dim", "value"])


@dataclass
class ActivationView:
    """Activations of one site of one layer for a single prompt."""

    tokens: list[str]
    """The prompt's tokens (BOS included when the model prepends it)."""
    layer: int
    """Block index the site belongs to."""
    site: str
    """One of :data:`ACTIVATION_SITES`."""
    values: Float[torch.Tensor, "pos dim"]
    """Activation at every position (``dim`` is ``d_model``, or ``d_mlp`` for ``"neurons"``)."""

    @property
    def norms(self) -> Float[torch.Tensor, " pos"]:
        """L2 norm of each position's vector."""
        return self.values.norm(dim=-1)

    def top_dims(self, k: int = 32) -> list[int]:
        """The ``k`` dimensions (neurons for ``"neurons"``) with the largest peak ``|value|`` over positions."""
        if k < 1:
            raise ValueError(f"k={k}, need at least 1 dimension")
        peak = self.values.abs().amax(dim=0)
        return peak.topk(min(k, peak.numel())).indices.tolist()

    def position_summary(self, position: int, k: int = 8) -> PositionSummary:
        """Summarise the vector at ``position`` (negative indices count from the end).

        Raises:
            ValueError: ``position`` is outside the prompt.
        """
        n = len(self.tokens)
        if isinstance(position, bool) or not isinstance(position, int) or not -n <= position < n:
            raise ValueError(f"position={position!r}, prompt has positions 0..{n - 1}")
        position %= n
        vec = self.values[position]
        top = vec.abs().topk(min(k, vec.numel())).indices.tolist()
        return PositionSummary(
            position=position,
            token=self.tokens[position],
            norm=float(vec.norm()),
            mean=float(vec.mean()),
            std=float(vec.std()) if vec.numel() > 1 else 0.0,
            top_dims=[(int(d), float(vec[d])) for d in top],
        )

    def to_frame(self) -> Any:
        """Positions × dimensions as a DataFrame, rows labelled ``"pos: token"``."""
        import pandas as pd

        return pd.DataFrame(self.values.numpy(), index=_labels(self.tokens))

    def figure(self, top: int | None = None) -> Any:
        """Heat map of positions × dimensions on a symmetric colour scale.

        Args:
            top: Show only the ``top`` dimensions of :meth:`top_dims` (in index order) instead
                of all of them; useful for neurons, where ``d_mlp`` is wide.
        """
        import plotly.graph_objects as go

        dims = sorted(self.top_dims(top)) if top is not None else list(range(self.values.shape[1]))
        z = self.values[:, dims]
        bound = float(z.abs().max()) or 1.0
        kind = "neuron" if self.site == "neurons" else "dim"
        fig = go.Figure(
            go.Heatmap(
                z=z.numpy(),
                x=[str(d) for d in dims],
                y=_labels(self.tokens),
                colorscale="RdBu",
                zmid=0,
                zmin=-bound,
                zmax=bound,
                colorbar={"title": {"text": "neuron<br>activation" if kind == "neuron" else "value"}},
                hovertemplate=f"%{{y}}<br>{kind} %{{x}}: %{{z:.3f}}<extra></extra>",
            )
        )
        shown = f"top {len(dims)} {kind}s by peak |value|" if top is not None else f"all {len(dims)} {kind}s"
        fig.update_layout(
            title=f"layer {self.layer} {self.site}: positions × {kind}s ({shown})",
            xaxis=dict(title=kind, type="category"),
            yaxis=dict(title="position", autorange="reversed", type="category"),
            height=max(300, 22 * len(self.tokens) + 120),
            margin=dict(l=10, r=10, t=50, b=10),
        )
        return fig

    def norms_figure(self) -> Any:
        """Bar chart of the per-token norms."""
        import plotly.graph_objects as go

        fig = go.Figure(go.Bar(x=_labels(self.tokens), y=self.norms.numpy(), marker_color="#4c72b0"))
        fig.update_layout(
            title=f"layer {self.layer} {self.site}: L2 norm per token",
            xaxis=dict(title="position", type="category"),
            yaxis_title="norm",
            height=300,
            margin=dict(l=10, r=10, t=50, b=10),
        )
        return fig


@holds_model
def activation_view(model: Any, prompt: Prompts, layer: int, site: str = "resid_post") -> ActivationView:
    """Read one site of one layer for a single prompt.

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`.
        prompt: One prompt (a string, or a ``[pos]``/``[1 pos]`` token tensor).
        layer: Block index, ``0..n_layers-1``.
        site: One of :data:`ACTIVATION_SITES`.

    Returns:
        The :class:`ActivationView` (tensors on the CPU, detached).

    Raises:
        ValueError: an unknown site, a bad layer, a batch of several prompts, or a bad prompt
            (see :func:`interp.tokenize`).

    Examples:
        >>> view = activation_view(model, "The Eiffel Tower is in", layer=1, site="resid_post")  # doctest: +SKIP
        >>> view.values.shape  # (pos, d_model)  # doctest: +SKIP
    """
    if site not in ACTIVATION_SITES:
        raise ValueError(f"site={site!r}; choose one of {', '.join(ACTIVATION_SITES)}")
    check_layer(model_info(model), layer)
    one_row = isinstance(prompt, torch.Tensor) and (prompt.ndim == 1 or len(prompt) == 1)
    if not isinstance(prompt, str) and not one_row:
        raise ValueError("activation_view takes one prompt (a string or a single row of tokens), not a batch")
    hook = hook_name(site, layer)
    cap = capture(model, prompt, names=[hook])
    return ActivationView(
        tokens=cap.str_tokens[0],
        layer=layer,
        site=site,
        values=cap[hook][0].detach().float().cpu(),
    )


def _labels(tokens: list[str]) -> list[str]:
    # Positions are part of the label: prompts repeat tokens, and plotly merges equal category labels.
    return [f"{i}: {t!r}" for i, t in enumerate(tokens)]
