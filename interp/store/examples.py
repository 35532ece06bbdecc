"""Max-activating examples of any unit over a store: a neuron, or a direction (probe, SAE feature, user vector).

A unit's activation at token ``i`` is ``activations[i, unit]`` for a neuron index, and the raw dot product
``activations[i] @ vector`` for a vector (not normalised; float32 accumulation). Every query scans all
``n_tokens`` rows, so the answer is exact, not sampled: the top ``k`` positions by activation, ties broken by
the earlier position. A neuron reads one column of the memory-mapped array; a direction streams the array
once (:func:`interp.store.scan.direction_scan`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float

from interp.store.scan import direction_scan

Unit = int | np.ndarray | torch.Tensor | list[float]
"""A neuron index, or a vector of the site's width."""


def unit_activations(store: Any, site: str, unit: Unit) -> Float[np.ndarray, " n_tokens"]:
    """float32 activation of ``unit`` at every stored token of ``site``.

    Raises:
        ValueError: a neuron index outside ``0..d-1``, or a vector of the wrong length or with non-finite values.
    """
    acts = store.activations(site)
    index, vector = check_unit(unit, acts.shape[1], site)
    if index is not None:
        return np.asarray(acts[:, index], dtype=np.float32)
    return direction_scan(acts, vector)


def check_unit(unit: Unit, d: int, site: str) -> tuple[int | None, np.ndarray | None]:
    """``(index, None)`` for a neuron, ``(None, float32 vector)`` for a direction; ValueError otherwise."""
    if isinstance(unit, int | np.integer) and not isinstance(unit, bool):
        if not 0 <= unit < d:
            raise ValueError(f"unit={int(unit)}; site {site!r} has units 0..{d - 1}")
        return int(unit), None
    if isinstance(unit, torch.Tensor):
        unit = unit.detach().cpu().numpy()
    try:
        vector = np.asarray(unit, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"unit={unit!r:.60}; pass a neuron index 0..{d - 1} or a vector of length {d}") from None
    if vector.shape != (d,):
        raise ValueError(
            f"unit has shape {vector.shape}; site {site!r} needs an index 0..{d - 1} or a vector of shape ({d},)"
        )
    if not np.isfinite(vector).all():
        raise ValueError("unit vector has non-finite values")
    return None, np.ascontiguousarray(vector)


