"""Stages 4 and 5, attention: one head step by step, then every head of a layer side by side.

One head (:func:`attention_head`): scores ``q·k / sqrt(d_head)`` from the captured queries and keys
(after RoPE on rotary models), the causal mask, the softmax pattern, and for one query token the value
mix ``sum_k pattern[q, k] v[k]``. What each family adds is applied as the model applies it: its own
score scale (Gemma's ``query_pre_attn_scalar``, GPT-2's inverse layer index), logit soft-capping
(Gemma 2), and a sliding window on local-attention layers (Mistral, Gemma). Bridges that expose only
the unrotated queries and keys (GPT-NeoX, GPT-J, Phi-3: partial rotary) get RoPE applied here
(:func:`interp.journey.positions.apply_rope`). Grouped-query models share a key/value head between
``n_heads / n_kv_heads`` query heads; query head ``h`` reads key/value head ``h // (n_heads / n_kv_heads)``.

All heads (:func:`attention_heads`): the patterns as the model computed them (``hook_pattern``), on one
colour scale, labelled with the key/value head each reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float

from interp.core.capturing import Capture
from interp.core.hooks import fired_hooks, hook_name
from interp.core.locking import holds_model
from interp.core.model_info import check_head, check_layer, model_info
from interp.core.tokens import Prompts
from interp.journey.common import check_position, ensure_capture, prompt_str_tokens
from interp.journey.positions import apply_rope


def kv_head_of(model: Any, head: int) -> int:
    """The key/value head that query ``head`` reads (itself without grouped-query attention)."""
    info = model_info(model)
    return head // (info.n_heads // info.n_kv_heads)


def attention_names(model: Any, layer: int) -> list[str]:
    """Hook names :func:`attention_head` needs for ``layer``."""
    rotary = model_info(model).positional == "rotary"
    # The bridges of partial-rotary families never fire rot_q/rot_k; q and k are then rotated here.
    rotated = [hook_name(site, layer) for site in ("rot_q", "rot_k")] if rotary else []
    fired = fired_hooks(model)
    return [hook_name(site, layer) for site in ("q", "k", "v", "pattern", "z")] + [n for n in rotated if n in fired]


@dataclass
class AttentionHead:
    """One head of one layer, from scores to the value mix of one query."""

    layer: int
    """Layer index."""
    head: int
    """Query head index."""
    kv_head: int
    """Key/value head this query head reads."""
    query: int
    """Query position of :attr:`weighted_values` and :attr:`z`."""
    str_tokens: list[str]
    """Prompt tokens."""
    scores: Float[torch.Tensor, "pos pos"]
    """``q·k / sqrt(d_head)`` for every query (row) and key (column), before masking."""
    mask: Bool[torch.Tensor, "pos pos"]
    """True where a query may attend to a key (not in its future, nor beyond a sliding window)."""
    pattern: Float[torch.Tensor, "pos pos"]
    """Softmax of the masked scores, rows summing to 1."""
    values: Float[torch.Tensor, "pos d_head"]
    """Value vector of every key position."""
    weighted_values: Float[torch.Tensor, "pos d_head"]
    """``pattern[query, k] * values[k]``: what each key contributes to the query's output."""
    sliding_window: int | None = None
    """Keys a query sees on a local-attention layer (itself included), or None for global attention."""

    @property
    def z(self) -> Float[torch.Tensor, " d_head"]:
        """The head's output at the query position (before ``W_O``): the sum of :attr:`weighted_values`."""
        return self.weighted_values.sum(0)

    def to_frame(self) -> Any:
        """One row per key: score, attention weight and contribution norm for the chosen query."""
        import pandas as pd

        q = self.query
        return pd.DataFrame({"key": range(len(self.str_tokens)), "token": self.str_tokens,
                             "score": self.scores[q].tolist(), "allowed": self.mask[q].tolist(),
                             "weight": self.pattern[q].tolist(),
                             "contribution_norm": self.weighted_values.norm(dim=-1).tolist()})

    def figure(self) -> Any:
        """Four panels: raw scores, causal mask, softmax pattern, and the chosen query's value mix."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        labels = [f"{i}:{t!r}" for i, t in enumerate(self.str_tokens)]
        masked = self.scores.masked_fill(~self.mask, float("nan"))
        fig = make_subplots(rows=2, cols=2, vertical_spacing=0.2, horizontal_spacing=0.12, subplot_titles=(
            "1. scores q·k/√d (row: query, column: key)",
            "2. causal mask (dark: may attend)" if self.sliding_window is None
            else f"2. causal mask, sliding window {self.sliding_window} (dark: may attend)",
            "3. pattern: softmax of each row", f"4. value mix for query {self.query}"))
        hover = "query %{y}<br>key %{x}<br>"
        bar = {"len": 0.38, "thickness": 12, "x": 0.43}
        fig.add_trace(go.Heatmap(z=masked.numpy(), x=labels, y=labels, colorscale="RdBu_r", zmid=0,
                                 colorbar={**bar, "y": 0.81, "title": {"text": "score"}},
                                 hovertemplate=hover + "score %{z:.3f}<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Heatmap(z=self.mask.float().numpy(), x=labels, y=labels, zmin=0, zmax=1,
                                 colorscale=[[0, "#ffffff"], [1, "#666666"]],
                                 showscale=False, hovertemplate=hover + "allowed %{z}<extra></extra>"), row=1, col=2)
        fig.add_trace(go.Heatmap(z=self.pattern.numpy(), x=labels, y=labels, zmin=0, zmax=1, colorscale="Blues",
                                 colorbar={**bar, "y": 0.19, "title": {"text": "weight"}},
                                 hovertemplate=hover + "weight %{z:.3f}<extra></extra>"), row=2, col=1)
        fig.add_trace(go.Bar(x=labels, y=self.pattern[self.query].tolist(), name="attention weight"), row=2, col=2)
        fig.add_trace(go.Bar(x=labels, y=self.weighted_values.norm(dim=-1).tolist(), name="|weight · value|"),
                      row=2, col=2)
        for row, col in ((1, 1), (1, 2), (2, 1)):
            fig.update_yaxes(autorange="reversed", type="category", title_text="query" if col == 1 else None,
                             showticklabels=col == 1, row=row, col=col)
            fig.update_xaxes(type="category", title_text="key" if row == 2 else None, row=row, col=col)
        fig.update_xaxes(type="category", title_text="key", row=2, col=2)
        fig.update_layout(height=2 * max(320, 16 * len(labels) + 160) + 100,
                          margin={"b": 130},
                          legend={"orientation": "h", "x": 1, "xanchor": "right", "y": -0.21, "yanchor": "top"})
        fig.update_layout(title=f"Layer {self.layer}, head {self.head} (key/value head {self.kv_head})")
        return fig


@holds_model
def attention_head(
    model: Any,
    prompt: Prompts | None = None,
    layer: int = 0,
    head: int = 0,
    query: int = -1,
    *,
    cap: Capture | None = None,
) -> AttentionHead:
    """Recompute one head's attention from its captured queries, keys and values.

    Args:
        model: A ``TransformerBridge``.
        prompt: One prompt.
        layer: Layer index.
        head: Query head index.
        query: Query position whose value mix to show (negative counts from the end).
        cap: A capture holding :func:`attention_names` (reused instead of running the model).

    Returns:
        An :class:`AttentionHead`; its ``pattern`` equals the model's ``hook_pattern``.

    Raises:
        ValueError: layer, head or query out of range.

    Examples:
        >>> prompt = "When Mary and John went to the store, John gave a drink to"
        >>> attention_head(model, prompt, 1, 3).figure()  # doctest: +SKIP
    """
    info = model_info(model)
    check_layer(info, layer)
    check_head(info, head)
    cap = ensure_capture(model, prompt, cap, attention_names(model, layer))
    n = cap.tokens.shape[1]
    query = check_position(query, n, "query")
    kv = kv_head_of(model, head)
    q, k = _queries_keys(model, cap, layer)
    scores = (q[:, head].float() @ k[:, kv].float().T) / attention_scale(model, layer)
    if (cap_at := _hf_attention(model, layer, "attn_logit_softcapping")) is not None:
        scores = torch.tanh(scores / cap_at) * cap_at  # Gemma 2 squashes scores into (-cap, cap)
    window = sliding_window(model, layer)
    mask = torch.ones(n, n, dtype=torch.bool, device=scores.device).tril()
    if window is not None:
        mask = mask.triu(-(window - 1))
    pattern = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    values = cap.v(layer)[0, :, kv].float()
    return AttentionHead(
        layer=layer, head=head, kv_head=kv, query=query, str_tokens=prompt_str_tokens(cap),
        scores=scores.cpu(), mask=mask.cpu(), pattern=pattern.cpu(), values=values.cpu(),
        weighted_values=(pattern[query, :, None] * values).cpu(), sliding_window=window,
    )


def _queries_keys(model: Any, cap: Capture, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries ``[pos head d_head]`` and keys ``[pos kv_head d_head]`` as the scores are computed from them."""
    if model_info(model).positional != "rotary":
        return cap.q(layer)[0], cap.k(layer)[0]
    if hook_name("rot_q", layer) in cap and hook_name("rot_k", layer) in cap:
        return cap.rot_q(layer)[0], cap.rot_k(layer)[0]
    return apply_rope(cap.q(layer)[0], model), apply_rope(cap.k(layer)[0], model)


