"""Logit lens: decode the residual stream after every layer through the model's own final norm and unembedding.

Lens layer ``0`` is the embedding (the input of block 0), lens layer ``l + 1`` the output of block ``l``;
the last lens layer is the model's final residual stream, so its decoding *is* the model's output
(tests assert this identity on LayerNorm and RMSNorm models). The final norm is the model's own module
(``model.ln_final``: LayerNorm or RMSNorm, with its gain and bias), applied unless
``apply_final_norm=False``; :attr:`LensResult.final_norm_applied` records which.

Memory: full log-probabilities ``[layer batch pos vocab]`` are kept only while they fit
``max_elements``; beyond that only the residual stream is kept and every query (top tokens, ranks,
probabilities, KL) decodes one layer at a time, so memory stays bounded for large vocabularies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int

from interp.core.capturing import capture
from interp.core.hooks import hook_name, layer_names
from interp.core.locking import holds_model
from interp.core.model_info import model_info
from interp.core.tokens import Prompts, to_single_token
from interp.lens.plots import lens_figure, lens_heatmap, target_figure

MAX_ELEMENTS = 2**26
"""Default budget for materialised log-probabilities (``layer * batch * pos * vocab`` floats, 256 MiB)."""

Target = str | int | Sequence[str | int] | None


@dataclass
class LensResult:
    """What each layer predicts, decoded by a (logit or tuned) lens.

    Examples:
        >>> lens = logit_lens(model, "The Eiffel Tower is located in the city of", target=" Paris")  # doctest: +SKIP
        >>> lens.prob()[:, 0, -1]  # target probability at the last position, per layer  # doctest: +SKIP
        >>> lens.kl_to_final()  # doctest: +SKIP
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
    """Materialised log-probabilities when they fit the memory budget."""
    model_name: str = ""
    """The model's name (``model_info(model).name``); figures show its display name, never a path."""

    @property
    def logprobs(self) -> Float[torch.Tensor, "layer batch pos vocab"]:
        """Full log-probabilities at every lens layer.

        Raises:
            ValueError: they exceed the memory budget (use :meth:`top_tokens`, :meth:`rank`,
                :meth:`prob`, :meth:`kl_to_final`, which decode one layer at a time).
        """
        if self.logprobs_cache is None:
            raise ValueError("log-probabilities were not materialised (layer * batch * pos * vocab exceeds the "
                             "memory budget); use top_tokens/rank/prob/kl_to_final, or raise max_elements")
        return self.logprobs_cache

    def layer_logprobs(self) -> Iterator[Float[torch.Tensor, "batch pos vocab"]]:
        """Log-probabilities one lens layer at a time (decoded on the fly when not materialised)."""
        for layer in range(self.resid.shape[0]):
            if self.logprobs_cache is not None:
                yield self.logprobs_cache[layer]
            else:
                with torch.no_grad():
                    yield self.decode(self.resid[layer]).float().log_softmax(-1)

    def top_tokens(self, k: int = 5, pos: int = -1, batch: int = 0) -> list[list[tuple[str, float]]]:
        """The ``k`` most likely tokens and their probabilities at one position, per lens layer."""
        col = self._column(pos)
        out = []
        for logprobs in self.layer_logprobs():
            best = logprobs[batch, col].topk(k)
            out.append([(self.tokenizer.decode([int(i)]), float(v.exp())) for v, i in zip(best.values, best.indices)])
        return out

    def top1(self) -> tuple[Int[torch.Tensor, "layer batch pos"], Float[torch.Tensor, "layer batch pos"]]:
        """Top token id and its probability at every lens layer and kept position."""
        best = [lp.max(-1) for lp in self.layer_logprobs()]
        return torch.stack([b.indices for b in best]), torch.stack([b.values.exp() for b in best])

    def prob(self, target: Target = None) -> Float[torch.Tensor, "layer batch pos"]:
        """Probability of the target token per lens layer (``target`` defaults to the one given)."""
        ids = self._target_ids(target)
        return torch.stack([lp.gather(-1, ids[:, None, None].expand(-1, lp.shape[1], 1)).squeeze(-1).exp()
                            for lp in self.layer_logprobs()])

    def rank(self, target: Target = None) -> Int[torch.Tensor, "layer batch pos"]:
        """Rank of the target token per lens layer (0 = top prediction)."""
        ids = self._target_ids(target)
        ranks = []
        for lp in self.layer_logprobs():
            own = lp.gather(-1, ids[:, None, None].expand(-1, lp.shape[1], 1))
            ranks.append((lp > own).sum(-1))
        return torch.stack(ranks)

    def first_top1_layer(self, target: Target = None, pos: int = -1) -> list[int | None]:
        """Per prompt, the first lens layer from which the target is top-1 at every later layer (``None``: never)."""
        top = self.rank(target)[:, :, self._column(pos)] == 0  # [layer batch]
        stays = top.flip(0).cumprod(0).flip(0).bool()
        return [int(s.nonzero()[0]) if s.any() else None for s in stays.T]

    def kl_to_final(self, reduce: bool = True) -> Float[torch.Tensor, " layer"] | Float[torch.Tensor, "layer batch pos"]:
        """KL(final distribution || lens distribution) in nats, per lens layer (mean over kept positions)."""
        layers = list(self.layer_logprobs())
        final = layers[-1]
        kl = torch.stack([(final.exp() * (final - lp)).sum(-1) for lp in layers])
        return kl.mean((1, 2)) if reduce else kl

    def to_frame(self, batch: int = 0) -> Any:
        """One row per (lens layer, position) of one prompt: top token and probability, KL, target prob/rank."""
        import pandas as pd

        top, p_top = self.top1()
        kl = self.kl_to_final(reduce=False)
        rows = []
        prob = self.prob() if self.target is not None else None
        rank = self.rank() if self.target is not None else None
        for layer, name in enumerate(self.layer_names):
            for col in range(self.tokens.shape[1]):
                row = {"layer": name, "position": int(self.positions[batch, col]), "token": self.str_tokens[batch][col],
                       "top_token": self.tokenizer.decode([int(top[layer, batch, col])]),
                       "top_prob": float(p_top[layer, batch, col]), "kl_to_final": float(kl[layer, batch, col])}
                if prob is not None:
                    row |= {"target_prob": float(prob[layer, batch, col]), "target_rank": int(rank[layer, batch, col])}
                rows.append(row)
        return pd.DataFrame(rows)

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

    def _column(self, pos: int) -> int:
        n = self.tokens.shape[1]
        if isinstance(pos, bool) or not isinstance(pos, int) or not -n <= pos < n:
            raise ValueError(f"pos={pos!r}; the lens kept {n} positions, valid indices are {-n}..{n - 1}")
        return pos % n

    def _target_ids(self, target: Target) -> Int[torch.Tensor, " batch"]:
        if target is None:
            if self.target is None:
                raise ValueError("no target: pass target= here or to the lens")
            return self.target
        return target_ids(self.tokenizer, target, self.tokens.shape[0], self.resid.device)


