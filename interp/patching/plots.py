"""The heat map every patching result draws: a signed grid on a diverging scale centred at 0."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float


def heatmap(
    values: Float[torch.Tensor, "row col"],
    *,
    x: Sequence[str],
    y: Sequence[str],
    title: str,
    x_title: str,
    y_title: str,
    colour_title: str,
) -> Any:
    """A plotly heat map, first row at the top, with titled axes and colour bar.

    Examples:
        >>> fig = heatmap(torch.eye(2), x=["a", "b"], y=["L0", "L1"], title="t", x_title="position",
        ...               y_title="layer", colour_title="effect")
        >>> fig.layout.xaxis.title.text, fig.data[0].colorbar.title.text
        ('position', 'effect')
    """
    import plotly.graph_objects as go

    grid = values.detach().float().cpu()
    finite = grid[grid.isfinite()]
    bound = max(float(finite.abs().max()) if finite.numel() else 1.0, 1e-9)
    small = grid.numel() <= 400  # cell text only where it stays legible
    fig = go.Figure(
        go.Heatmap(
            z=grid.tolist(), x=list(x), y=list(y), colorscale="RdBu", zmid=0, zmin=-bound, zmax=bound,
            texttemplate="%{z:.2f}" if small else None,
            colorbar={"title": {"text": colour_title, "side": "right"}},
            hovertemplate=f"{y_title} %{{y}}<br>{x_title} %{{x}}<br>{colour_title} %{{z:.3f}}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text=x_title, type="category")
    fig.update_yaxes(title_text=y_title, type="category", autorange="reversed")
    fig.update_layout(title=title, height=min(1200, 200 + 28 * len(y)), margin={"t": 60, "b": 40, "l": 60, "r": 10})
    return fig
