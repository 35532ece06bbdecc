"""What a lens keeps: per layer and position, the top tokens, the target's log-probability and rank, and KL to
the final layer, computed a slice of positions at a time so the full ``[layer batch pos vocab]`` never exists.

For each slice of (prompt, position) rows the final layer is decoded first; then every other lens layer is
decoded (one unembedding and one log-softmax, ``[rows vocab]``), reduced to the kept numbers, and dropped. The
log-softmax runs in place on the logits, so one ``[rows vocab]`` float buffer is alive per layer (plus a
``[rows vocab]`` byte mask while a target's rank is counted). Slices hold at most :data:`CHUNK_ELEMENTS` floats
per buffer and are balanced, so a prompt shorter than one slice is decoded whole.

KL to the final layer: when the decoding is a :class:`Readout` (a norm, then an affine unembedding
``z = n W^T + b``), the final distribution ``p_f`` is folded into the unembedding once per slice,
``g = p_f W`` (``[rows d_model]``), and then for every layer

``KL(p_f || p_l) = sum_v p_f (log p_f - log p_l) = g . (n_f - n_l) + logsumexp(z_l) - logsumexp(z_f)``

(the bias cancels): a ``d_model`` dot per layer instead of a pass over the vocabulary, and ``p_f`` is dropped
before the layers are decoded. Any other decoding keeps ``p_f`` and takes one dot over the vocabulary per layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

CHUNK_ELEMENTS = 2**23
"""Most floats in one ``[rows vocab]`` buffer of a slice (32 MiB)."""
TOP_K = 10
"""Top tokens kept per layer and position by default."""
RANK_ELEMENTS = 2**20
"""Logits compared at once when a target's rank is counted (bounds the comparison's temporaries to ~5 MiB)."""


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


@dataclass(frozen=True, eq=False)
class Readout:
    """A decoding ``h -> unembed(norm(h))`` whose unembedding is affine: ``unembed(n) = n @ weight.T + bias``.

    Calling it decodes like any ``decode`` callable; :func:`scan` also uses ``weight`` to compute KL without a
    pass over the vocabulary per layer.

    Examples:
        >>> weight = torch.randn(7, 4)
        >>> readout = Readout(torch.nn.functional.normalize, lambda n: n @ weight.T, weight)
        >>> readout(torch.randn(2, 3, 4)).shape
        torch.Size([2, 3, 7])
    """

    norm: Callable[[torch.Tensor], torch.Tensor]
    """Maps ``[..., d_model]`` residuals to the unembedding's input (the final norm, or the identity)."""
    unembed: Callable[[torch.Tensor], torch.Tensor]
    """Maps ``[..., d_model]`` to logits ``[..., vocab]``; must equal ``n @ weight.T`` plus a fixed bias."""
    weight: Float[torch.Tensor, "vocab d_model"]
    """The unembedding matrix, one row per token."""

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """Decode residuals ``[..., d_model]`` to logits ``[..., vocab]``."""
        return self.unembed(self.norm(h))


