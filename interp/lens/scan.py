"""What a lens keeps: per layer and position, the top tokens, the target's log-probability and rank, and KL to
the final layer, computed a slice of positions at a time so the full ``[layer batch pos vocab]`` never exists.

For each slice of (prompt, position) rows the final layer is decoded once; then each lens layer is decoded
(one unembedding and one log-softmax, ``[rows vocab]``), reduced to the kept numbers, and dropped. Peak memory
is a few ``[rows vocab]`` float buffers: ``chunk_size`` rows, by default sized so one buffer is
:data:`CHUNK_ELEMENTS` floats (32 MiB), whatever the prompt length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

CHUNK_ELEMENTS = 2**23
"""Floats in one ``[rows vocab]`` buffer of the default slice (32 MiB)."""
TOP_K = 10
"""Top tokens kept per layer and position by default."""


@dataclass
class LensSummary:
    """The numbers a lens keeps per lens layer and kept position (everything its queries and figures need)."""

    top_ids: Int[torch.Tensor, "layer batch pos k"]
    """The ``k`` most likely token ids, most likely first."""
    top_logprobs: Float[torch.Tensor, "layer batch pos k"]
    """Their log-probabilities."""
    kl: Float[torch.Tensor, "layer batch pos"] | None
    """KL(final distribution || this layer's), in nats (``0`` at the last layer)."""
    target_logprob: Float[torch.Tensor, "layer batch pos"] | None
    """Log-probability of the target token (``None`` without a target)."""
    target_rank: Int[torch.Tensor, "layer batch pos"] | None
    """Number of tokens strictly more likely than the target (0 = top prediction)."""


def row_chunk(vocab: int, chunk_size: int | None = None) -> int:
    """Rows decoded at once: ``chunk_size`` if given, else as many as fit :data:`CHUNK_ELEMENTS` floats.

    Raises:
        ValueError: ``chunk_size`` is not a positive int.

    Examples:
        >>> row_chunk(50257), row_chunk(300, 7)
        (166, 7)
    """
    if chunk_size is None:
        return max(1, CHUNK_ELEMENTS // vocab)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r}; pass a positive number of positions (or None)")
    return chunk_size


def scan(
    resid: Float[torch.Tensor, "layer batch pos d_model"],
    decode: Callable[[torch.Tensor], torch.Tensor],
    vocab: int,
    *,
    k: int = TOP_K,
    target: Int[torch.Tensor, " batch"] | None = None,
    kl: bool = True,
    chunk_size: int | None = None,
    progress: bool = False,
    desc: str = "lens",
) -> LensSummary:
    """Decode every lens layer slice by slice and keep only the summaries.

    Args:
        resid: Residual stream per lens layer; the last one is the final layer KL is measured against.
        decode: Maps ``[1, rows, d_model]`` to logits ``[1, rows, vocab]`` (final norm + unembedding).
        vocab: Size of the vocabulary (to size the slices).
        k: Top tokens to keep (``0``: none; capped at ``vocab``).
        target: Token id per prompt whose log-probability and rank to keep.
        kl: Whether to keep KL to the final layer.
        chunk_size: Rows (prompt x position pairs) per slice; default from :func:`row_chunk`.
        progress: Show a tqdm bar (it appears only if the work lasts more than 2 seconds).
        desc: Label of the bar.

    Returns:
        A :class:`LensSummary` shaped like ``resid`` without its last axis (``k`` more for the top tokens).
    """
    n_layers, batch, pos, _ = resid.shape
    flat = resid.reshape(n_layers, batch * pos, resid.shape[-1])
    rows, k, device = flat.shape[1], min(k, vocab), resid.device
    step = row_chunk(vocab, chunk_size)
    row_target = None if target is None else target.to(device).repeat_interleave(pos)[:, None]
    top_lp = torch.empty(n_layers, rows, k, device=device)
    top_id = torch.empty(n_layers, rows, k, dtype=torch.long, device=device)
    kl_out = torch.empty(n_layers, rows, device=device) if kl else None
    t_lp = torch.empty(n_layers, rows, device=device) if target is not None else None
    t_rank = torch.empty(n_layers, rows, dtype=torch.long, device=device) if target is not None else None
    bar = tqdm(total=n_layers * -(-rows // step), desc=desc, disable=not progress, delay=2.0, leave=False)
    with torch.no_grad(), bar:
        for start in range(0, rows, step):
            part = slice(start, start + step)
            final = _logprobs(decode, flat[-1, part])
            p_final = final.exp() if kl else None
            # KL(final || layer) = sum p_f log p_f - sum p_f log p_layer: the first term once per slice, the second a
            # fused dot product per layer (no [rows vocab] temporary).
            neg_entropy = torch.linalg.vecdot(p_final, final) if kl else None
            for layer in range(n_layers):
                lp = final if layer == n_layers - 1 else _logprobs(decode, flat[layer, part])
                if k:
                    best = lp.topk(k, dim=-1)
                    top_lp[layer, part], top_id[layer, part] = best.values, best.indices
                if kl_out is not None:
                    kl_out[layer, part] = neg_entropy - torch.linalg.vecdot(p_final, lp)
                if t_lp is not None:
                    own = lp.gather(-1, row_target[part])
                    t_lp[layer, part], t_rank[layer, part] = own[:, 0], (lp > own).sum(-1, dtype=torch.int32)
                del lp
                bar.update()

    def shaped(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x.reshape(n_layers, batch, pos, *x.shape[2:])

    return LensSummary(top_ids=shaped(top_id), top_logprobs=shaped(top_lp), kl=shaped(kl_out),
                       target_logprob=shaped(t_lp), target_rank=shaped(t_rank))


def _logprobs(decode: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor) -> Float[torch.Tensor, "rows vocab"]:
    return decode(h[None])[0].float().log_softmax(-1)
