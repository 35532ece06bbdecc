"""Every head's attention pattern in one layer, for browsing one prompt.

:func:`attention_view` reads ``blocks.{L}.attn.hook_pattern`` through :func:`interp.capture` and
returns an :class:`AttentionView` with the figures the dashboard's Attention page and notebooks
share: all heads as a grid on one colour scale, one head with token labels on both axes and the
causal mask drawn, and what a chosen query token attends to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from interp.core.capturing import capture
from interp.core.hooks import hook_name
from interp.core.locking import holds_model
from interp.core.model_info import check_layer, model_info
from interp.core.tokens import Prompts

_MASKED = "#d0d0d0"
"""Colour of the future (masked) cells: drawn as gaps so the causal triangle is visible."""


@dataclass
class AttentionView:
    """Attention probabilities of every head of one layer for a single prompt."""

    tokens: list[str]
    """The prompt's tokens (BOS included when the model prepends it)."""
    layer: int
    """Block index."""
    patterns: Float[torch.Tensor, "head q k"]
    """Softmax attention, rows are query positions and columns key positions."""
    n_kv_heads: int
    """Key/value heads of the layer; query head ``h`` shares KV head ``h // (head / n_kv_heads)``."""

    @property
    def n_heads(self) -> int:
        """Number of query heads."""
        return self.patterns.shape[0]

    def kv_head(self, head: int) -> int:
        """The key/value head that query ``head`` reads (grouped-query attention)."""
        return self._head(head) // (self.n_heads // self.n_kv_heads)

    def attends_to(self, head: int, query: int, k: int | None = None) -> Any:
        """What the token at ``query`` attends to under ``head``, strongest first.

        Args:
            head: Query head index.
            query: Query position (negative counts from the end).
            k: Keep only the ``k`` strongest keys (default: every visible key).

        Returns:
            DataFrame with ``key`` (position), ``token`` and ``weight`` columns.
        """
        import pandas as pd

        query = self._position(query)
        row = self.patterns[self._head(head), query, : query + 1]
        order = row.argsort(descending=True)[:k].tolist()
        return pd.DataFrame(
            {"key": order, "token": [self.tokens[i] for i in order], "weight": [float(row[i]) for i in order]}
        )

    def to_frame(self) -> Any:
        """Long table: one row per (head, query, key) with key ≤ query."""
        import pandas as pd

        rows = [
            (h, q, kk, float(self.patterns[h, q, kk]))
            for h in range(self.n_heads)
            for q in range(len(self.tokens))
            for kk in range(q + 1)
        ]
        return pd.DataFrame(rows, columns=["head", "query", "key", "weight"])

    def grid_figure(self, columns: int = 4) -> Any:
        """Every head of the layer side by side on one shared 0..1 colour scale."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        columns = max(1, min(columns, self.n_heads))
        rows = -(-self.n_heads // columns)
        titles = [self._head_title(h) for h in range(self.n_heads)]
        fig = make_subplots(
            rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.03, vertical_spacing=0.08
        )
        labels = [f"{i}: {t!r}" for i, t in enumerate(self.tokens)]
        for h in range(self.n_heads):
            fig.add_trace(
                go.Heatmap(
                    z=self._masked(h),
                    x=labels,
                    y=labels,
                    colorscale="Blues",
                    zmin=0,
                    zmax=1,
                    showscale=h == 0,
                    colorbar={"title": {"text": "attention<br>weight"}},
                    hovertemplate=f"head {h}<br>query %{{y}}<br>key %{{x}}<br>weight %{{z:.3f}}<extra></extra>",
                ),
                row=h // columns + 1,
                col=h % columns + 1,
            )
        fig.update_yaxes(autorange="reversed", showticklabels=False, type="category")
        fig.update_xaxes(showticklabels=False, type="category")
        fig.update_yaxes(title_text="query ↓", row=1, col=1)
        fig.update_xaxes(title_text="key →", row=rows, col=1)
        fig.update_layout(
            title=f"layer {self.layer}: all {self.n_heads} heads, each row a query's weights over the keys "
                  "(shared colour scale 0..1; grey = masked future)",
            plot_bgcolor=_MASKED,
            height=260 * rows + 80,
            margin=dict(l=10, r=10, t=70, b=10),
        )
        return fig

    def head_figure(self, head: int, query: int | None = None) -> Any:
        """One head's pattern with token labels on both axes; the masked future is grey.

        Args:
            head: Query head index.
            query: Optionally outline this query position's row.
        """
        import plotly.graph_objects as go

        head = self._head(head)
        labels = [f"{i}: {t!r}" for i, t in enumerate(self.tokens)]
        fig = go.Figure(
            go.Heatmap(
                z=self._masked(head),
                x=labels,
                y=labels,
                colorscale="Blues",
                zmin=0,
                zmax=1,
                colorbar={"title": {"text": "attention<br>weight"}},
                hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>",
            )
        )
        if query is not None:
            q = self._position(query)
            fig.add_shape(
                type="rect", x0=-0.5, x1=q + 0.5, y0=q - 0.5, y1=q + 0.5, line=dict(color="#d62728", width=2)
            )
        fig.update_layout(
            title=f"layer {self.layer} {self._head_title(head)}: rows attend to columns (grey = masked future)",
            xaxis=dict(title="key", type="category", tickangle=-60),
            yaxis=dict(title="query", type="category", autorange="reversed"),
            plot_bgcolor=_MASKED,
            height=max(400, 24 * len(self.tokens) + 160),
            margin=dict(l=10, r=10, t=50, b=10),
        )
        return fig

    def _masked(self, head: int) -> list[list[float | None]]:
        # None (not 0) for key > query: plotly leaves the cell empty, so the background shows the mask.
        pattern = self.patterns[head]
        n = pattern.shape[0]
        return [[float(pattern[q, k]) if k <= q else None for k in range(n)] for q in range(n)]

    def _head_title(self, head: int) -> str:
        if self.n_kv_heads < self.n_heads:
            return f"head {head} (kv {self.kv_head(head)})"
        return f"head {head}"

    def _head(self, head: int) -> int:
        if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < self.n_heads:
            raise ValueError(f"head={head!r}, layer has heads 0..{self.n_heads - 1}")
        return head

    def _position(self, position: int) -> int:
        n = len(self.tokens)
        if isinstance(position, bool) or not isinstance(position, int) or not -n <= position < n:
            raise ValueError(f"query={position!r}, prompt has positions 0..{n - 1}")
        return position % n


@holds_model
def attention_view(model: Any, prompt: Prompts, layer: int) -> AttentionView:
    """Read every head's attention pattern at ``layer`` for one prompt.

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`.
        prompt: One prompt (a string, or a ``[pos]``/``[1 pos]`` token tensor).
        layer: Block index, ``0..n_layers-1``.

    Returns:
        The :class:`AttentionView` (CPU tensors).

    Raises:
        ValueError: a bad layer, a batch of several prompts, or a bad prompt.

    Examples:
        >>> view = attention_view(model, "When Mary and John went to the store", layer=0)  # doctest: +SKIP
        >>> view.attends_to(head=1, query=-1)  # doctest: +SKIP
    """
    info = model_info(model)
    check_layer(info, layer)
    one_row = isinstance(prompt, torch.Tensor) and (prompt.ndim == 1 or len(prompt) == 1)
    if not isinstance(prompt, str) and not one_row:
        raise ValueError("attention_view takes one prompt (a string or a single row of tokens), not a batch")
    cap = capture(model, prompt, names=[hook_name("pattern", layer)])
    return AttentionView(
        tokens=cap.str_tokens[0],
        layer=layer,
        patterns=cap.pattern(layer)[0].detach().float().cpu(),
        n_kv_heads=info.n_kv_heads,
    )