def row_chunk(vocab: int, chunk_size: int | None = None, rows: int | None = None) -> int:
    """Rows decoded at once: ``chunk_size`` if given, else at most :data:`CHUNK_ELEMENTS` floats per buffer.

    With ``rows`` (the rows to decode) the default is balanced: the fewest slices that respect the bound, all
    of (nearly) one size, so that no slice is a small remainder.

    Raises:
        ValueError: ``chunk_size`` is not a positive int.

    Examples:
        >>> row_chunk(50257), row_chunk(300, 7), row_chunk(50257, rows=512), row_chunk(50257, rows=100)
        (166, 7, 128, 100)
    """
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size!r}; pass a positive number of positions (or None)")
        return chunk_size
    most = max(1, CHUNK_ELEMENTS // vocab)
    if rows is None or rows < 1:
        return most
    slices = -(-rows // most)
    return -(-rows // slices)


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
        decode: Maps ``[1, rows, d_model]`` to logits ``[1, rows, vocab]`` (final norm + unembedding); a
            :class:`Readout` makes KL a ``d_model`` dot per layer (see the module docstring).
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
    step = row_chunk(vocab, chunk_size, rows)
    row_target = None if target is None else target.to(device).repeat_interleave(pos)[:, None]
    top_lp = torch.empty(n_layers, rows, k, device=device)
    top_id = torch.empty(n_layers, rows, k, dtype=torch.long, device=device)
    kl_out = torch.zeros(n_layers, rows, device=device) if kl else None  # the final layer's row stays exactly 0
    t_lp = torch.empty(n_layers, rows, device=device) if target is not None else None
    t_rank = torch.empty(n_layers, rows, dtype=torch.long, device=device) if target is not None else None
    readout = decode if isinstance(decode, Readout) and decode.weight.dtype in (torch.float32, torch.float64) else None
    bar = tqdm(total=n_layers * -(-rows // step), desc=desc, disable=not progress, delay=2.0, leave=False)
    with torch.no_grad(), bar:
        for start in range(0, rows, step):
            part = slice(start, start + step)
            tgt = None if row_target is None else row_target[part]
            for layer in (n_layers - 1, *range(n_layers - 1)):  # the final layer first: KL needs its distribution
                if readout is not None:
                    normed = readout.norm(flat[layer, part][None])[0]
                    logits = readout.unembed(normed[None])[0].float()
                else:
                    logits = decode(flat[layer, part][None])[0].float()
                lp, lse, ids, t_own, rank = _reduce(logits, k, tgt, want_lse=kl_out is not None and readout is not None)
                if k:
                    top_lp[layer, part], top_id[layer, part] = lp.gather(-1, ids), ids
                if tgt is not None:
                    t_lp[layer, part], t_rank[layer, part] = t_own, rank
                if kl_out is not None:
                    if layer == n_layers - 1:
                        final_lse = lse
                        if readout is not None:  # fold p_f into the unembedding; p_f itself is not kept
                            final_normed = normed
                            expected = lp.exp_() @ readout.weight.to(lp)
                        else:
                            p_final = lp.exp()
                            neg_entropy = torch.linalg.vecdot(p_final, lp)
                    elif readout is not None:
                        shift = (expected * (final_normed - normed).to(expected.dtype)).sum(-1, dtype=torch.float64)
                        kl_out[layer, part] = (shift + (lse - final_lse)).to(kl_out.dtype)
                    else:
                        kl_out[layer, part] = neg_entropy - torch.linalg.vecdot(p_final, lp)
                del lp, logits
                bar.update()

    def shaped(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x.reshape(n_layers, batch, pos, *x.shape[2:])

    return LensSummary(top_ids=shaped(top_id), top_logprobs=shaped(top_lp), kl=shaped(kl_out),
                       target_logprob=shaped(t_lp), target_rank=shaped(t_rank))


def _reduce(
    logits: Float[torch.Tensor, "rows vocab"], k: int, target: Int[torch.Tensor, "rows 1"] | None, want_lse: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Log-softmax ``logits`` in place and read off what the lens keeps.

    Returns the log-probabilities (``logits``' own storage), ``logsumexp(logits)`` in float64 (if ``want_lse``), the
    top-``k`` ids, and the target's log-probability and rank (``None`` where not asked for).
    """
    # The row maximum comes from the top-k (which needs the raw logits anyway: log-softmax is monotone).
    ids = logits.topk(max(k, 1), dim=-1).indices if k or want_lse else None
    peak = logits.gather(-1, ids[:, :1])[:, 0].double() if want_lse else None
    lp = torch.log_softmax(logits, -1, out=logits)  # in place: the logits are not needed any more
    # logsumexp = max - log p(argmax), two exact float32 values: layer differences of it stay exact.
    lse = peak - lp.gather(-1, ids[:, :1])[:, 0].double() if want_lse else None
    own = rank = None
    if target is not None:
        own = lp.gather(-1, target)
        # Counted a few rows at a time: a sum over a comparison casts it to an integer tensor as big as ``lp``.
        group = max(1, RANK_ELEMENTS // lp.shape[-1])
        rank = torch.cat([(lp[i : i + group] > own[i : i + group]).sum(-1, dtype=torch.int32)
                          for i in range(0, lp.shape[0], group)])
        own = own[:, 0]
    return lp, lse, ids[:, :k] if k else None, own, rank