def _hf_attention(model: Any, layer: int, attribute: str) -> Any:
    """An attribute of the Hugging Face attention module of ``layer``, or None."""
    module = getattr(model.blocks[layer].attn, "original_component", None)
    return getattr(module, attribute, None)


def attention_scale(model: Any, layer: int) -> float:
    """The divisor of ``q·k``: the model's own (``1 / scaling`` of its attention module, e.g. Gemma's
    ``sqrt(query_pre_attn_scalar)``; ``sqrt(d_head)`` when it has none), times ``layer + 1`` where
    GPT-2's config asks for it."""
    config = getattr(model.original_model, "config", None)
    scaling = _hf_attention(model, layer, "scaling")
    scale = 1.0 / float(scaling) if scaling else float(model.cfg.d_head) ** 0.5
    if getattr(config, "scale_attn_by_inverse_layer_idx", False):
        scale *= layer + 1
    return scale


def sliding_window(model: Any, layer: int) -> int | None:
    """How many keys (itself included) a query of ``layer`` sees, or None for global attention.

    Read as the model reads it: the attention module's own window (Gemma), else the config's per-layer
    ``layer_types``, else a model-wide ``sliding_window`` (Mistral) unless ``use_sliding_window`` is off.
    """
    config = model.original_model.config
    window = _hf_attention(model, layer, "sliding_window")
    if window is None:
        types = getattr(config, "layer_types", None)
        if types is not None:
            window = config.sliding_window if types[layer] == "sliding_attention" else None
        elif getattr(config, "use_sliding_window", True):
            window = getattr(config, "sliding_window", None)
    return int(window) if window else None


