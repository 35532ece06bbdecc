"""Figures of probe results, shared by the CLI, the dashboard and notebooks.

The functions read a result's fields and import nothing from the modules that define the results,
so :mod:`probes.report` and :mod:`probes.steering` can import this module without a cycle.
"""

from __future__ import annotations

from typing import Any

from interp.core.model_info import display_name


def accuracy_figure(report: Any) -> Any:
    """Test accuracy, control accuracy and selectivity across layers, with the majority baseline.

    Args:
        report: A fitted :class:`probes.ProbeReport`.

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=report.layers, y=report.accuracy, mode="lines+markers", name="accuracy (test)"))
    fig.add_trace(
        go.Scatter(x=report.layers, y=report.train_accuracy, mode="lines", name="accuracy (train)",
                   line={"dash": "dot"})
    )
    if report.control_accuracy is not None:
        fig.add_trace(
            go.Scatter(x=report.layers, y=report.control_accuracy, mode="lines+markers", name="control accuracy")
        )
        fig.add_trace(
            go.Scatter(x=report.layers, y=report.selectivity, mode="lines+markers", name="selectivity",
                       line={"dash": "dash"})
        )
    fig.add_hline(y=report.majority, line_dash="dot", line_color="gray", annotation_text="majority class")
    fig.update_layout(
        title=f"probe '{report.task}' at {report.site or 'activations'} ({display_name(report.model) or 'model'})",
        xaxis={"title": "layer", "tickmode": "array", "tickvals": report.layers},
        yaxis={"title": "accuracy", "range": [min(0.0, *(report.selectivity or [0.0])) - 0.02, 1.02]},
    )
    return fig


def steering_figure(effect: Any) -> Any:
    """Next-token probabilities before and after steering, for the most changed tokens.

    Args:
        effect: A :class:`probes.SteeringEffect`.

    Returns:
        A ``plotly.graph_objects.Figure`` (grouped bars).
    """
    import plotly.graph_objects as go

    frame = effect.to_frame()
    fig = go.Figure()
    fig.add_trace(go.Bar(x=frame["token"], y=frame["before"], name="before"))
    fig.add_trace(go.Bar(x=frame["token"], y=frame["after"], name="after"))
    fig.update_layout(
        barmode="group",
        title=f"steering towards '{effect.label}' (alpha={effect.alpha:g}, layer {effect.layer})",
        xaxis={"title": "next token"},
        yaxis={"title": "probability (mean over prompts)"},
    )
    return fig
