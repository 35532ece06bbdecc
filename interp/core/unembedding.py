"""The unembedding as the residual stream sees it: through the final norm's linear part, centred.

``diag(gain) @ W_U``, with the residual centred first for LayerNorm (each column centred over ``d_model``), and
each row centred over the whole vocabulary (softmax ignores a shift shared by all logits). Used by the induction
report's copying score (a few columns) and by the activation store's readout (all of them).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int

from interp.core.model_info import model_info

SLICE_FLOATS = 2**23
"""Entries of ``W_U`` converted to float64 at once while the row means are summed (64 MiB)."""


def centred_unembed(model: Any, columns: Int[torch.Tensor, " n"] | None = None) -> Float[torch.Tensor, "d_model n"]:
    """Columns ``columns`` (default: every token) of the centred unembedding, in float64 on ``W_U``'s device.

    Only the requested columns are built: a float64 copy of the whole ``[d_model, vocab]`` matrix is 2.1 GB on a
    Llama-3-shaped model (128k tokens). Centring is linear, so the row means it subtracts come from the row means of
    ``W_U`` alone, summed in float64 over slices of the vocabulary.
    """
    info = model_info(model)
    w_u = model.W_U.detach()  # [d_model vocab]
    gain = getattr(getattr(model.ln_final, "original_component", None), "weight", None)
    gain = torch.ones(info.d_model, dtype=torch.float64, device=w_u.device) if gain is None else gain.detach().double()
    step = max(1, SLICE_FLOATS // info.d_model)
    row_mean = gain * sum(part.double().sum(1) for part in w_u.split(step, dim=1)) / w_u.shape[1]  # [d_model]
    # A copy either way (in-place work follows): ``.double()`` of a float64 W_U would be W_U itself.
    u = w_u.to(torch.float64, copy=True) if columns is None else w_u[:, columns.to(w_u.device)].double()
    u.mul_(gain[:, None].to(u.device))
    if info.norm == "layernorm":
        u -= u.mean(0, keepdim=True)  # each column's own centring over d_model
        row_mean = row_mean - row_mean.mean()  # the row means of the column-centred matrix
    return u.sub_(row_mean[:, None].to(u.device))
