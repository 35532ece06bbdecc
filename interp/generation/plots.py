"""Plotly figures of next-token distributions, shared by the CLI, the dashboard and notebooks.

The functions read a result's fields and import nothing from the modules that define the results,
so :mod:`interp.generation.decoding` can import this module without a cycle.
"""

from __future__ import annotations

from typing import Any

from interp.generation.sampling import STEPS


def step_label(name: str, result: Any) -> str:
    """Short name of one pipeline step with its setting: ``"top-k 5"``, ``"temperature 0.7"``, ``"top-p off"``."""
    if name == "temperature":
        return f"temperature {result.temperature:g}" + (" (greedy)" if result.temperature == 0 else "")
    if name == "top_k":
        return "top-k off" if result.top_k is None else f"top-k {result.top_k}"
    if name == "top_p":
        return "top-p off" if result.top_p is None else f"top-p {result.top_p:g}"
    return "softmax(logits)"


def effect_text(effect: Any) -> str:
    """What one step removed, in words: ``"cut 49,990 tokens holding 3.2% of the probability"``."""
    if effect.removed == 0:
        return "cut nothing"
    return f"cut {effect.removed:,} tokens holding {share(effect.removed_mass)} of the probability"


def share(fraction: float) -> str:
    """A probability as a percentage with two significant digits when small: ``0.0097%``, ``3.2%``.

    Examples:
        >>> share(0.000097), share(0.032), share(0.0)
        ('0.0097%', '3.2%', '0%')
    """
    if fraction == 0:
        return "0%"
    return f"{fraction:.1%}" if fraction >= 0.001 else f"{fraction * 100:.2g}%"


def next_token_figure(result: Any, k: int = 10, log: bool = False) -> Any:
    """Grouped bars: the top-``k`` tokens' probability after each pipeline step, and the rest of the vocabulary.

    The last group, ``all other tokens``, is the probability left on the tokens outside the top ``k``: the
    tail that temperature moves and top-k/top-p cut. Each legend entry says what its step removed.

    Args:
        result: A :class:`interp.NextToken`.
        k: How many tokens (by raw logit) get their own bars.
        log: Logarithmic probability axis, so small probabilities stay visible (removed tokens, at 0,
            disappear from it).

    Returns:
        A ``plotly.graph_objects.Figure`` with one bar trace per step of :data:`interp.generation.STEPS`.
    """
    import plotly.graph_objects as go

    frame = result.to_frame(k)
    ids = frame["id"].tolist()
    n_rest = result.logits.shape[0] - len(ids)
    labels = [f"{rank}: {token!r}" for rank, token in enumerate(frame["token"])] + [f"all other {n_rest:,} tokens"]
    fig = go.Figure()
    for name, effect in zip(STEPS, result.step_effects(), strict=True):
        probs = result.probs_by_step[name].double()
        rest = max(0.0, float(probs.sum() - probs[ids].sum()))
        label = step_label(name, result)
        if name != "logits":
            label += f": {effect_text(effect)}"
        fig.add_bar(
            name=label, x=labels, y=[*frame[f"p_{name}"].tolist(), rest],
            hovertemplate="%{x}<br>p = %{y:.4g}<extra>" + step_label(name, result) + "</extra>",
        )
    fig.update_layout(
        barmode="group",
        title=f"Next-token probability after each step of the sampling pipeline ({effect_summary(result)})",
        xaxis={"title": "token (ranked by raw logit)", "type": "category"},
        yaxis={"title": "probability" + (" (log scale; 0 not drawn)" if log else ""),
               "type": "log" if log else "linear", "exponentformat": "power" if log else "none"},
        legend={"orientation": "h", "yanchor": "top", "y": -0.3, "xanchor": "left", "x": 0},
        height=480, margin={"t": 60, "b": 10},
    )
    return fig


def effect_summary(result: Any) -> str:
    """``"50,257 → 12 tokens left"``: the vocabulary and what the last step still allows."""
    effects = result.step_effects()
    return f"{effects[0].kept:,} → {effects[-1].kept:,} tokens left"
