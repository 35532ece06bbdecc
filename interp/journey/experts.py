"""Stage 6 on a mixture-of-experts model: which experts the router picks for each token, and what they write.

A mixture-of-experts (MoE) block holds ``n_experts`` feed-forward networks. For each token a router scores
every expert (``router_logits = x @ W_gate``); the ``top_k`` best run, and the block's output is their outputs
weighted by the routing weights (Mixtral: the softmax of the router logits restricted to the chosen experts,
renormalised to sum to 1). Parameters grow with ``n_experts`` while each token pays for ``top_k`` experts.

TransformerLens hooks the router (its logits, chosen experts and weights) but not the experts, so
:func:`expert_outputs` reruns the model's own experts module on the captured block input, one chosen expert
at a time with weight 1. What an expert "promotes" is read directly through the unembedding, as for neurons
(:mod:`interp.journey.ffn`): ``weight * expert(x) @ W_U``, ignoring the final norm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int

from interp.core.capturing import Capture
from interp.core.hooks import hook_name, moe_layers
from interp.core.locking import holds_model
from interp.core.model_info import check_layer, model_info
from interp.core.tokens import Prompts
from interp.journey.common import check_position, ensure_capture, prompt_str_tokens, token_text, unembed


def expert_names(layer: int) -> list[str]:
    """Hook names :func:`expert_routing` and :func:`expert_outputs` need at ``layer``."""
    return [hook_name(site, layer) for site in ("expert_in", "router_logits", "expert_weights", "expert_indices",
                                                 "mlp_out")]


def check_moe_layer(model: Any, layer: int) -> int:
    """Return ``layer`` if its feed-forward is a routed mixture of experts.

    Raises:
        ValueError: a layer out of range, or a dense feed-forward (the message names the architecture).
    """
    info = model_info(model)
    check_layer(info, layer)
    moe = moe_layers(model)
    if layer not in moe:
        where = f"its experts are at layers {moe}" if moe else "it has a dense feed-forward (no router)"
        raise ValueError(f"layer={layer} of {info.arch} is not a mixture-of-experts block; {where}")
    return layer


@holds_model
def expert_outputs(model: Any, layer: int, cap: Capture) -> Float[torch.Tensor, "batch pos top_k d_model"]:
    """Each token's chosen experts' outputs at ``layer``, before the routing weights scale them.

    ``(cap.expert_weights(layer).gather(-1, idx)[..., None] * expert_outputs(...)).sum(-2)`` is the block's
    routed output (the whole of ``mlp_out`` on Mixtral; models with shared experts add those on top).

    Args:
        model: A mixture-of-experts ``TransformerBridge``.
        layer: A mixture-of-experts block.
        cap: A capture holding :func:`expert_names` of ``layer`` (the ``"experts"`` alias).

    Raises:
        ValueError: a dense layer, or an experts module that does not take ``(tokens, indices, weights)``.
    """
    check_moe_layer(model, layer)
    block = model.blocks[layer].mlp.original_component
    experts = getattr(block, "experts", None)
    # Captures may live on another device than a sharded model's experts.
    device, home = next(block.parameters()).device, cap[hook_name("expert_in", layer)].device
    x = cap[hook_name("expert_in", layer)].to(device)
    chosen = cap.expert_indices(layer).to(device)
    flat, flat_chosen = x.reshape(-1, x.shape[-1]), chosen.reshape(-1, chosen.shape[-1])
    ones = torch.ones(flat.shape[0], 1, dtype=x.dtype, device=x.device)
    try:
        with torch.no_grad():
            # The model's own experts code (any kernel it was loaded with), one routing slot at a time.
            outs = [experts(flat, flat_chosen[:, slot : slot + 1], ones) for slot in range(chosen.shape[-1])]
    except TypeError as err:
        raise ValueError(f"{model_info(model).arch}: the experts module of layer {layer} "
                         f"({type(experts).__name__}) does not take (tokens, indices, weights): {err}") from err
    return torch.stack(outs, dim=1).reshape(*chosen.shape, x.shape[-1]).to(home)


@dataclass
class ExpertRouting:
    """The router's choices over a prompt at one layer, and what the chosen experts write at one position."""

    layer: int
    """Layer index."""
    position: int
    """Position whose experts are followed."""
    tokens: list[str]
    """The prompt's tokens."""
    n_experts: int
    """Experts in the block."""
    router_probs: Float[torch.Tensor, "pos n_experts"]
    """Softmax of the router logits, every expert for every token."""
    experts: Int[torch.Tensor, "pos top_k"]
    """Chosen experts per token, in the router's order."""
    weights: Float[torch.Tensor, "pos top_k"]
    """Their routing weights (what each expert's output was multiplied by)."""
    contribution_norms: Float[torch.Tensor, "pos top_k"]
    """``||weight * expert(x)||``: the size of each chosen expert's write into the residual stream."""
    unrouted_norms: Float[torch.Tensor, " pos"]
    """``||mlp_out - sum of the weighted experts||``: shared experts, if the model has any (else ~0)."""
    load: Int[torch.Tensor, " n_experts"]
    """Tokens routed to each expert (sums to ``pos * top_k``)."""
    predicted: str
    """The model's top next token at :attr:`position`."""
    logit_contributions: Float[torch.Tensor, " top_k"]
    """Each chosen expert's direct contribution to :attr:`predicted`'s logit at :attr:`position`."""
    promoted: list[list[str]]
    """Per chosen expert at :attr:`position`, the tokens its weighted output promotes most."""

    @property
    def token(self) -> str:
        """The token at :attr:`position`."""
        return self.tokens[self.position]

    def to_frame(self) -> Any:
        """One row per token and routing slot: the expert, its weight and the size of its write."""
        import pandas as pd

        top_k = self.experts.shape[1]
        return pd.DataFrame({
            "position": [p for p in range(len(self.tokens)) for _ in range(top_k)],
            "token": [t for t in self.tokens for _ in range(top_k)],
            "slot": list(range(top_k)) * len(self.tokens),
            "expert": self.experts.flatten().tolist(),
            "weight": self.weights.flatten().tolist(),
            "contribution_norm": self.contribution_norms.flatten().tolist(),
        })

    def experts_frame(self) -> Any:
        """One row per expert: its load, and at :attr:`position` its routing weight, the size of its write, its
        direct contribution to :attr:`predicted`'s logit and the tokens it promotes (zero, empty: not chosen)."""
        import pandas as pd

        slots = {int(e): s for s, e in enumerate(self.experts[self.position].tolist())}
        rows = []
        for e in range(self.n_experts):
            s = slots.get(e)
            rows.append({
                "expert": e, "tokens_routed": int(self.load[e]),
                "weight_here": 0.0 if s is None else float(self.weights[self.position, s]),
                "norm_here": 0.0 if s is None else float(self.contribution_norms[self.position, s]),
                "logit_here": 0.0 if s is None else float(self.logit_contributions[s]),
                "promotes": [] if s is None else self.promoted[s],
            })
        return pd.DataFrame(rows)

    def figure(self) -> Any:
        """Routing weights per token and expert, the load per expert, and the followed token's experts."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        n_pos, top_k = self.experts.shape
        grid = torch.zeros(n_pos, self.n_experts).scatter_(1, self.experts.long(), self.weights.float())
        rows = [f"{p}: {t!r}" for p, t in enumerate(self.tokens)]
        names = [f"E{e}" for e in range(self.n_experts)]
        fig = make_subplots(rows=1, cols=3, column_widths=[0.5, 0.25, 0.25], horizontal_spacing=0.08, subplot_titles=(
            "routing weight (blank: not chosen)", "load: tokens per expert",
            f"experts at {self.position} ({self.token!r})"))
        fig.add_trace(go.Heatmap(
            z=[[w or None for w in row] for row in grid.tolist()], x=names, y=rows, colorscale="Blues", zmin=0, zmax=1,
            text=[[f"{w:.2f}" if w else "" for w in row] for row in grid.tolist()], texttemplate="%{text}",
            showscale=False,  # each cell prints its weight; a colour bar would crowd the load panel
            hovertemplate="token %{y}<br>expert %{x}<br>weight %{z:.3f}<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Bar(x=names, y=self.load.tolist(), marker_color="#636efa", showlegend=False,
                             hovertemplate="expert %{x}: %{y} tokens<extra></extra>"), row=1, col=2)
        chosen = self.experts[self.position].tolist()
        fig.add_trace(go.Bar(
            x=[f"E{e}" for e in chosen], y=self.contribution_norms[self.position].tolist(), showlegend=False,
            marker_color="#ef553b", text=[repr(p[0]) if p else "" for p in self.promoted], textposition="outside",
            hovertext=[f"weight {w:.3f}; logit of {self.predicted!r} {c:+.3f}; promotes "
                       + ", ".join(repr(t) for t in p)
                       for w, c, p in zip(self.weights[self.position].tolist(), self.logit_contributions.tolist(),
                                          self.promoted, strict=True)]), row=1, col=3)
        fig.update_yaxes(autorange="reversed", row=1, col=1)
        fig.update_yaxes(title_text="tokens", row=1, col=2)
        fig.update_yaxes(title_text="||weight × expert output||", row=1, col=3)
        fig.update_layout(title=f"Layer {self.layer} mixture of experts: top-{top_k} of {self.n_experts} experts "
                                "per token", height=max(360, 120 + 24 * n_pos))
        return fig


@holds_model
def expert_routing(
    model: Any,
    prompt: Prompts | None = None,
    layer: int = 0,
    position: int = -1,
    n_tokens: int = 5,
    *,
    cap: Capture | None = None,
) -> ExpertRouting:
    """The router's top-k experts and weights for every token at ``layer``, the load per expert, and what the
    experts chosen at ``position`` write.

    Raises:
        ValueError: a dense layer (the message names the architecture), position out of range, ``n_tokens``
            below 1.

    Examples:
        >>> expert_routing(model, "The Eiffel Tower is in the city of", layer=1).experts_frame()  # doctest: +SKIP
    """
    check_moe_layer(model, layer)
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 1:
        raise ValueError(f"n_tokens={n_tokens!r}; it must be an integer >= 1")
    cap = ensure_capture(model, prompt, cap, expert_names(layer))
    position = check_position(position, cap.tokens.shape[1])
    chosen = cap.expert_indices(layer)[0]
    weights = cap.expert_weights(layer)[0].float().gather(-1, chosen.long())
    writes = weights[..., None] * expert_outputs(model, layer, cap)[0].float()
    predicted = int(cap.logits[0, position].argmax())
    direct = writes[position] @ unembed(model).to(writes.device)
    promoted = direct.topk(min(n_tokens, direct.shape[-1]), dim=-1).indices.cpu()
    n_experts = cap.router_logits(layer).shape[-1]
    return ExpertRouting(
        layer=layer, position=position, tokens=prompt_str_tokens(cap), n_experts=n_experts,
        router_probs=cap.router_logits(layer)[0].float().softmax(-1).cpu(), experts=chosen.cpu(),
        weights=weights.cpu(), contribution_norms=writes.norm(dim=-1).cpu(),
        unrouted_norms=(cap.mlp_out(layer)[0].float() - writes.sum(1)).norm(dim=-1).cpu(),
        load=torch.bincount(chosen.flatten().long().cpu(), minlength=n_experts),
        predicted=token_text(model.tokenizer, [predicted])[0], logit_contributions=direct[:, predicted].cpu(),
        promoted=[token_text(model.tokenizer, row) for row in promoted],
    )
