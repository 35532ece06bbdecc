"""The result of a (logit or tuned) lens: kept summaries per layer and position, full log-probs on request.

A lens keeps the residual stream at every lens layer and kept position (``[layer batch pos d_model]``, the
size of what capture keeps anyway) and the summaries of :mod:`interp.lens.scan`: top-k tokens, the target's
log-probability and rank, KL to the final layer. Every query and figure reads those. The full log-probabilities
``[layer batch pos vocab]`` are decoded only when asked for: :meth:`LensResult.full_logprobs` for a slice of
layers and positions, or :attr:`LensResult.logprobs` for everything while it fits ``max_elements``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int

from interp.lens.plots import lens_figure, lens_heatmap, target_figure
from interp.lens.scan import TOP_K, LensSummary, scan
from interp.lens.targets import Target, target_ids

MAX_ELEMENTS = 2**26
"""Budget of :attr:`LensResult.logprobs`, decoded on first access (``layer * batch * pos * vocab`` floats, 256 MiB)."""


@dataclass
class LensResult:
    """What each layer predicts, decoded by a (logit or tuned) lens.

    Examples:
        >>> lens = logit_lens(model, "The Eiffel Tower is located in the city of", target=" Paris")  # doctest: +SKIP
        >>> lens.prob()[:, 0, -1]  # target probability at the last position, per layer  # doctest: +SKIP
        >>> lens.kl_to_final()  # doctest: +SKIP
        >>> lens.full_logprobs(layers=[-1], columns=[-1])  # [1 batch 1 vocab], decoded now  # doctest: +SKIP
    """

    resid: Float[torch.Tensor, "layer batch pos d_model"]
    """Residual stream at each lens layer (after the tuned lens' translator, if any), before the final norm."""
    decode: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)
    """Maps a residual ``[..., d_model]`` to logits ``[..., vocab]`` (final norm + unembedding)."""
    tokens: Int[torch.Tensor, "batch pos"]
    """Token ids at the kept positions."""
    positions: Int[torch.Tensor, "batch pos"]
    """Position of each kept column in its prompt."""
    str_tokens: list[list[str]]
    """Tokens at the kept positions, decoded."""
    target: Int[torch.Tensor, " batch"] | None
    """Target token id per prompt, if one was given."""
    layer_names: list[str]
    """``"embed"``, then ``"0"``... one name per lens layer."""
    final_norm_applied: bool
    """Whether the model's final norm was applied before the unembedding."""
    lens: str = "logit"
    """``"logit"`` or ``"tuned"``."""
    tokenizer: Any = field(default=None, repr=False)
    """The model's tokenizer, to decode predictions."""
    logprobs_cache: torch.Tensor | None = field(default=None, repr=False)
    """Full log-probabilities, once materialised (``full=True``, or the first read of :attr:`logprobs`)."""
    model_name: str = ""
    """The model's name (``model_info(model).name``); figures show its display name, never a path."""
    summary: LensSummary | None = field(default=None, repr=False)
    """Kept top-k tokens, target log-prob and rank, KL to final (computed on first use when not given)."""
    max_elements: int = MAX_ELEMENTS
    """Largest :attr:`logprobs` (in floats) decoded on request; beyond it only slices are."""
    chunk_size: int | None = field(default=None, repr=False)
    """Positions decoded at once by queries that decode (default: sized for the vocabulary)."""

    @property
    def logprobs(self) -> Float[torch.Tensor, "layer batch pos vocab"]:
        """Full log-probabilities at every lens layer, decoded on first access and kept.

        Raises:
            ValueError: they exceed the memory budget ``max_elements`` (use :meth:`full_logprobs` for a slice,
                or :meth:`top_tokens`, :meth:`rank`, :meth:`prob`, :meth:`kl_to_final`, which read kept summaries).
        """
        if self.logprobs_cache is None:
            size = self.resid.shape[:-1].numel() * self._vocab()
            if size > self.max_elements:
                raise ValueError(f"full log-probabilities are {size} floats (layer * batch * pos * vocab), over the "
                                 f"memory budget max_elements={self.max_elements}; use full_logprobs(layers=..., "
                                 "columns=...) for a slice, top_tokens/rank/prob/kl_to_final, or raise max_elements")
            self.logprobs_cache = self.full_logprobs()
        return self.logprobs_cache

    def full_logprobs(self, layers: Sequence[int] | None = None,
                      columns: Sequence[int] | None = None) -> Float[torch.Tensor, "layer batch pos vocab"]:
        """Log-probabilities of the chosen lens layers at the chosen kept positions, decoded now.

        Args:
            layers: Lens-layer indices (``0`` = embed, ``-1`` = the output); default all.
            columns: Indices into the kept positions (negatives from the end); default all.

        Returns:
            ``[len(layers), batch, len(columns), vocab]`` float32: ask only for what you need, it is not bounded.

        Raises:
            ValueError: a layer or column index out of range.
        """
        rows = self._indices(layers, self.resid.shape[0], "layer")
        cols = self._indices(columns, self.resid.shape[2], "column")
        picked = self.resid[rows][:, :, cols]
        out = None
        with torch.no_grad():
            for i, h in enumerate(picked):  # filled layer by layer: no list of layers next to the result
                lp = _log_softmax_(self.decode(h).float())
                out = lp.new_empty(len(picked), *lp.shape) if out is None else out
                out[i] = lp
        return out

    def layer_logprobs(self) -> Iterator[Float[torch.Tensor, "batch pos vocab"]]:
        """Log-probabilities one lens layer at a time (decoded on the fly when not materialised)."""
        for layer in range(self.resid.shape[0]):
            if self.logprobs_cache is not None:
                yield self.logprobs_cache[layer]
            else:
                yield self.full_logprobs([layer])[0]

    def top_tokens(self, k: int = 5, pos: int = -1, batch: int = 0) -> list[list[tuple[str, float]]]:
        """The ``k`` most likely tokens and their probabilities at one position, per lens layer."""
        col = self._column(pos)
        kept = self.kept()
        if k <= kept.top_ids.shape[-1]:
            ids, lps = kept.top_ids[:, batch, col, :k], kept.top_logprobs[:, batch, col, :k]
        else:  # more than were kept: decode this one column at every layer
            best = self.full_logprobs(columns=[col])[:, batch, 0].topk(k)
            ids, lps = best.indices, best.values
        return [[(self.tokenizer.decode([int(i)]), float(v.exp())) for v, i in zip(lp, row, strict=True)]
                for lp, row in zip(lps, ids, strict=True)]

    def top1(self) -> tuple[Int[torch.Tensor, "layer batch pos"], Float[torch.Tensor, "layer batch pos"]]:
        """Top token id and its probability at every lens layer and kept position."""
        kept = self.kept()
        return kept.top_ids[..., 0], kept.top_logprobs[..., 0].exp()

    def prob(self, target: Target = None) -> Float[torch.Tensor, "layer batch pos"]:
        """Probability of the target token per lens layer (``target`` defaults to the one given)."""
        return self._target_summary(target).target_logprob.exp()

    def rank(self, target: Target = None) -> Int[torch.Tensor, "layer batch pos"]:
        """Rank of the target token per lens layer (0 = top prediction)."""
        return self._target_summary(target).target_rank

    def first_top1_layer(self, target: Target = None, pos: int = -1) -> list[int | None]:
        """Per prompt, the first lens layer from which the target is top-1 at every later layer (``None``: never)."""
        top = self.rank(target)[:, :, self._column(pos)] == 0  # [layer batch]
        stays = top.flip(0).cumprod(0).flip(0).bool()
        return [int(s.nonzero()[0]) if s.any() else None for s in stays.T]

    def kl_to_final(
        self, reduce: bool = True
    ) -> Float[torch.Tensor, " layer"] | Float[torch.Tensor, "layer batch pos"]:
        """KL(final distribution || lens distribution) in nats, per lens layer (mean over kept positions)."""
        kl = self.kept().kl
        return kl.mean((1, 2)) if reduce else kl

    def to_frame(self, batch: int = 0) -> Any:
        """One row per (lens layer, position) of one prompt: top token and probability, KL, target prob/rank."""
        import pandas as pd

        top, p_top = (x[:, batch].tolist() for x in self.top1())
        kl = self.kl_to_final(reduce=False)[:, batch].tolist()
        names = {i: self.tokenizer.decode([i]) for i in set(sum(top, []))}
        columns = {"layer": [], "position": [], "token": [], "top_token": [], "top_prob": [], "kl_to_final": []}
        for layer, name in enumerate(self.layer_names):
            columns["layer"] += [name] * len(top[layer])
            columns["position"] += self.positions[batch].tolist()
            columns["token"] += self.str_tokens[batch]
            columns["top_token"] += [names[i] for i in top[layer]]
            columns["top_prob"] += p_top[layer]
            columns["kl_to_final"] += kl[layer]
        if self.target is not None:
            columns["target_prob"] = self.prob()[:, batch].flatten().tolist()
            columns["target_rank"] = self.rank()[:, batch].flatten().tolist()
        return pd.DataFrame(columns)

    def figure(self, batch: int = 0, columns: Sequence[int] | None = None,
               target_columns: Sequence[int] = (-1,)) -> Any:
        """The logit-lens picture: layers x positions, the top token in each cell coloured by its probability.

        With a target, its probability and rank per layer (at ``target_columns``, default the last position)
        are drawn in panels above the map. ``columns`` picks the kept positions of the map (default all).
        """
        return lens_figure(self, batch, columns, target_columns)

    def heatmap_figure(self, batch: int = 0, columns: Sequence[int] | None = None) -> Any:
        """The layers x positions map alone (see :func:`interp.lens.plots.lens_heatmap`)."""
        return lens_heatmap(self, batch, columns)

    def target_figure(self, batch: int = 0, columns: Sequence[int] = (-1,)) -> Any:
        """The target's probability (log axis) and rank per layer at the kept positions ``columns``.

        ``columns`` defaults to the last position; see :func:`interp.lens.plots.target_figure`.

        Raises:
            ValueError: the lens was made without a target.
        """
        return target_figure(self, batch, columns)

    def kept(self) -> LensSummary:
        """The kept summaries (computed now, once, if the lens was built without them)."""
        if self.summary is None:
            self.summary = scan(self.resid, self.decode, self._vocab(), k=TOP_K, target=self.target,
                                chunk_size=self.chunk_size)
        return self.summary

    def _target_summary(self, target: Target) -> LensSummary:
        ids = self._target_ids(target)
        kept = self.kept()
        if self.target is not None and torch.equal(ids, self.target.to(ids.device)):
            return kept
        return scan(self.resid, self.decode, self._vocab(), k=0, target=ids, kl=False, chunk_size=self.chunk_size)

    def _vocab(self) -> int:
        # The unembedding's width (a tokenizer may count fewer tokens than the model has rows for).
        with torch.no_grad():
            return int(self.decode(self.resid[-1, :1, :1]).shape[-1])

    def _column(self, pos: int) -> int:
        n = self.tokens.shape[1]
        if isinstance(pos, bool) or not isinstance(pos, int) or not -n <= pos < n:
            raise ValueError(f"pos={pos!r}; the lens kept {n} positions, valid indices are {-n}..{n - 1}")
        return pos % n

    @staticmethod
    def _indices(picked: Sequence[int] | None, n: int, what: str) -> list[int]:
        if picked is None:
            return list(range(n))
        out = []
        for i in picked:
            if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
                raise ValueError(f"{what}={i!r}; the lens has {n} {what}s, valid indices are {-n}..{n - 1}")
            out.append(i % n)
        return out

    def _target_ids(self, target: Target) -> Int[torch.Tensor, " batch"]:
        if target is None:
            if self.target is None:
                raise ValueError("no target: pass target= here or to the lens")
            return self.target
        return target_ids(self.tokenizer, target, self.tokens.shape[0], self.resid.device)


def _log_softmax_(logits: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the vocabulary in place: a decoded layer needs one ``[batch pos vocab]`` buffer, not two."""
    return torch.log_softmax(logits, -1, out=logits)