@holds_model
def logit_lens(
    model: Any,
    prompt: Prompts,
    *,
    target: Target = None,
    positions: Sequence[int] | int | None = None,
    apply_final_norm: bool = True,
    max_elements: int = MAX_ELEMENTS,
) -> LensResult:
    """Decode the residual stream after the embeddings and after every block with the model's unembedding.

    Args:
        model: A ``TransformerBridge``.
        prompt: A string, a list of strings (right-padded batch) or a token tensor.
        target: Token to follow across layers: a string that is exactly one token (``" Paris"``), an
            id, or one per prompt. A string of several tokens is an error (the message lists its
            pieces): silently taking its first token would report the probability of something else.
        positions: Positions to keep (ints, negative counts back from each prompt's last real token);
            default all. With a padded batch and the default, column ``-1`` is the last *column*, so
            pass ``positions=[-1]`` to follow each prompt's own last token.
        apply_final_norm: Apply the model's final norm before the unembedding (the standard logit lens).
        max_elements: Keep full log-probabilities only up to this many floats (memory bound).

    Returns:
        A :class:`LensResult` with ``n_layers + 1`` lens layers.

    Raises:
        ValueError: bad prompts, a target that is not one token, positions out of range.

    Examples:
        >>> lens = logit_lens(model, "The Eiffel Tower is located in the city of", target=" Paris")  # doctest: +SKIP
        >>> lens.rank()[:, 0, -1]  # doctest: +SKIP
    """
    return run_lens(model, prompt, None, target=target, positions=positions, apply_final_norm=apply_final_norm,
                    max_elements=max_elements)


