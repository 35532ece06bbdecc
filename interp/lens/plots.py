"""Plotly figures of a lens: the layers x positions top-token map and the target's path across layers."""

from __future__ import annotations

from typing import Any


def lens_figure(result: Any, batch: int = 0) -> Any:
    """Heat map of the top token (text) and its probability (colour) at every lens layer and position, as in
    the original logit-lens plots; with a target, a second panel of its probability and rank per layer at the
    last kept position.

    Args:
        result: A :class:`interp.LensResult`.
        batch: Which prompt of the batch to draw.

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    top, prob = result.top1()
    words = [[result.tokenizer.decode([int(t)]) for t in row] for row in top[:, batch].tolist()]
    x = [f"{i}:{tok!r}" for i, tok in zip(result.positions[batch].tolist(), result.str_tokens[batch])]
    has_target = result.target is not None
    fig = make_subplots(rows=1, cols=2 if has_target else 1, column_widths=[0.75, 0.25] if has_target else None,
                        subplot_titles=[f"{result.lens} lens: top token per layer",
                                        *(["target across layers"] if has_target else [])],
                        specs=[[{}, {"secondary_y": True}]] if has_target else None)
    fig.add_trace(go.Heatmap(z=prob[:, batch].tolist(), x=x, y=result.layer_names, text=words,
                             texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1,
                             colorbar={"title": "p(top)", "x": 0.72 if has_target else 1.0},
                             hovertemplate="layer %{y}<br>position %{x}<br>top %{text} p=%{z:.3f}<extra></extra>"),
                  row=1, col=1)
    if has_target:
        target = result.tokenizer.decode([int(result.target[batch])])
        fig.add_trace(go.Scatter(x=result.layer_names, y=result.prob()[:, batch, -1].tolist(),
                                 name=f"p({target!r})", mode="lines+markers"), row=1, col=2)
        fig.add_trace(go.Scatter(x=result.layer_names, y=result.rank()[:, batch, -1].tolist(),
                                 name=f"rank({target!r})", mode="lines+markers", line={"dash": "dot"}),
                      row=1, col=2, secondary_y=True)
        fig.update_yaxes(title_text="probability", range=[0, 1], row=1, col=2)
        fig.update_yaxes(title_text="rank", type="log", row=1, col=2, secondary_y=True)
    fig.update_yaxes(autorange="reversed", title_text="layer", row=1, col=1)
    fig.update_layout(height=220 + 28 * len(result.layer_names), title=f"{result.lens} lens"
                      + ("" if result.final_norm_applied else " (final norm not applied)"))
    return fig
