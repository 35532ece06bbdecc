"""Plotly figures of per-head scores (layers x heads heat maps), shared by the CLI, the app and notebooks."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float


def head_heatmaps(
    panels: dict[str, Float[torch.Tensor, "layer head"]],
    *,
    title: str = "",
    labels: dict[tuple[int, int], str] | None = None,
) -> Any:
    """Side-by-side heat maps, one per score, layers down and heads across.

    Args:
        panels: Panel title -> ``[layer head]`` scores.
        title: Figure title.
        labels: Optional text per ``(layer, head)`` shown in every cell (e.g. census labels).

    Returns:
        A ``plotly.graph_objects.Figure``.

    Examples:
        >>> fig = head_heatmaps({"score": torch.rand(2, 4)}, title="demo")
        >>> len(fig.data)
        1
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels), horizontal_spacing=0.08)
    for i, (name, scores) in enumerate(panels.items(), start=1):
        values = scores.detach().float().cpu()
        n_layers, n_heads = values.shape
        text = None
        if labels is not None:
            text = [[labels.get((layer, head), "") for head in range(n_heads)] for layer in range(n_layers)]
        fig.add_trace(
            go.Heatmap(
                z=values.tolist(), x=[f"H{h}" for h in range(n_heads)], y=[f"L{layer}" for layer in range(n_layers)],
                text=text, texttemplate="%{text}" if text else "%{z:.2f}", colorscale="RdBu", zmid=0,
                showscale=i == len(panels), name=name,
                hovertemplate="layer %{y} head %{x}<br>" + name + " %{z:.3f}<extra></extra>",
            ),
            row=1, col=i,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=i)
    fig.update_layout(title=title, height=150 + 40 * max(s.shape[0] for s in panels.values()))
    return fig