def run_lens(
    model: Any,
    prompt: Prompts,
    translate: Callable[[torch.Tensor], torch.Tensor] | None,
    *,
    target: Target = None,
    positions: Sequence[int] | int | None = None,
    apply_final_norm: bool = True,
    max_elements: int = MAX_ELEMENTS,
) -> LensResult:
    """Shared body of the logit and tuned lens: ``translate`` maps ``[layer ... d_model]`` residuals."""
    info = model_info(model)
    names = [hook_name("resid_pre", 0), *layer_names("resid_post", range(info.n_layers))]
    cap = capture(model, prompt, names=names)
    ids = None if target is None else target_ids(model.tokenizer, target, cap.tokens.shape[0], cap.tokens.device)
    cols = resolve_positions(positions, cap.attention_mask)
    resid = torch.stack([cap[name] for name in names])  # [layer batch pos d_model]
    gather = cols[None, :, :, None].expand(resid.shape[0], -1, -1, resid.shape[-1])
    resid = resid.gather(2, gather)
    with torch.no_grad():
        if translate is not None:
            resid = translate(resid)

    def decode(x: torch.Tensor) -> torch.Tensor:
        return model.unembed(model.ln_final(x) if apply_final_norm else x)

    logprobs = None
    if resid.shape[:-1].numel() * info.d_vocab <= max_elements:
        with torch.no_grad():
            logprobs = decode(resid).float()
            logprobs -= logprobs.logsumexp(-1, keepdim=True)  # in place: one [layer batch pos vocab] buffer
    tokens = cap.tokens.gather(1, cols)
    str_tok = [[model.tokenizer.decode([t]) for t in row] for row in tokens.tolist()]
    return LensResult(
        resid=resid, decode=decode, tokens=tokens, positions=cols, str_tokens=str_tok, target=ids,
        layer_names=["embed", *map(str, range(info.n_layers))], final_norm_applied=apply_final_norm,
        lens="tuned" if translate is not None else "logit", tokenizer=model.tokenizer, logprobs_cache=logprobs,
        model_name=info.name,
    )


def resolve_positions(positions: Sequence[int] | int | None, mask: torch.Tensor) -> Int[torch.Tensor, "batch pos"]:
    """Absolute position per prompt of each requested position (negatives count from each last real token).

    Raises:
        ValueError: a position outside some prompt (the message names the position and the valid range).
    """
    lengths = mask.sum(-1)
    if positions is None:
        # A padded batch keeps every column; padded ones decode padding and are the caller's to skip.
        return torch.arange(mask.shape[1], device=mask.device).expand(mask.shape[0], -1)
    requested = [positions] if isinstance(positions, int) else list(positions)
    if not requested or any(isinstance(p, bool) or not isinstance(p, int) for p in requested):
        raise ValueError(f"positions={positions!r}; pass an int or a non-empty list of ints")
    shortest = int(lengths.min())
    for p in requested:
        if not -shortest <= p < shortest:
            raise ValueError(f"position {p} is out of range: the shortest prompt has {shortest} tokens, "
                             f"valid positions are {-shortest}..{shortest - 1}")
    req = torch.tensor(requested, device=mask.device)
    return torch.where(req < 0, lengths[:, None] + req, req.expand(mask.shape[0], -1))


def target_ids(tokenizer: Any, target: Target, batch: int, device: Any) -> Int[torch.Tensor, " batch"]:
    """One token id per prompt from a string, an id, or a list of them (one per prompt).

    Raises:
        ValueError: a string that is not exactly one token, an id outside the vocabulary, or a list whose
            length is not the batch size.
    """
    items = list(target) if isinstance(target, Sequence) and not isinstance(target, str) else [target] * batch
    if len(items) != batch:
        raise ValueError(f"got {len(items)} targets for {batch} prompts; pass one target or one per prompt")
    vocab = len(tokenizer)
    ids = []
    for item in items:
        if isinstance(item, str):
            ids.append(to_single_token(_HasTokenizer(tokenizer), item))
        elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item < vocab:
            ids.append(item)
        else:
            raise ValueError(f"target={item!r}; a target is a one-token string or a token id in 0..{vocab - 1}")
    return torch.tensor(ids, dtype=torch.long, device=device)


@dataclass
class _HasTokenizer:
    tokenizer: Any