def top_positions(acts: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values, descending, ties broken by the smaller index (exact, O(n))."""
    if k >= len(acts):
        return np.lexsort((np.arange(len(acts)), -acts))
    kth = np.partition(acts, len(acts) - k)[len(acts) - k]
    above = np.flatnonzero(acts > kth)
    chosen = np.concatenate([above, np.flatnonzero(acts == kth)[: k - len(above)]])
    return chosen[np.lexsort((chosen, -acts[chosen]))]


@dataclass
class LogitEffect:
    """Tokens whose logit one unit of activation raises and lowers most, directly through the unembedding."""

    promoted: list[tuple[str, float]]
    """(token, logit change) pairs, largest first."""
    suppressed: list[tuple[str, float]]
    """(token, logit change) pairs, most negative first."""

    def to_frame(self) -> Any:
        """One row per token: ``direction`` ("promoted"/"suppressed"), ``token``, ``logit``."""
        import pandas as pd

        rows = [{"direction": kind, "token": t, "logit": v}
                for kind, pairs in (("promoted", self.promoted), ("suppressed", self.suppressed)) for t, v in pairs]
        return pd.DataFrame(rows, columns=["direction", "token", "logit"])


def logit_effect(store: Any, site: str, unit: Unit, k: int = 10) -> LogitEffect | None:
    """The unit's direct logit effect, or None for a site that writes nothing to the residual stream directly."""
    entry = store.site_info(site)
    index, vector = check_unit(unit, entry["d"], site)
    if entry.get("readout") is None:
        return None
    j = store.sites.index(site)
    direction = np.eye(1, entry["d"], index, dtype=np.float32)[0] if index is not None else vector
    if entry["readout"] == "write":
        direction = direction @ store.readout[f"write.{j}"]
    effect = direction @ store.readout["unembed"]
    k = min(k, len(effect))
    order = np.argsort(-effect, kind="stable")
    names = store.decode(np.concatenate([order[:k], order[::-1][:k]]))
    return LogitEffect(
        promoted=[(names[i], float(effect[t])) for i, t in enumerate(order[:k])],
        suppressed=[(names[k + i], float(effect[t])) for i, t in enumerate(order[::-1][:k])],
    )


@dataclass
class TopExamples:
    """The max-activating examples of one unit at one site of a store, and how its activations are spread."""

    site: str
    """The store's site."""
    unit: str
    """``"neuron 17"`` or ``"vector |v|=1.23"``."""
    positions: np.ndarray
    """Token indices into the store, by activation descending."""
    activations: np.ndarray
    """The unit's activation at each of :attr:`positions`."""
    tokens: list[str]
    """The token at each position."""
    contexts: list[list[str]] = field(repr=False)
    """Tokens around each position, within the row the model read (``contexts[i][offsets[i]]`` is the token)."""
    context_activations: list[np.ndarray] = field(repr=False)
    """The unit's activation at each context token."""
    offsets: list[int] = field(repr=False)
    """Where each example's token sits in its context."""
    documents: np.ndarray = field(repr=False)
    """Index of the document each position belongs to."""
    histogram: tuple[np.ndarray, np.ndarray] = field(repr=False)
    """``(counts, bin edges)`` of the unit's activation over all stored tokens."""
    quantiles: Any = field(repr=False)
    """``pandas.DataFrame`` of examples at each quantile: ``quantile``, ``rank`` (0 = smallest activation),
    ``activation``, ``position``, ``token``, ``context``."""
    logits: LogitEffect | None = field(repr=False)
    """Direct logit effect, when the site has one."""

    def to_frame(self) -> Any:
        """One row per example: ``activation`` (descending), ``token``, ``context`` (token in [[ ]]), ``position``,
        ``document``, ``pos_in_row``... (a ``pandas.DataFrame``)."""
        import pandas as pd

        return pd.DataFrame({
            "rank": np.arange(len(self.positions)),
            "activation": self.activations,
            "token": self.tokens,
            "context": [_marked(c, o) for c, o in zip(self.contexts, self.offsets, strict=True)],
            "position": self.positions,
            "document": self.documents,
        })

    def figure(self) -> Any:
        """Top contexts coloured by activation, the activation histogram, and the logit effect (plotly)."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        width = max((len(c) for c in self.contexts), default=1)
        z = np.full((len(self.contexts), width), np.nan)
        text = np.full((len(self.contexts), width), "", dtype=object)
        for i, (ctx, vals) in enumerate(zip(self.contexts, self.context_activations, strict=True)):
            z[i, : len(ctx)], text[i, : len(ctx)] = vals, [t.replace(" ", "␣") for t in ctx]
        fig = make_subplots(rows=2, cols=2, specs=[[{"colspan": 2}, None], [{}, {}]], row_heights=[0.65, 0.35],
                            subplot_titles=("Top examples (colour: activation)", "Activation histogram",
                                            "Direct logit effect"), vertical_spacing=0.1)
        fig.add_trace(go.Heatmap(z=z, text=text, texttemplate="%{text}", colorscale="RdBu", zmid=0,
                                 colorbar={"title": "activation", "len": 0.6, "y": 0.7},
                                 hovertemplate="%{text}: %{z:.3f}<extra></extra>"), row=1, col=1)
        fig.update_yaxes(autorange="reversed", title_text="rank", row=1, col=1)
        counts, edges = self.histogram
        fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, name="tokens", showlegend=False), row=2, col=1)
        fig.update_yaxes(type="log", title_text="tokens", row=2, col=1)
        fig.update_xaxes(title_text="activation", row=2, col=1)
        if self.logits is not None:
            pairs = self.logits.promoted[:8] + self.logits.suppressed[:8][::-1]
            fig.add_trace(go.Bar(x=[v for _, v in pairs], y=[repr(t) for t, _ in pairs], orientation="h",
                                 showlegend=False), row=2, col=2)
            fig.update_xaxes(title_text="logit change per unit", row=2, col=2)
        fig.update_layout(title=f"{self.site}, {self.unit}", height=700)
        return fig


def top_examples(store: Any, site: str, unit: Unit, k: int = 20, *, left: int = 12, right: int = 4,
                 bins: int = 60, quantiles: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999), per_quantile: int = 3,
                 logit_k: int = 10) -> TopExamples:
    """The ``k`` stored positions where ``unit`` is largest, with context, histogram, quantiles and logit effect.

    Args:
        store: An :class:`interp.store.ActivationStore`.
        site: One of ``store.sites``.
        unit: A neuron index, or a vector of the site's width (activation = ``activations @ vector``).
        k: Examples to return (1..n_tokens).
        left: Context tokens before each example (within the row the model read).
        right: Context tokens after it.
        bins: Histogram bins.
        quantiles: Quantiles of the activation to sample examples at.
        per_quantile: Examples at each quantile: the token of rank ``round(q * (n_tokens - 1))`` in ascending
            order of activation, and those just below it.
        logit_k: Tokens in each list of the logit effect.

    Raises:
        ValueError: a site not in the store, a bad unit, or ``k`` outside ``1..n_tokens``.
    """
    acts = unit_activations(store, site, unit)
    n = len(acts)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= n:
        raise ValueError(f"k={k!r}; must be an integer 1..{n} (the stored tokens)")
    if not all(0.0 <= q <= 1.0 for q in quantiles):
        raise ValueError(f"quantiles={quantiles!r}; each must be in 0..1")
    checks = (("left", left, 0), ("right", right, 0), ("bins", bins, 1), ("per_quantile", per_quantile, 0))
    for name, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r}; must be an integer >= {low}")
    top = top_positions(acts, int(k))
    index, vector = check_unit(unit, store.site_info(site)["d"], site)
    label = f"neuron {index}" if index is not None else f"vector |v|={float(np.linalg.norm(vector)):.3g}"
    windows = [_window(int(p), store.seq_len, n, left, right) for p in top]
    quantile_rows, quantile_windows = _quantile_examples(acts, quantiles, per_quantile, store.seq_len, left, right)
    all_windows = windows + quantile_windows
    ids = np.concatenate([store.tokens[a:b] for a, b, _ in all_windows]) if all_windows else np.zeros(0, int)
    names, contexts, cursor = store.decode(ids), [], 0
    for a, b, _ in all_windows:
        contexts.append(names[cursor:cursor + b - a])
        cursor += b - a
    import pandas as pd

    qframe = pd.DataFrame([{**row, "token": contexts[len(windows) + i][w[2] - w[0]],
                            "context": _marked(contexts[len(windows) + i], w[2] - w[0])}
                           for i, (row, w) in enumerate(zip(quantile_rows, quantile_windows, strict=True))],
                          columns=["quantile", "rank", "activation", "position", "token", "context"])
    return TopExamples(
        site=site, unit=label, positions=top, activations=acts[top],
        tokens=[contexts[i][p - a] for i, (a, _, p) in enumerate(windows)],
        contexts=contexts[: len(windows)],
        context_activations=[acts[a:b] for a, b, _ in windows],
        offsets=[p - a for a, _, p in windows],
        documents=np.searchsorted(store.doc_starts, top, side="right") - 1,
        histogram=np.histogram(acts, bins=bins),
        quantiles=qframe,
        logits=logit_effect(store, site, unit, logit_k),
    )


def _window(p: int, seq_len: int, n: int, left: int, right: int) -> tuple[int, int, int]:
    """``(start, stop, p)``: tokens around ``p`` inside its row."""
    row = p - p % seq_len
    return max(row, p - left), min(row + seq_len, n, p + right + 1), p


def _quantile_examples(acts: np.ndarray, quantiles: tuple[float, ...], per: int, seq_len: int, left: int,
                       right: int) -> tuple[list[dict[str, Any]], list[tuple[int, int, int]]]:
    """The tokens of rank ``round(q * (n - 1))`` and the ``per - 1`` ranks below it, in ascending order of
    activation, for each quantile ``q`` (one partial sort for all of them)."""
    n = len(acts)
    ranks = {q: [r for r in range(round(q * (n - 1)) - per + 1, round(q * (n - 1)) + 1) if r >= 0][::-1]
             for q in quantiles}
    wanted = sorted({r for rs in ranks.values() for r in rs})
    order = np.argpartition(acts, wanted) if wanted else np.zeros(0, dtype=np.int64)
    rows, windows = [], []
    for q, rs in ranks.items():
        for r in rs:
            p = int(order[r])
            rows.append({"quantile": q, "rank": r, "activation": float(acts[p]), "position": p})
            windows.append(_window(p, seq_len, n, left, right))
    return rows, windows


def _marked(context: list[str], offset: int) -> str:
    return "".join(context[:offset]) + "[[" + context[offset] + "]]" + "".join(context[offset + 1:])