@dataclass
class AttentionHeads:
    """Every head's pattern in one layer."""

    layer: int
    """Layer index."""
    str_tokens: list[str]
    """Prompt tokens."""
    patterns: Float[torch.Tensor, "head pos pos"]
    """Attention pattern of each query head (``hook_pattern``)."""
    kv_heads: list[int]
    """Key/value head read by each query head (all different without grouped-query attention)."""

    def to_frame(self) -> Any:
        """One row per head: its key/value head, mean attention to BOS and to the previous token."""
        import pandas as pd

        n = self.patterns.shape[-1]
        prev = self.patterns.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1) if n > 1 else torch.full(
            (self.patterns.shape[0],), float("nan"))
        return pd.DataFrame({"head": range(len(self.kv_heads)), "kv_head": self.kv_heads,
                             "to_first": self.patterns[:, :, 0].mean(-1).tolist(), "to_previous": prev.tolist()})

    def figure(self) -> Any:
        """One heatmap per head on a shared 0..1 colour scale; titles name the shared key/value head."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        n_heads = len(self.kv_heads)
        cols = min(n_heads, 4)
        rows = -(-n_heads // cols)
        fig = make_subplots(rows=rows, cols=cols,
                            subplot_titles=[f"head {h}" + (f" · kv {g}" if len(set(self.kv_heads)) < n_heads else "")
                                            for h, g in enumerate(self.kv_heads)])
        labels = [f"{i}:{t!r}" for i, t in enumerate(self.str_tokens)]
        for h in range(n_heads):
            fig.add_trace(go.Heatmap(z=self.patterns[h].numpy(), x=labels, y=labels, coloraxis="coloraxis",
                                     hovertemplate=f"head {h}<br>query %{{y}}<br>key %{{x}}<br>weight %{{z:.3f}}"
                                                   "<extra></extra>"),
                          row=h // cols + 1, col=h % cols + 1)
            fig.update_yaxes(autorange="reversed", type="category", showticklabels=h % cols == 0 and len(labels) <= 24,
                             row=h // cols + 1, col=h % cols + 1)
            fig.update_xaxes(type="category", showticklabels=False, row=h // cols + 1, col=h % cols + 1)
        fig.update_layout(coloraxis={"cmin": 0, "cmax": 1, "colorscale": "Blues",
                                     "colorbar": {"title": {"text": "attention<br>weight"}}},
                          height=120 + 300 * rows,
                          title=f"Layer {self.layer}: all heads, rows are queries, columns keys (shared colour scale)")
        return fig


@holds_model
def attention_heads(model: Any, prompt: Prompts | None = None, layer: int = 0, *,
                    cap: Capture | None = None) -> AttentionHeads:
    """All heads of ``layer`` side by side, with the key/value head each reads.

    Raises:
        ValueError: layer out of range.

    Examples:
        >>> attention_heads(model, "The cat sat on the mat", layer=0).figure()  # doctest: +SKIP
    """
    info = model_info(model)
    check_layer(info, layer)
    cap = ensure_capture(model, prompt, cap, [hook_name("pattern", layer)])
    return AttentionHeads(layer=layer, str_tokens=prompt_str_tokens(cap),
                          patterns=cap.pattern(layer)[0].float().cpu(),
                          kv_heads=[kv_head_of(model, h) for h in range(info.n_heads)])
