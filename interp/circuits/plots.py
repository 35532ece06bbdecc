"""Figures of circuits: the edge graph as a plotly network, and the faithfulness curve."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from interp.circuits.graph import EdgeGraph

_NODE = re.compile(r"a(\d+)\.(h|kv)(\d+)")


def node_position(graph: EdgeGraph, node: str) -> tuple[float, float]:
    """``(x, y)`` of a node: one column for the input, per layer one for its heads and one for its MLP, logits last.

    A receiver is drawn at its head (``a0.h1<q>`` at ``a0.h1``); a grouped key/value head ``a{L}.kv{G}`` sits
    between the query heads that read it.
    """
    info = graph.info
    node = node.split("<")[0]
    middle = (info.n_heads - 1) / 2
    if node == "input":
        return 0.0, middle
    if node == "logits":
        return 2.0 * info.n_layers + 1, middle
    if node.startswith("m"):
        return 2.0 * int(node[1:]) + 2, middle
    layer, kind, index = _NODE.fullmatch(node).groups()
    if kind == "kv":
        group = info.n_heads // info.n_kv_heads
        return 2.0 * int(layer) + 1.25, int(index) * group + (group - 1) / 2
    return 2.0 * int(layer) + 1, float(index)


def circuit_figure(graph: EdgeGraph, edges: Sequence[tuple[str, str, float]], title: str) -> Any:
    """Plotly network of ``(sender, receiver, score)`` edges: width by |score|, red raises the metric, blue lowers."""
    import plotly.graph_objects as go

    fig = go.Figure()
    top = max((abs(s) for _, _, s in edges), default=1.0) or 1.0
    nodes: dict[str, tuple[float, float]] = {}
    for sender, receiver, score in edges:
        (x0, y0), (x1, y1) = node_position(graph, sender), node_position(graph, receiver)
        nodes.setdefault(sender, (x0, y0))
        nodes.setdefault(receiver.split("<")[0], (x1, y1))
        fig.add_trace(go.Scatter(
            x=[x0, x1], y=[y0, y1], mode="lines", showlegend=False, hoverinfo="text",
            text=f"{sender} → {receiver}: {score:+.4g}",
            line={"width": 0.5 + 7.5 * abs(score) / top, "color": "#c0392b" if score > 0 else "#2c6fbb"},
            opacity=0.75,
        ))
    fig.add_trace(go.Scatter(
        x=[p[0] for p in nodes.values()], y=[p[1] for p in nodes.values()], mode="markers+text",
        text=list(nodes), textposition="top center", hoverinfo="text", showlegend=False,
        marker={"size": 11, "color": "#333333"},
    ))
    ticks = ["input"] + [t for layer in range(graph.info.n_layers) for t in (f"attn {layer}", f"mlp {layer}")]
    fig.update_layout(
        title=title, height=520, plot_bgcolor="white",
        xaxis={"tickvals": list(range(len(ticks) + 1)), "ticktext": ticks + ["logits"], "showgrid": False},
        yaxis={"title": "head", "showgrid": False, "zeroline": False},
    )
    return fig


def faithfulness_figure(n_edges: Sequence[int], recovered: Sequence[float], total: int, title: str) -> Any:
    """The share of the clean - corrupted metric gap the circuit recovers, against the edges it keeps."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(
        x=list(n_edges), y=list(recovered), mode="lines+markers",
        hovertemplate="%{x} edges: %{y:.1%} recovered<extra></extra>",
    ))
    fig.add_hline(y=1.0, line_dash="dot", annotation_text="clean")
    fig.add_hline(y=0.0, line_dash="dot", annotation_text="corrupted")
    fig.update_layout(title=title, height=380, yaxis={"title": "metric recovered", "tickformat": ".0%"},
                      xaxis={"title": f"edges kept (of {total})"})
    return fig
