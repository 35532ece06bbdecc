"""What a lens keeps: per layer and position, the top tokens, the target's log-probability and rank, and KL to
the final layer, computed a slice of positions at a time so the full ``[layer batch pos vocab]`` never exists.

For each slice of (prompt, position) rows the final layer is decoded first; then every other lens layer is
decoded (one unembedding and one log-softmax, ``[rows vocab]``), reduced to the kept numbers, and dropped. The
log-softmax runs in place on the logits, and the target's rank is then counted in place on the spent
log-probabilities (a float comparison, then a float sum), so one ``[rows vocab]`` float buffer is alive per layer.
Slices hold at most :data:`CHUNK_ELEMENTS` floats per buffer and are balanced, so a prompt shorter than one slice
is decoded whole.

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

CHUNK_ELEMENTS = 2**26
"""Most floats in one ``[rows vocab]`` buffer of a slice (256 MiB: 512 rows of a 128256-token vocabulary).

Large because the unembedding of a slice reads (and the BLAS packs) the whole ``[vocab d_model]`` matrix whatever
the rows: on 2 CPU cores a Llama-3.2-1B-shaped unembedding cost ~40% more per row at 64 rows than at 512."""
TOP_K = 10
"""Top tokens kept per layer and position by default."""
TOP_BLOCK = 256
"""Block width of the CPU top-k (:func:`_top_ids`): a max per block, then a top-k over the best ``k`` blocks."""


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
        >>> row_chunk(128256), row_chunk(300, 7), row_chunk(128256, rows=1024), row_chunk(128256, rows=100)
        (523, 7, 512, 100)
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
    fold = kl and readout is not None  # KL folded into the unembedding (module docstring)
    bar = tqdm(total=n_layers * -(-rows // step), desc=desc, disable=not progress, delay=2.0, leave=False)
    with torch.no_grad(), bar:
        for start in range(0, rows, step):
            part = slice(start, start + step)
            tgt = None if row_target is None else row_target[part]
            for layer in (n_layers - 1, *range(n_layers - 1)):  # the final layer first: KL needs its distribution
                final = layer == n_layers - 1
                if readout is not None:
                    normed = readout.norm(flat[layer, part][None])[0]
                    logits = readout.unembed(normed[None])[0].float()
                else:
                    logits = decode(flat[layer, part][None])[0].float()
                # The row maximum comes from the top-k (which needs the raw logits anyway: log-softmax is monotone).
                ids = _top_ids(logits, max(k, 1)) if k or fold else None
                peak = logits.gather(-1, ids[:, :1])[:, 0].double() if fold else None
                lp = torch.log_softmax(logits, -1, out=logits)  # in place: the logits are not needed any more
                del logits
                if k:
                    top_lp[layer, part], top_id[layer, part] = lp.gather(-1, ids[:, :k]), ids[:, :k]
                own = None if tgt is None else lp.gather(-1, tgt)
                if tgt is not None:
                    t_lp[layer, part] = own[:, 0]
                if fold:
                    # logsumexp = max - log p(argmax), two exact float32 values: layer differences of it stay exact.
                    lse = peak - lp.gather(-1, ids[:, :1])[:, 0].double()
                    if final:  # fold p_f into the unembedding; p_f itself is not kept
                        final_lse, final_normed = lse, normed
                        if own is not None:  # counted before exp_ overwrites lp (once per slice)
                            t_rank[layer, part] = _count_above(lp, own, in_place=False)
                            own = None
                        expected = lp.exp_() @ readout.weight.to(lp)
                    else:
                        shift = (expected * (final_normed - normed).to(expected.dtype)).sum(-1, dtype=torch.float64)
                        kl_out[layer, part] = (shift + (lse - final_lse)).to(kl_out.dtype)
                elif kl_out is not None:
                    if final:
                        p_final = lp.exp()  # [rows vocab], kept for the slice
                        neg_entropy = torch.linalg.vecdot(p_final, lp)
                    else:
                        kl_out[layer, part] = neg_entropy - torch.linalg.vecdot(p_final, lp)
                if own is not None:
                    t_rank[layer, part] = _count_above(lp, own, in_place=True)  # lp is spent after this
                del lp
                bar.update()

    def shaped(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x.reshape(n_layers, batch, pos, *x.shape[2:])

    return LensSummary(top_ids=shaped(top_id), top_logprobs=shaped(top_lp), kl=shaped(kl_out),
                       target_logprob=shaped(t_lp), target_rank=shaped(t_rank))


def _top_ids(logits: Float[torch.Tensor, "rows vocab"], k: int) -> Int[torch.Tensor, "rows k"]:
    """The ``k`` largest entries' ids per row, largest first (the same values as ``topk``; ties in any order).

    On a CPU with a large vocabulary, torch's top-k is a scalar selection over every entry; instead each row is
    cut into blocks of :data:`TOP_BLOCK`, and a vectorised max per block picks the ``k`` blocks with the largest
    maxima. Every one of the ``k`` largest entries lies in one of them (an entry in another block has ``k``
    block maxima at least as large), so a top-k over those ``k`` blocks (and the ragged tail) is exact.
    """
    rows, vocab = logits.shape
    blocks = vocab // TOP_BLOCK
    if logits.device.type != "cpu" or blocks < 8 * k:
        return logits.topk(k, dim=-1).indices
    whole = blocks * TOP_BLOCK
    best = logits[:, :whole].unflatten(-1, (blocks, TOP_BLOCK)).amax(-1).topk(k, dim=-1).indices  # [rows k]
    within = torch.arange(TOP_BLOCK, device=logits.device)
    candidates = (best[:, :, None] * TOP_BLOCK + within).flatten(1)  # [rows k*TOP_BLOCK]
    if whole < vocab:
        tail = torch.arange(whole, vocab, device=logits.device).expand(rows, -1)
        candidates = torch.cat([candidates, tail], -1)
    return candidates.gather(-1, logits.gather(-1, candidates).topk(k, dim=-1).indices)


def _count_above(lp: Float[torch.Tensor, "rows vocab"], own: Float[torch.Tensor, "rows 1"],
                 in_place: bool) -> Int[torch.Tensor, " rows"]:
    """How many entries of each row are strictly greater than ``own`` (the target's rank).

    ``in_place`` writes the comparison over ``lp`` as 0/1 floats and sums them (exact below 2**24 ones): one pass,
    no temporary. Otherwise a sum over a boolean comparison, which first casts it to an int64 tensor as large as
    its input, is taken an eighth of the rows at a time: temporaries of at most a quarter of ``lp``, and few
    enough calls (small parallel regions are slow on a loaded machine: 8-row groups cost 10x the in-place count).
    """
    if in_place:
        return torch.gt(lp, own, out=lp).sum(-1).long()
    group = -(-lp.shape[0] // 8)
    return torch.cat([(lp[i : i + group] > own[i : i + group]).sum(-1) for i in range(0, lp.shape[0], group)])
