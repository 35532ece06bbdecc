"""What a stored unit writes to the logits: the matrices a store keeps for the direct logit effect.

A unit's direct logit effect is what one unit of its activation adds to each token's logit through the
unembedding, skipping every later layer: ``write @ U`` where ``write`` is the unit's direction in the residual
stream and ``U = diag(gain) @ W_U`` is the unembedding as seen through the final norm's gain (the residual
centred first for LayerNorm, each row centred over the vocabulary since softmax ignores a shared shift; the
norm's division by the residual's scale is left out, as in a logit lens on one direction).

- residual-stream sites (``resid_*``, ``attn_out``, ``mlp_out``, ``embed``, ``pos_embed``): the unit's own
  direction (neuron ``i`` is the basis vector ``e_i``);
- MLP neurons (``blocks.L.mlp.hook_post``): row ``i`` of ``W_out[L]``, a vector ``v`` writes ``v @ W_out[L]``;
- per-head attention outputs ``z``: through ``W_O[L]`` flattened over heads;
- other sites (``q``, ``k``, ``v``...) write nothing directly and have no logit effect.

The matrices are saved with the store at build time, so a reopened store answers without the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from interp.core.hooks import hook_name, site_of
from interp.core.model_info import model_info
from interp.core.unembedding import centred_unembed

RESIDUAL_SITES = frozenset({"resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "embed", "pos_embed"})
"""Sites whose activations live in the residual stream."""


def readout_kind(hook: str) -> str | None:
    """``"residual"``, ``"write"`` (through a matrix into the residual stream) or None (no direct effect)."""
    site = site_of(hook)
    if site in RESIDUAL_SITES:
        return "residual"
    if site in ("neurons", "z"):
        return "write"
    return None


def readout(model: Any, hooks: list[str]) -> dict[str, np.ndarray]:
    """``unembed`` ``[d_model vocab]`` and ``write.<j>`` ``[d_site d_model]`` for each site ``j`` that needs one."""
    info = model_info(model)
    out = {"unembed": centred_unembed(model).float().cpu().numpy()}
    for j, hook in enumerate(hooks):
        if readout_kind(hook) != "write":
            continue
        site = site_of(hook)
        layer = next(L for L in range(info.n_layers) if hook_name(site, L) == hook)
        matrix = model.W_out[layer] if site == "neurons" else model.W_O[layer].reshape(-1, info.d_model)
        out[f"write.{j}"] = matrix.detach().float().cpu().numpy()
    return out
