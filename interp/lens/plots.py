"""Plotly figures of a lens: the layers x positions top-token map and the target's path across layers.

Rows are lens layers: ``"embed"`` decodes the token (and position) embeddings, the input of block 0;
``"block l"`` decodes the residual stream after block ``l``; the last row is the model's own output.
Cell text is the token each layer predicts to come *next* after the column's input token, in black or
white, whichever contrasts more with the cell's colour (at least 4.5:1 on the colour scale used).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from interp.core.model_info import display_name

COLORSCALE = "Blues"
"""Light (low probability) to dark (high probability)."""
TEXT_DARK, TEXT_LIGHT = "#111111", "#ffffff"
ROW_PX = 38
"""Height of one heat-map row in pixels."""


def row_labels(result: Any) -> list[str]:
    """One label per lens layer: ``"embed"``, ``"block 0"``, ..., ``"block 5 (output)"``."""
    labels = ["embed" if name == "embed" else f"block {name}" for name in result.layer_names]
    labels[-1] += " (output)"
    return labels


def column_labels(result: Any, batch: int = 0) -> list[str]:
    """One label per kept position: ``"7 ' city'"`` (position in the prompt, then the input token)."""
    positions = result.positions[batch].tolist()
    return [f"{p} {quoted(t)}" for p, t in zip(positions, result.str_tokens[batch], strict=True)]


def text_color(rgb: str) -> str:
    """Black or white, whichever has the higher WCAG contrast ratio against the colour ``"rgb(r, g, b)"``."""
    lum = luminance(rgb)
    return TEXT_DARK if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else TEXT_LIGHT


def luminance(color: str) -> float:
    """WCAG relative luminance of ``"rgb(r, g, b)"`` or ``"#rrggbb"``."""
    if color.startswith("#"):
        channels = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    else:
        channels = [float(c) for c in color[color.index("(") + 1 : color.index(")")].split(",")[:3]]
    lin = [c / 255 / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def lens_heatmap(result: Any, batch: int = 0, columns: Sequence[int] | None = None) -> Any:
    """Heat map of the top prediction (text) and its probability (colour) at every lens layer and position.

    Args:
        result: A :class:`interp.LensResult`.
        batch: Which prompt of the batch to draw.
        columns: Which kept positions to draw (indices into the kept columns, negatives from the end);
            default all. A long prompt reads best a window of about 16 at a time.

    Returns:
        A ``plotly.graph_objects.Figure``: one heatmap trace, the cell texts as annotations.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    cols = _columns(result, columns)
    trace, notes, axes = _heatmap_parts(result, batch, cols)
    fig.add_trace(trace)
    height = _heat_height(result, cols, batch)
    fig.update_layout(annotations=notes, xaxis=axes["x"], yaxis=axes["y"], height=height, plot_bgcolor="white",
                      title=_title(_heat_title(result, cols), height), margin={"t": 80, "l": 10, "r": 10, "b": 10})
    return fig


def target_figure(result: Any, batch: int = 0, columns: Sequence[int] = (-1,)) -> Any:
    """The target token's probability (log axis) and rank (1 = top prediction) at every lens layer.

    Args:
        result: A :class:`interp.LensResult` made with a target.
        batch: Which prompt of the batch to draw.
        columns: Kept positions to follow (indices into the kept columns; default the last): the
            target's probability as the token *after* each of them. One line per position.

    Returns:
        A ``plotly.graph_objects.Figure`` with two panels: two traces (probability, rank) per position.

    Raises:
        ValueError: the lens was made without a target.
    """
    from plotly.subplots import make_subplots

    if result.target is None:
        raise ValueError("this lens has no target: pass target= to the lens to plot its trajectory")
    target = _target_text(result, batch)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=[f"probability of {quoted(target)} (log scale)",
                                        f"rank of {quoted(target)} (1 = top prediction)"])
    for trace, panel in _target_traces(result, batch, _columns(result, columns)):
        fig.add_trace(trace, row=1, col=panel)
    _style_target_axes(fig, result, batch, row=1)
    fig.update_layout(height=420, title=_title(_target_title(result, batch), 420), hovermode="x unified",
                      margin={"t": 90, "l": 10, "r": 10, "b": 10},
                      legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0})
    return fig


