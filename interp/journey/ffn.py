"""Stage 6, feed-forward: the neurons that fire hardest on a token, and what each writes toward.

A neuron's write into the residual stream is its activation times its row of ``W_out``. Neurons are
ranked by the size of that write, ``|activation| * ||W_out[n]||``. What a neuron "promotes" is read
directly through the unembedding, ``activation * W_out[n] @ W_U`` (the logit lens on one neuron, as in
Geva et al. 2022); it ignores the final norm and everything later layers do with the write.

On a mixture-of-experts block there is no single MLP: :func:`feed_forward` (what :func:`interp.journey.run`
calls) gives :func:`interp.journey.expert_routing` there and :func:`top_neurons` everywhere else.
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
from interp.journey.experts import ExpertRouting, expert_names, expert_routing


@dataclass
class TopNeurons:
    """The strongest neurons of one layer at one position, with the tokens each promotes."""

    layer: int
    """Layer index."""
    position: int
    """Position read."""
    token: str
    """The token at that position."""
    neurons: Int[torch.Tensor, " k"]
    """Neuron indices, strongest write first."""
    activations: Float[torch.Tensor, " k"]
    """Their activations (``mlp.hook_post``)."""
    write_norms: Float[torch.Tensor, " k"]
    """``|activation| * ||W_out[n]||``, the ranking key."""
    promoted_ids: Int[torch.Tensor, "k n_tokens"]
    """Top tokens of ``activation * W_out[n] @ W_U`` per neuron."""
    promoted_logits: Float[torch.Tensor, "k n_tokens"]
    """Their direct logit contributions."""
    promoted: list[list[str]]
    """:attr:`promoted_ids` as text."""

    def to_frame(self) -> Any:
        """One row per neuron."""
        import pandas as pd

        return pd.DataFrame({"neuron": self.neurons.tolist(), "activation": self.activations.tolist(),
                             "write_norm": self.write_norms.tolist(), "promotes": self.promoted})

    def figure(self) -> Any:
        """Bars of each top neuron's activation; hover shows the tokens it promotes."""
        import plotly.graph_objects as go

        fig = go.Figure(go.Bar(
            x=[f"n{n}" for n in self.neurons.tolist()], y=self.activations.tolist(),
            hovertext=[", ".join(repr(t) for t in toks) for toks in self.promoted],
            text=[repr(toks[0]) if toks else "" for toks in self.promoted], textposition="outside"))
        fig.update_layout(title=f"Layer {self.layer} MLP at position {self.position} ({self.token!r}): top neurons",
                          xaxis_title="neuron (label: top promoted token)", yaxis_title="activation")
        return fig


@holds_model
def top_neurons(
    model: Any,
    prompt: Prompts | None = None,
    layer: int = 0,
    position: int = -1,
    k: int = 10,
    n_tokens: int = 5,
    *,
    cap: Capture | None = None,
) -> TopNeurons:
    """The ``k`` neurons of ``layer`` writing most into the residual stream at ``position``.

    Raises:
        ValueError: layer or position out of range, ``k`` or ``n_tokens`` below 1, or a mixture-of-experts
            layer (use :func:`interp.journey.expert_routing`).

    Examples:
        >>> top_neurons(model, "The Eiffel Tower is in the city of", layer=2).to_frame()  # doctest: +SKIP
    """
    info = model_info(model)
    check_layer(info, layer)
    if layer in moe_layers(model):
        raise ValueError(f"layer={layer} of {info.arch} is a mixture of experts, not one MLP with neurons; "
                         "use interp.journey.expert_routing")
    for name, value in (("k", k), ("n_tokens", n_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}; it must be an integer >= 1")
    cap = ensure_capture(model, prompt, cap, [hook_name("neurons", layer)])
    position = check_position(position, cap.tokens.shape[1])
    acts = cap.neurons(layer)[0, position].float()
    w_out = model.W_out[layer].detach().float().to(acts.device)
    strength = acts.abs() * w_out.norm(dim=-1)
    top = strength.topk(min(k, strength.shape[0])).indices
    direct = (acts[top, None] * w_out[top]) @ unembed(model).to(acts.device)
    promoted = direct.topk(min(n_tokens, direct.shape[-1]), dim=-1)
    return TopNeurons(
        layer=layer, position=position, token=prompt_str_tokens(cap)[position],
        neurons=top.cpu(), activations=acts[top].cpu(), write_norms=strength[top].cpu(),
        promoted_ids=promoted.indices.cpu(), promoted_logits=promoted.values.cpu(),
        promoted=[token_text(model.tokenizer, row) for row in promoted.indices.cpu()],
    )


def ffn_names(model: Any, layer: int) -> list[str]:
    """Hook names :func:`feed_forward` needs at ``layer``."""
    return expert_names(layer) if layer in moe_layers(model) else [hook_name("neurons", layer)]


@holds_model
def feed_forward(
    model: Any,
    prompt: Prompts | None = None,
    layer: int = 0,
    position: int = -1,
    k: int = 10,
    n_tokens: int = 5,
    *,
    cap: Capture | None = None,
) -> TopNeurons | ExpertRouting:
    """The feed-forward stage at ``layer``: :func:`interp.journey.expert_routing` on a mixture-of-experts block,
    else :func:`top_neurons` (``k`` neurons).

    Raises:
        ValueError: as :func:`top_neurons` and :func:`interp.journey.expert_routing` do.
    """
    check_layer(model_info(model), layer)
    if layer in moe_layers(model):
        return expert_routing(model, prompt, layer=layer, position=position, n_tokens=n_tokens, cap=cap)
    return top_neurons(model, prompt, layer=layer, position=position, k=k, n_tokens=n_tokens, cap=cap)
