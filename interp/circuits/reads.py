"""How heads read and write the residual stream, as explicit linear algebra on the model's own weights.

The bridge computes a layer's queries, keys and values from ONE normalized residual stream, so it has no
per-head input to take a gradient at or to patch. The public EAP-IG code gets one by running TransformerLens
with split q/k/v inputs (``use_split_qkv_input``): each head's input is a separate copy of the residual stream,
normalized on its own. This module does the same thing without copying the model's residual stream:

- a head's query input ``x`` enters only through ``norm(x) @ W_Q[h] + b_Q[h]``, so the gradient with respect to
  that input is ``J_norm(x)^T (W_Q[h] @ dmetric/dq[h])``: the gradient at ``hook_q`` pulled back through the
  head's weights and through the exact Jacobian of the layer's LayerNorm/RMSNorm at ``x`` (:func:`norm_vjp`).
  This is the gradient the split-input model gives, not an approximation (LayerNorm's scale is NOT frozen);
  the tests check that the per-head pieces add up to the attention branch's gradient at ``resid_pre``.
- patching one head's input to ``x + delta`` is ``norm(x + delta) @ W_Q[h] + b_Q[h]`` written into ``hook_q``
  for that head (:meth:`Reads.project`); keys and values likewise, per key/value head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from interp.core.model_info import ModelInfo, model_info

NORMS = ("layernorm", "rmsnorm")
"""Norms whose Jacobian :func:`norm_vjp` knows."""


@dataclass(frozen=True)
class Norm:
    """One LayerNorm or RMSNorm: ``kind`` (one of :data:`NORMS`), ``weight``, ``bias`` (None for RMSNorm), ``eps``."""

    kind: str
    weight: Float[torch.Tensor, " d_model"]
    bias: Float[torch.Tensor, " d_model"] | None
    eps: float

    def standardize(
        self, x: Float[torch.Tensor, "*batch d_model"]
    ) -> tuple[Float[torch.Tensor, "*batch d_model"], Float[torch.Tensor, "*batch 1"]]:
        """``(xhat, scale)``: the norm's output before its weight and bias is ``xhat = (x - mean) / scale``."""
        if self.kind == "layernorm":
            x = x - x.mean(-1, keepdim=True)
        scale = (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()
        return x / scale, scale

    def __call__(self, x: Float[torch.Tensor, "*batch d_model"]) -> Float[torch.Tensor, "*batch d_model"]:
        """The norm's output, as the model computes it."""
        out = self.standardize(x)[0] * self.weight
        return out if self.bias is None else out + self.bias

    def vjp(
        self, x: Float[torch.Tensor, "*batch d_model"], grad: Float[torch.Tensor, "*batch n d_model"]
    ) -> Float[torch.Tensor, "*batch n d_model"]:
        """``J(x)^T grad`` for ``n`` output gradients at each point ``x`` (the norm's exact backward pass)."""
        xhat, scale = self.standardize(x)
        xhat, scale = xhat.unsqueeze(-2), scale.unsqueeze(-2)
        u = grad * self.weight
        out = u - xhat * (u * xhat).mean(-1, keepdim=True)
        if self.kind == "layernorm":
            out = out - u.mean(-1, keepdim=True)
        return out / scale


@dataclass(frozen=True)
class Reads:
    """A model's attention weights and pre-attention norms, detached, one entry per layer.

    ``W_Q [layer head d_model d_head]``; ``W_K``, ``W_V`` have ``n_kv_heads`` heads; ``b_*`` are zeros on
    bias-free models; ``W_O [layer head d_head d_model]``; ``norms[L]`` is block ``L``'s ``ln1``.
    """

    info: ModelInfo
    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor
    b_Q: torch.Tensor
    b_K: torch.Tensor
    b_V: torch.Tensor
    W_O: torch.Tensor
    norms: list[Norm]

    @classmethod
    def of(cls, model: Any) -> Reads:
        """Read the weights of ``model``.

        Raises:
            ValueError: the model's norm is neither LayerNorm nor RMSNorm.
        """
        info = model_info(model)
        if info.norm not in NORMS:
            raise ValueError(f"norm={info.norm!r}; circuits support {', '.join(NORMS)}")
        blocks = [model.blocks[layer] for layer in range(info.n_layers)]

        def stack(name: str) -> torch.Tensor:
            return torch.stack([getattr(b.attn, name).detach() for b in blocks])

        def bias(name: str, heads: int) -> torch.Tensor:
            found = [getattr(b.attn, name) for b in blocks]
            if any(t is None for t in found):
                return torch.zeros(info.n_layers, heads, info.d_head, device=blocks[0].attn.W_Q.device)
            return torch.stack([t.detach() for t in found])

        norms = []
        for block in blocks:
            ln_bias = getattr(block.ln1, "bias", None)
            norms.append(Norm(info.norm, block.ln1.weight.detach(), None if ln_bias is None else ln_bias.detach(),
                              float(model.cfg.eps)))
        kv = info.n_kv_heads
        return cls(info, stack("W_Q"), stack("W_K"), stack("W_V"), bias("b_Q", info.n_heads),
                   bias("b_K", kv), bias("b_V", kv), stack("W_O"), norms)

    def weight(self, which: str) -> torch.Tensor:
        """``W_Q``, ``W_K`` or ``W_V`` by the letter ``"q"``, ``"k"`` or ``"v"``."""
        return {"q": self.W_Q, "k": self.W_K, "v": self.W_V}[which]

    def project(
        self, which: str, layer: int, x: Float[torch.Tensor, "batch pos n d_model"]
    ) -> Float[torch.Tensor, "batch pos n d_head"]:
        """Head ``n``'s ``which`` vector (q, k or v, before rotary) computed from its own input ``x[..., n, :]``."""
        bias = {"q": self.b_Q, "k": self.b_K, "v": self.b_V}[which][layer]
        return torch.einsum("bpnd,nde->bpne", self.norms[layer](x), self.weight(which)[layer]) + bias

    def input_grad(
        self, which: str, layer: int, x: Float[torch.Tensor, "batch pos d_model"],
        grad: Float[torch.Tensor, "batch pos n d_head"],
    ) -> Float[torch.Tensor, "batch pos n d_model"]:
        """Gradient with respect to each head's own (pre-norm) ``which`` input, from the gradient at
        ``hook_{which}``."""
        pulled = torch.einsum("bpne,nde->bpnd", grad, self.weight(which)[layer])
        return self.norms[layer].vjp(x, pulled)

    def folded(self) -> tuple[Float[torch.Tensor, "layer n d_head d_model"], Float[torch.Tensor, "layer n d_head"]]:
        """Each layer's q, k and v heads (``n = n_heads + 2 n_kv_heads``, in that order) as maps of ``xhat``.

        ``hook_{q,k,v}[h] = fold[h] @ xhat + offset[h]``, with ``xhat`` from :meth:`Norm.standardize`: the norm's
        weight folded into the head's weights, its bias into the offset. For LayerNorm ``fold`` is also centered
        over ``d_model``, which changes nothing on ``xhat`` (whose mean is zero) but makes ``g @ fold`` the pulled-
        back gradient with the norm's mean subtraction done. So the norm's backward pass (:meth:`Norm.vjp`) of a
        gradient ``g`` at ``hook_q[h]`` is ``(g @ fold[h] - xhat (g . (q[h] - offset[h])) / d_model) / scale``:
        the Jacobian's ``xhat`` term reads the head's own activation, and no ``d_model``-sized vector is needed
        per head until ``g`` has been summed (see :mod:`interp.circuits.attribution`).
        """
        folds, offsets = [], []
        for layer, norm in enumerate(self.norms):
            weights = torch.cat([self.W_Q[layer], self.W_K[layer], self.W_V[layer]])  # [n d_model d_head]
            bias = torch.cat([self.b_Q[layer], self.b_K[layer], self.b_V[layer]])
            fold = (weights * norm.weight[:, None]).transpose(1, 2)
            if norm.kind == "layernorm":
                fold = fold - fold.mean(-1, keepdim=True)
            if norm.bias is not None:
                bias = bias + torch.einsum("d,nde->ne", norm.bias, weights)
            folds.append(fold.float().contiguous())
            offsets.append(bias.float())
        return torch.stack(folds), torch.stack(offsets)

    def head_outputs(
        self, layer: int, z: Float[torch.Tensor, "batch pos head d_head"]
    ) -> Float[torch.Tensor, "batch pos head d_model"]:
        """Each head's write to the residual stream, ``z[h] @ W_O[h]`` (the shared output bias left out)."""
        return torch.einsum("bphe,hed->bphd", z, self.W_O[layer])
