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

    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels), horizontal_spacing=0.04)
    n_rows = max(s.shape[0] for s in panels.values())
    for i, (name, scores) in enumerate(panels.items(), start=1):
        values = scores.detach().float().cpu()
        n_layers, n_heads = values.shape
        text = None
        if labels is not None:
            text = [[labels.get((layer, head), "") for head in range(n_heads)] for layer in range(n_layers)]
        # Each panel has its own scale (attention fractions, loss in nats...), so each gets its own colour bar,
        # laid flat under the panel and titled with what it encodes.
        domain = fig.layout[f"xaxis{'' if i == 1 else i}"].domain
        finite = values[values.isfinite()]
        bound = float(finite.abs().max()) if finite.numel() else 1.0
        # Scores that cannot be negative (attention fractions) read best on a sequential scale from 0;
        # signed ones (copying, loss changes) on a diverging scale centred at 0.
        signed = bool(finite.numel()) and float(finite.min()) < 0
        scale = {"colorscale": "RdBu", "zmid": 0, "zmin": -(bound or 1.0), "zmax": bound or 1.0} if signed else {
            "colorscale": "Blues", "zmin": 0, "zmax": 1.0 if bound <= 1 else bound}
        fig.add_trace(
            go.Heatmap(
                z=values.tolist(), x=[f"H{h}" for h in range(n_heads)], y=[f"L{layer}" for layer in range(n_layers)],
                text=text, texttemplate="%{text}" if text else "%{z:.2f}", **scale, name=name,
                colorbar={"orientation": "h", "x": (domain[0] + domain[1]) / 2, "xanchor": "center",
                          "len": domain[1] - domain[0], "lenmode": "fraction", "y": -0.15, "yanchor": "top",
                          "thickness": 10, "title": {"text": name, "side": "bottom"}, "tickfont": {"size": 10},
                          "nticks": 3, "tickangle": 0},
                hovertemplate="layer %{y} head %{x}<br>" + name + " %{z:.3f}"
                + ("<br>%{text}" if text else "") + "<extra></extra>",
            ),
            row=1, col=i,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=i, showticklabels=i == 1)
    fig.update_yaxes(title_text="layer", row=1, col=1)
    fig.update_layout(title=title, height=230 + 42 * n_rows, margin={"t": 110, "b": 90, "l": 50, "r": 10})
    return fig