def lens_figure(result: Any, batch: int = 0, columns: Sequence[int] | None = None,
                target_columns: Sequence[int] = (-1,)) -> Any:
    """The logit-lens picture: the target's trajectory on top (if any), the top-token heat map below.

    With a target, its probability and rank per layer (as :func:`target_figure`) sit above the heat map
    (as :func:`lens_heatmap`); without one, the figure is the heat map.

    Args:
        result: A :class:`interp.LensResult`.
        batch: Which prompt of the batch to draw.
        columns: Kept positions of the heat map (default all).
        target_columns: Kept positions whose target trajectory is drawn (default the last).

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    if result.target is None:
        return lens_heatmap(result, batch, columns)
    from plotly.subplots import make_subplots

    cols = _columns(result, columns)
    target = _target_text(result, batch)
    heat_px, top_px = _heat_height(result, cols, batch), 330
    fig = make_subplots(rows=2, cols=2, specs=[[{}, {}], [{"colspan": 2}, None]], vertical_spacing=0.1,
                        row_heights=[top_px / (top_px + heat_px), heat_px / (top_px + heat_px)],
                        horizontal_spacing=0.1,
                        subplot_titles=[f"probability of {quoted(target)} (log scale)",
                                        f"rank of {quoted(target)} (1 = top prediction)", _heat_title(result, cols)])
    for trace, panel in _target_traces(result, batch, _columns(result, target_columns)):
        fig.add_trace(trace, row=1, col=panel)
    _style_target_axes(fig, result, batch, row=1)
    heat = fig.get_subplot(2, 1)
    trace, notes, axes = _heatmap_parts(result, batch, cols, xref=heat.xaxis.plotly_name.replace("axis", ""),
                                        yref=heat.yaxis.plotly_name.replace("axis", ""))
    low, high = heat.yaxis.domain
    trace.colorbar.update(y=(low + high) / 2, len=high - low, yanchor="middle")
    fig.add_trace(trace, row=2, col=1)
    fig.update_xaxes(axes["x"], row=2, col=1)
    fig.update_yaxes(axes["y"], row=2, col=1)
    fig.update_layout(annotations=[*fig.layout.annotations, *notes], height=top_px + heat_px + 80,
                      title=_title(_target_title(result, batch), top_px + heat_px + 80),
                      margin={"t": 90, "l": 10, "r": 10, "b": 10}, plot_bgcolor="white", showlegend=True,
                      legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1, "xanchor": "right"})
    return fig


def _title(text: str, height: int) -> dict[str, Any]:
    # Pinned 12 px below the figure's top edge, inside a top margin tall enough for two lines: never over the plot.
    return {"text": text, "x": 0, "xanchor": "left", "xref": "container", "yref": "container",
            "y": 1 - 12 / height, "yanchor": "top"}


def _columns(result: Any, columns: Sequence[int] | None) -> list[int]:
    n = result.tokens.shape[1]
    if columns is None:
        return list(range(n))
    out = []
    for c in columns:
        if isinstance(c, bool) or not isinstance(c, int) or not -n <= c < n:
            raise ValueError(f"column {c!r}; the lens kept {n} positions, valid indices are {-n}..{n - 1}")
        out.append(c % n)
    if not out:
        raise ValueError("columns is empty; pass at least one kept position")
    return out


def quoted(token: str) -> str:
    """A token as figure text shows it: quoted (so leading spaces show), HTML-escaped for plotly."""
    return html.escape(repr(token), quote=False)


def _cell(token: str, width: int) -> str:
    token = token.replace("\n", "\\n").replace("\t", "\\t")
    return html.escape(token if len(token) <= width else token[: width - 1] + "…", quote=False)


def _target_text(result: Any, batch: int) -> str:
    return result.tokenizer.decode([int(result.target[batch])])


def _model(result: Any) -> str:
    name = getattr(result, "model_name", "") or ""
    return display_name(name) if name else "model"


def _lens_words(result: Any) -> str:
    words = f"{result.lens} lens"
    return words if result.final_norm_applied else words + " (final norm not applied)"


def _heat_title(result: Any, cols: list[int]) -> str:
    n = result.tokens.shape[1]
    shown = "" if len(cols) == n else f", positions {min(cols)}-{max(cols)} of {n}" if cols == list(
        range(min(cols), max(cols) + 1)) else f", {len(cols)} of {n} positions"
    return (f"{_model(result)}, {_lens_words(result)}: each layer's top prediction for the next token{shown}"
            "<br><sup>column = input token; cell = most likely next token decoded at that layer, "
            "colour = its probability</sup>")


def _target_title(result: Any, batch: int) -> str:
    target = quoted(_target_text(result, batch))
    return f"{_model(result)}, {_lens_words(result)}: {target} as the next token, layer by layer"


def _heat_height(result: Any, cols: list[int], batch: int = 0) -> int:
    labels = column_labels(result, batch)
    longest = max((len(labels[c]) for c in cols), default=4)
    tilted = len(cols) > 8 or longest > 12
    return 110 + ROW_PX * len(result.layer_names) + (min(7 * longest, 110) if tilted else 30)


def _heatmap_parts(result: Any, batch: int, cols: list[int], xref: str = "x", yref: str = "y") -> tuple:
    import plotly.graph_objects as go
    from plotly.colors import sample_colorscale

    top, p_top = result.top1()
    top, p_top = top[:, batch][:, cols].tolist(), p_top[:, batch][:, cols].tolist()
    rows, xlabels = row_labels(result), [column_labels(result, batch)[c] for c in cols]
    inputs = [result.str_tokens[batch][c] for c in cols]
    positions = [int(result.positions[batch, c]) for c in cols]
    has_target = result.target is not None
    if has_target:
        t_prob = result.prob()[:, batch][:, cols].tolist()
        t_rank = result.rank()[:, batch][:, cols].tolist()
        target_id, target = int(result.target[batch]), _target_text(result, batch)
    width = max(3, min(12, 120 // max(len(cols), 1)))
    size = 12 if len(cols) <= 20 else 10 if len(cols) <= 32 else 8
    hover, notes = [], []
    for layer, label in enumerate(rows):
        hover_row = []
        colors = sample_colorscale(COLORSCALE, [min(max(p, 0.0), 1.0) for p in p_top[layer]])
        for j, _ in enumerate(cols):
            word = result.tokenizer.decode([top[layer][j]])
            text = f"layer {label}<br>position {positions[j]}, input token {quoted(inputs[j])}<br>" \
                   f"top prediction {quoted(word)}, p = {p_top[layer][j]:.3f}"
            if has_target:
                text += f"<br>target {quoted(target)}: p = {t_prob[layer][j]:.3g}, rank {t_rank[layer][j] + 1}"
            hover_row.append(text)
            shown = _cell(word, width)
            hit = has_target and top[layer][j] == target_id
            notes.append({"x": j, "y": layer, "xref": xref, "yref": yref, "showarrow": False,
                          "text": f"<b>{shown}</b>" if hit else shown,
                          "font": {"color": text_color(colors[j]), "size": size}})
        hover.append(hover_row)
    trace = go.Heatmap(
        z=p_top, x=list(range(len(cols))), y=list(range(len(rows))), zmin=0, zmax=1, colorscale=COLORSCALE,
        hovertext=hover, hoverinfo="text", xgap=1, ygap=1,
        colorbar={"title": {"text": "probability of the<br>top prediction", "side": "right"}, "thickness": 14},
    )
    axes = {
        "x": {"tickmode": "array", "tickvals": list(range(len(cols))), "ticktext": xlabels, "showgrid": False,
              "title": {"text": "position and input token"}, "tickangle": -45 if len(cols) > 8 else 0,
              "automargin": True},
        "y": {"tickmode": "array", "tickvals": list(range(len(rows))), "ticktext": rows, "showgrid": False,
              "autorange": "reversed", "title": {"text": "decoded after"}, "automargin": True},
    }
    return trace, notes, axes


def _target_traces(result: Any, batch: int, cols: list[int]) -> list[tuple[Any, int]]:
    import plotly.graph_objects as go

    rows, xlabels = row_labels(result), column_labels(result, batch)
    prob, rank = result.prob()[:, batch], result.rank()[:, batch]
    out = []
    for i, c in enumerate(cols):
        name = f"after {xlabels[c]}"
        common = {"x": rows, "mode": "lines+markers", "legendgroup": name, "name": name,
                  "line": {"color": _PALETTE[i % len(_PALETTE)]}}
        out.append((go.Scatter(y=prob[:, c].tolist(), hovertemplate="p = %{y:.3g}<extra>" + name + "</extra>",
                               **common), 1))
        out.append((go.Scatter(y=(rank[:, c] + 1).tolist(), showlegend=False,
                               hovertemplate="rank %{y}<extra>" + name + "</extra>", **common), 2))
    return out


_PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def _style_target_axes(fig: Any, result: Any, batch: int, row: int) -> None:
    import math

    probs = [y for trace in fig.data if trace.type == "scatter" and trace.hovertemplate.startswith("p =")
             for y in trace.y]
    low = math.floor(math.log10(min((p for p in probs if p > 0), default=1e-3))) - 0.1
    fig.update_xaxes(type="category", title_text="decoded after", tickangle=-30, row=row)
    low = min(low, -1.1)
    fig.update_yaxes(type="log", title_text="probability", exponentformat="power", range=[low, 0.05],
                     dtick=1 if low > -7 else None, row=row, col=1)  # decades only, no 2/5 minor labels
    ranks = [y for trace in fig.data if trace.type == "scatter" and trace.hovertemplate.startswith("rank")
             for y in trace.y]
    worst = math.log10(max(max(ranks, default=10), 10))
    top = max(math.ceil(worst), worst + 0.15)  # from rank 1 down to past the worst rank, with a power of ten
    fig.update_yaxes(type="log", title_text="rank", range=[top, -0.1], dtick=1, row=row, col=2)
