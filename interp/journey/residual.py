"""Stage 7, residual stream: its norm layer by layer, and direct logit attribution (DLA).

The final residual at a position is a sum of components: the token embedding, the position embedding
(learned-position models), and what every attention layer and MLP wrote. The final logit of token ``t``
is ``norm(resid) @ W_U[:, t] + b_U[t]``. The final norm is not linear, so we *freeze its scale* at the
value it had on this prompt (``ln_final.hook_scale``); it is then linear, and each component gets

* LayerNorm: ``((c - mean(c)) / scale * w) @ W_U[:, t]``,
* RMSNorm: ``(c / scale * w) @ W_U[:, t]``,

which add up exactly to the logit minus the bias terms ``b_ln @ W_U[:, t] + b_U[t]`` (zero for Llama).
``w`` is the norm's effective gain (Gemma stores ``w - 1``). A model that soft-caps its output (Gemma 2:
``cap * tanh(logit / cap)``) is attributed before the cap, the last linear point.
Attention layers can be split into heads (``z_h @ W_O[h]``) plus the output bias ``b_O``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from interp.core.capturing import Capture
from interp.core.hooks import hook_name
from interp.core.locking import holds_model
from interp.core.model_info import model_info
from interp.core.tokens import Prompts
from interp.journey.common import check_position, ensure_capture, unembed
from interp.journey.embeddings import Token, resolve_token


def residual_names(model: Any, by_head: bool = False) -> list[str]:
    """Hook names :func:`residual_stream` needs."""
    info = model_info(model)
    names = [hook_name("embed"), hook_name("ln_final_scale")]
    names += [hook_name("pos_embed")] if info.positional == "learned" else []
    for layer in range(info.n_layers):
        names += [hook_name(site, layer) for site in ("resid_pre", "attn_out", "mlp_out")]
        if by_head:
            names.append(hook_name("z", layer))
    return names + [hook_name("resid_post", info.n_layers - 1)]


@dataclass
class ResidualStream:
    """Residual norms and each component's direct contribution to one token's logit."""

    position: int
    """Position read."""
    token_id: int
    """Token whose logit is attributed."""
    token: str
    """That token as text."""
    labels: list[str]
    """Component names: ``embed``, ``pos_embed``, ``L0.attn`` (or ``L0.H0``..., ``L0.attn_bias``), ``L0.mlp``..."""
    attributions: Float[torch.Tensor, " component"]
    """Direct contribution of each component to the logit."""
    logit: float
    """The model's logit for the token (before the final soft-cap, when the model has one)."""
    bias_terms: float
    """``b_ln @ W_U[:, t] + b_U[t]``: the part of the logit no component owns."""
    norm_labels: list[str]
    """Where each norm was read: ``L0.pre`` ... ``final``."""
    norms: Float[torch.Tensor, " layer_plus_1"]
    """Norm of the residual stream at each of those points."""
    softcap: float | None = None
    """The final logit soft-cap (Gemma 2): the model outputs ``softcap * tanh(logit / softcap)``."""

    def to_frame(self) -> Any:
        """One row per component."""
        import pandas as pd

        return pd.DataFrame({"component": self.labels, "attribution": self.attributions.tolist()})

    def figure(self) -> Any:
        """Left: residual norm by layer; right: each component's direct logit attribution."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        fig = make_subplots(rows=1, cols=2, column_widths=[0.35, 0.65],
                            subplot_titles=("residual norm", f"direct logit attribution to {self.token!r}"))
        fig.add_trace(go.Scatter(x=self.norm_labels, y=self.norms.tolist(), mode="lines+markers"), row=1, col=1)
        fig.add_trace(go.Bar(x=self.labels, y=self.attributions.tolist(),
                             hovertemplate="%{x}: %{y:.3f} to the logit<extra></extra>"), row=1, col=2)
        fig.update_yaxes(title_text="L2 norm of the residual", row=1, col=1)
        fig.update_yaxes(title_text="contribution to the logit", row=1, col=2)
        fig.update_xaxes(title_text="Lk.pre: entering block k", row=1, col=1)
        fig.update_xaxes(title_text="component (embeddings, each block's attention and MLP)", row=1, col=2)
        fig.update_layout(showlegend=False, title=(
            f"Position {self.position}: logit {self.logit:.3f} = components {float(self.attributions.sum()):.3f}"
            f" + biases {self.bias_terms:.3f}"))
        return fig


@holds_model
def residual_stream(
    model: Any,
    prompt: Prompts | None = None,
    position: int = -1,
    token: Token | None = None,
    *,
    by_head: bool = False,
    cap: Capture | None = None,
) -> ResidualStream:
    """Residual norm per layer and direct logit attribution for ``token`` at ``position``.

    Args:
        model: A ``TransformerBridge`` with a LayerNorm or RMSNorm before the unembedding.
        prompt: One prompt.
        position: Position to read (negative counts from the end).
        token: Token whose logit to attribute (default: the model's top prediction there).
        by_head: Split each attention layer into heads plus its output bias.
        cap: A capture holding :func:`residual_names` (reused instead of running the model).

    Returns:
        A :class:`ResidualStream`; ``attributions.sum() + bias_terms == logit`` up to float error.

    Raises:
        ValueError: position or token out of range, or a final norm that is neither LayerNorm nor RMSNorm.

    Examples:
        >>> stage = residual_stream(model, "The Eiffel Tower is in the city of")  # doctest: +SKIP
        >>> stage.to_frame()  # doctest: +SKIP
    """
    info = model_info(model)
    if info.norm not in ("layernorm", "rmsnorm"):
        raise ValueError(f"final norm {info.norm!r}; direct logit attribution handles layernorm and rmsnorm")
    cap = ensure_capture(model, prompt, cap, residual_names(model, by_head))
    position = check_position(position, cap.tokens.shape[1])
    logits = cap.logits[0, position].float()
    token_id = int(logits.argmax()) if token is None else resolve_token(model, token)
    softcap = info.final_softcap
    if softcap:  # undo cap * tanh(x / cap), clamped off +-cap where float32 tanh saturates
        logits = torch.atanh((logits / softcap).clamp(-1 + 1e-7, 1 - 1e-7)) * softcap
    labels, parts = _components(model, cap, position, by_head)
    stacked = torch.stack(parts).float()
    scale = cap[hook_name("ln_final_scale")][0, position].float()
    weight, bias = _final_norm(model)
    direction = unembed(model)[:, token_id].to(stacked.device)
    if info.norm == "layernorm":
        stacked = stacked - stacked.mean(-1, keepdim=True)
    attributions = (stacked / scale * weight.to(stacked.device)) @ direction
    bias_terms = float(bias.to(direction.device) @ direction) if bias is not None else 0.0
    bias_terms += float(model.b_U.detach()[token_id]) if getattr(model, "b_U", None) is not None else 0.0
    norm_labels = [f"L{layer}.pre" for layer in range(info.n_layers)] + ["final"]
    norms = [cap.resid(layer, "pre")[0, position].float().norm() for layer in range(info.n_layers)]
    norms.append(cap.resid(info.n_layers - 1, "post")[0, position].float().norm())
    return ResidualStream(
        position=position, token_id=token_id, token=model.tokenizer.decode([token_id]), labels=labels,
        attributions=attributions.cpu(), logit=float(logits[token_id]), bias_terms=bias_terms,
        norm_labels=norm_labels, norms=torch.stack(norms).cpu(), softcap=float(softcap) if softcap else None,
    )


def _components(model: Any, cap: Capture, position: int, by_head: bool) -> tuple[list[str], list[torch.Tensor]]:
    info = model_info(model)
    labels, parts = ["embed"], [cap[hook_name("embed")][0, position]]
    if info.positional == "learned":
        labels.append("pos_embed")
        parts.append(cap[hook_name("pos_embed")][0, position])
    for layer in range(info.n_layers):
        if by_head:
            z = cap.z(layer)[0, position].float()
            w_o = model.W_O[layer].detach().float().to(z.device)
            heads = torch.einsum("hd,hdm->hm", z, w_o)
            labels += [f"L{layer}.H{h}" for h in range(info.n_heads)]
            parts += list(heads)
            # The rest of the layer's output is its bias b_O (zero-sized models have none): read it as the
            # remainder so that nothing is dropped whatever the bias layout.
            labels.append(f"L{layer}.attn_bias")
            parts.append(cap.attn_out(layer)[0, position].float() - heads.sum(0))
        else:
            labels.append(f"L{layer}.attn")
            parts.append(cap.attn_out(layer)[0, position])
        labels.append(f"L{layer}.mlp")
        parts.append(cap.mlp_out(layer)[0, position])
    return labels, [p.float() for p in parts]


def _final_norm(model: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Effective gain and bias (None for RMSNorm) of the norm before the unembedding."""
    norm = model.ln_final.original_component
    weight = norm.weight.detach().float()
    bias = getattr(norm, "bias", None)
    if bias is None:
        # Gemma's RMSNorm multiplies by 1 + weight. The unit vector of ones has RMS 1, so the norm returns
        # its gain (over sqrt(1 + eps)): whichever of weight and 1 + weight that matches is the gain.
        with torch.no_grad():
            gain = norm(torch.ones(1, weight.shape[0], dtype=norm.weight.dtype, device=norm.weight.device))[0].float()
        if (gain - (1 + weight)).abs().max() < (gain - weight).abs().max():
            weight = 1 + weight
    return weight, None if bias is None else bias.detach().float()
