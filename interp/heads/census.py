"""Head census: what every attention head does, from one batched capture of the attention patterns.

Each behaviour is a set of (query, key) pairs, and a head's score for it is the attention mass it puts
there, averaged over the queries where the behaviour is possible:

==================  =====================================================================
previous_token      key = query - 1
duplicate_token     an earlier key holding the query's token
induction           a key whose *previous* token is the query's token (the token that
                    followed an earlier occurrence)
bos                 key 0 (the BOS token, often an attention sink)
self                key = query
local               keys 2..``window`` positions back (previous and self excluded; BOS excluded)
==================  =====================================================================

All scores come from one ``einsum`` of the stacked patterns ``[layer batch head q k]`` with the
behaviour masks ``[type batch q k]``: no loop over layers or heads. Causal importance is the loss
increase under ablation, one batched pass per layer (:mod:`interp.heads.ablation`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from tqdm.auto import tqdm

from interp.core.capturing import Capture, capture
from interp.core.hooks import hook_name
from interp.core.locking import holds_model
from interp.core.model_info import display_name, model_info
from interp.core.tokens import Prompts, Tokenized, bos_offset, tokenize
from interp.heads.ablation import batch_mean, check_ablation, head_ablation_losses, next_token_losses
from interp.heads.induction import check_has_patterns, repeated_random_tokens
from interp.heads.plots import head_heatmaps
from interp.heads.sizing import ABLATION_FLOPS, PASS_BYTES, PATTERN_FLOPS, budget_tokens, rows_per_pass
from interp.reference.world_text import world_tokens

TYPES = ("previous_token", "duplicate_token", "induction", "bos", "self", "local")
"""Behaviours scored by the census, in the order of ``HeadCensus.scores``' first axis."""


@dataclass
class HeadCensus:
    """Per-head behaviour scores, labels and causal importance.

    Examples:
        >>> census = head_census(model)  # doctest: +SKIP
        >>> census.labels[(0, 1)]  # doctest: +SKIP
        'previous_token'
        >>> census.score("induction").shape  # doctest: +SKIP
        torch.Size([4, 4])
    """

    scores: Float[torch.Tensor, "type layer head"]
    """Attention mass on each behaviour's keys (0..1; NaN where the prompts never allow it)."""
    importance: Float[torch.Tensor, "layer head"] | None
    """Increase of the mean next-token loss (nats) when the head is ablated; ``None`` if not measured."""
    labels: dict[tuple[int, int], str]
    """``(layer, head)`` -> behaviours scoring at least ``threshold``, best first, joined by ``+``;
    ``"other"`` when none does."""
    threshold: float
    """Score a behaviour needs to appear in a label."""
    clean_loss: float | None
    """Mean next-token loss of the unablated model on the prompts (nats); ``None`` if importance was not measured."""
    model_name: str = ""
    """What the model was loaded from."""
    types: tuple[str, ...] = TYPES
    """Names of the score rows."""

    def score(self, kind: str) -> Float[torch.Tensor, "layer head"]:
        """The ``[layer head]`` scores of one behaviour (one of :data:`TYPES`)."""
        if kind not in self.types:
            raise ValueError(f"kind={kind!r}; census behaviours are {', '.join(self.types)}")
        return self.scores[self.types.index(kind)]

    def to_frame(self) -> Any:
        """One row per head: ``layer``, ``head``, ``label``, one column per behaviour, ``importance``."""
        import pandas as pd

        return pd.DataFrame(self._rows())

    def to_json(self) -> dict[str, Any]:
        """``{"heads": [{"layer", "head", "label", <behaviour>: score, ..., "importance"}, ...]}``."""
        return {"model": self.model_name, "threshold": self.threshold, "clean_loss": self.clean_loss,
                "heads": self._rows()}

    def figure(self) -> Any:
        """Plotly heat maps (layers x heads) of every behaviour score and the importance, cells labelled."""
        panels = {kind: self.scores[i] for i, kind in enumerate(self.types)}
        if self.importance is not None:
            panels["importance (nats)"] = self.importance
        short = {(layer, head): _short(label) for (layer, head), label in self.labels.items()}
        return head_heatmaps(panels, title=f"Head census of {display_name(self.model_name) or 'model'}", labels=short)

    def __str__(self) -> str:
        """A text table: each head's label, behaviour scores and importance, one row per head."""
        head = f"{'layer':>5} {'head':>4}  {'label':<28}" + "".join(f"{_short(t):>7}" for t in self.types)
        lines = [f"head census of {self.model_name} (threshold {self.threshold})", head + f"{'import.':>9}"]
        for row in self._rows():
            cells = "".join("    nan" if row[t] is None else f"{row[t]:>7.3f}" for t in self.types)
            imp = "-" if row["importance"] is None else f"{row['importance']:.3f}"
            lines.append(f"{row['layer']:>5} {row['head']:>4}  {row['label']:<28}{cells}{imp:>9}")
        return "\n".join(lines)

    def _rows(self) -> list[dict[str, Any]]:
        rows = []
        n_layers, n_heads = self.scores.shape[1:]
        for layer in range(n_layers):
            for head in range(n_heads):
                row: dict[str, Any] = {"layer": layer, "head": head, "label": self.labels[(layer, head)]}
                for i, kind in enumerate(self.types):
                    value = float(self.scores[i, layer, head])
                    row[kind] = None if math.isnan(value) else round(value, 6)
                row["importance"] = None if self.importance is None else round(float(self.importance[layer, head]), 6)
                rows.append(row)
        return rows


@holds_model
def head_census(
    model: Any,
    prompts: Prompts | None = None,
    *,
    seed: int = 0,
    importance: bool = True,
    ablation: str = "mean",
    threshold: float = 0.4,
    window: int = 4,
    exclude_bos: bool = False,
    cache: Capture | None = None,
    progress: bool = True,
) -> HeadCensus:
    """Label every attention head with its dominant behaviour(s) and measure its causal importance.

    Args:
        model: A ``TransformerBridge`` (GPT-2 or Llama style; GQA patterns are per query head).
        prompts: Text or tokens to study. Default: 16 sequences, each a span repeated once after
            BOS (``[BOS] + t + t``): 8 of reference-world text and 8 of random tokens. Text exercises
            natural-language behaviours; repeats exercise duplicate and induction heads, and random
            repeats show induction even in a model that, on familiar text, leans on what it knows
            instead of copying. The sequences fill the context, cut to what
            :data:`interp.heads.sizing.PATTERN_FLOPS` of forward passes cover (215 tokens each on a
            GPT-2-small-shaped model; the reference models fill their 64). The ablations are
            ``n_layers * n_heads`` passes, so by default they run on the same sequences only if those
            fit :data:`interp.heads.sizing.ABLATION_FLOPS`; otherwise on 8 shorter sequences of the
            same kind, of ``ABLATION_FLOPS / (n_layers * n_heads * flops per token) / 8`` tokens (at
            least 8): 23 tokens each, 184 in all, on GPT-2 small. Given prompts are used as they are
            for both.
        seed: Seed of the default text.
        importance: Measure the loss increase under ablation of each head (one batched pass per
            layer of ``n_heads * batch`` rows, split into chunks of bounded memory,
            :func:`interp.heads.sizing.rows_per_pass`); ``False`` scores patterns only (one forward).
        ablation: ``"mean"`` (default) or ``"zero"`` (see :mod:`interp.heads.ablation`).
        threshold: Score a behaviour needs to enter a head's label.
        window: Farthest key distance counted as ``local``.
        exclude_bos: Score patterns with the BOS column removed and rows renormalised (the ``bos``
            score is then 0); what is left is where the head looks when it is not resting on BOS.
            The captured patterns are never modified.
        cache: A :class:`interp.Capture` with ``"pattern"`` captured (and ``"z"`` for mean-ablation
            importance) to score instead of running the model again; it is read, never modified.
        progress: Show tqdm progress bars over the pattern chunks and the ablated layers.

    Returns:
        A :class:`HeadCensus`.

    Raises:
        ValueError: bad prompts (see :func:`interp.tokenize`), an empty batch, ``window < 2``, an
            unknown ablation, or a model without attention patterns.

    Examples:
        >>> census = head_census(model, importance=False)  # doctest: +SKIP
        >>> census.to_frame()[["layer", "head", "label"]]  # doctest: +SKIP
    """
    info = model_info(model)
    check_has_patterns(model, info)
    check_ablation(ablation)
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"window={window!r}; the local window must reach at least 2 positions back")
    ablation_batch = None
    if cache is None:
        if prompts is None:
            pattern_len, ablation_len = census_lengths(model)
            prompts = default_census_tokens(model, seed=seed, seq_len=pattern_len)
            if ablation_len is not None and importance:
                ablation_tokens = default_census_tokens(model, seed=seed, seq_len=ablation_len, n_rows=8)
                ablation_batch = tokenize(model, ablation_tokens)
        batch = tokenize(model, prompts)
        scores = _chunked_scores(model, batch, window=window, exclude_bos=exclude_bos, progress=progress)
    else:
        batch = Tokenized(cache.tokens, cache.attention_mask)
        patterns = torch.stack([cache.pattern(layer) for layer in range(info.n_layers)])
        scores = pattern_scores(patterns, batch.tokens, batch.attention_mask.bool(), window=window,
                                exclude_bos=exclude_bos).cpu()

    clean = effect = None
    if importance:
        if ablation_batch is None:
            ablation_batch = batch
        loss_mask = torch.zeros_like(ablation_batch.attention_mask, dtype=torch.bool)
        loss_mask[:, :-1] = ablation_batch.attention_mask[:, 1:].bool()  # position p scores token p + 1, real
        clean, z_mean = _clean_pass(model, ablation_batch, loss_mask, ablation, cache)
        losses = head_ablation_losses(model, ablation_batch.tokens, loss_mask, z_mean, method=ablation,
                                      attention_mask=ablation_batch.attention_mask, progress=progress)
        effect = losses - clean
    return HeadCensus(scores=scores, importance=effect, labels=label_heads(scores, threshold), threshold=threshold,
                      clean_loss=clean, model_name=info.name)


def behaviour_masks(
    tokens: Int[torch.Tensor, "batch pos"], mask: Bool[torch.Tensor, "batch pos"], *, window: int = 4
) -> Bool[torch.Tensor, "type batch pos pos"]:
    """For each behaviour of :data:`TYPES`, which (query, key) pairs it attends to.

    Only real queries after position 0 (whose only choice is itself) and real keys count.
    """
    pos = tokens.shape[1]
    q = torch.arange(pos, device=tokens.device)[:, None]
    k = torch.arange(pos, device=tokens.device)[None, :]
    same = tokens[:, :, None] == tokens[:, None, :]  # [batch q k]: token at q equals token at k
    # key k follows an earlier occurrence of the query's token: tokens[k - 1] == tokens[q]
    follows = torch.nn.functional.pad(same[:, :, :-1], (1, 0), value=False)
    masks = torch.stack([
        (k == q - 1).expand_as(same),
        same & (k < q),
        follows & (k <= q),
        (k == 0).expand_as(same),
        (k == q).expand_as(same),
        ((q - k >= 2) & (q - k <= window) & (k >= 1)).expand_as(same),
    ])
    valid = mask[:, :, None] & mask[:, None, :] & (q >= 1) & (k <= q)
    return masks & valid


def pattern_scores(
    patterns: Float[torch.Tensor, "layer batch head pos pos"],
    tokens: Int[torch.Tensor, "batch pos"],
    mask: Bool[torch.Tensor, "batch pos"] | None = None,
    *,
    window: int = 4,
    exclude_bos: bool = False,
) -> Float[torch.Tensor, "type layer head"]:
    """Mean attention mass on each behaviour's keys, for all layers and heads in one einsum.

    A behaviour's mean runs over the queries where it has at least one key (for ``duplicate_token``
    and ``induction``: queries whose token occurred before); NaN if there is none. ``patterns`` is
    not modified.
    """
    mass, queries = pattern_mass(patterns, tokens, mask, window=window, exclude_bos=exclude_bos)
    return mass / queries[:, None, None]  # 0 / 0 = NaN marks "not measurable on these prompts"


def pattern_mass(
    patterns: Float[torch.Tensor, "layer batch head pos pos"],
    tokens: Int[torch.Tensor, "batch pos"],
    mask: Bool[torch.Tensor, "batch pos"] | None = None,
    *,
    window: int = 4,
    exclude_bos: bool = False,
) -> tuple[Float[torch.Tensor, "type layer head"], Float[torch.Tensor, " type"]]:
    """:func:`pattern_scores`' numerator (attention mass summed over queries) and denominator (query counts).

    Both are sums over the batch, so chunks of a batch add up to the whole batch's.
    """
    if mask is None:
        mask = torch.ones_like(tokens, dtype=torch.bool)
    targets = behaviour_masks(tokens, mask, window=window)
    per_row = _per_row(targets)
    mass = torch.stack([_mass(layer, per_row, exclude_bos) for layer in patterns], 1)
    queries = targets.any(-1).sum((1, 2)).float()  # [type]: queries where the behaviour is possible
    return mass, queries


def _per_row(targets: Bool[torch.Tensor, "type batch pos pos"]) -> Float[torch.Tensor, "batch type pos_pos"]:
    """The behaviour masks laid out for :func:`_mass`: one ``[type, pos * pos]`` float matrix per row."""
    return targets.transpose(0, 1).float().reshape(targets.shape[1], targets.shape[0], -1).contiguous()


def _mass(pattern: Float[torch.Tensor, "batch head pos pos"], per_row: Float[torch.Tensor, "batch type pos_pos"],
          exclude_bos: bool) -> Float[torch.Tensor, "type head"]:
    """One layer's attention mass on each behaviour's keys, summed over the batch and queries.

    One batched matrix product over the flattened ``(query, key)`` axis (an ``einsum`` would copy the pattern into
    its own layout first, at every layer).
    """
    if exclude_bos:
        pattern = pattern.clone()  # never write into the caller's capture
        pattern[..., 0] = 0
        pattern = pattern / pattern.sum(-1, keepdim=True).clamp(min=torch.finfo(pattern.dtype).tiny)
    flat = pattern.float().reshape(pattern.shape[0], pattern.shape[1], -1)  # [batch head pos*pos], a view
    return torch.bmm(flat, per_row.transpose(1, 2)).sum(0).T  # [type head]


def census_lengths(model: Any) -> tuple[int, int | None]:
    """Default sequence lengths of the census: (pattern rows, ablation rows or ``None`` for the same rows).

    The 16 pattern rows fill the context, cut to what :data:`~interp.heads.sizing.PATTERN_FLOPS` covers. If the
    ``n_layers * n_heads`` ablation passes over them exceed :data:`~interp.heads.sizing.ABLATION_FLOPS`, the
    ablations get 8 rows of their own, as long as that budget allows (at least 8 tokens).
    """
    info = model_info(model)
    pattern = min(info.n_ctx, max(8, budget_tokens(model, PATTERN_FLOPS) // 16))
    affordable = budget_tokens(model, ABLATION_FLOPS, passes=info.n_layers * info.n_heads)
    if 16 * pattern <= affordable:
        return pattern, None
    return pattern, min(info.n_ctx, max(8, affordable // 8))


def _chunked_scores(model: Any, batch: Tokenized, *, window: int, exclude_bos: bool,
                    progress: bool) -> Float[torch.Tensor, "type layer head"]:
    """:func:`pattern_scores` of ``batch``, a few rows at a time (one layer's patterns of a chunk within
    :data:`~interp.heads.sizing.PASS_BYTES`), each layer's pattern scored as it fires and then dropped, so memory
    holds one layer's patterns, never all of them; the sums are added up."""
    info = model_info(model)
    n_rows, pos = batch.tokens.shape
    layer_of = {hook_name("pattern", layer): layer for layer in range(info.n_layers)}
    step = max(1, min(rows_per_pass(model, pos), PASS_BYTES // (4 * info.n_heads * pos * pos)))
    mass = torch.zeros(len(TYPES), info.n_layers, info.n_heads)
    queries = torch.zeros(len(TYPES))
    for start in tqdm(range(0, n_rows, step), desc="census patterns", leave=False, disable=not progress):
        part = Tokenized(batch.tokens[start : start + step], batch.attention_mask[start : start + step])
        targets = behaviour_masks(part.tokens, part.attention_mask.bool(), window=window)  # the same at every layer
        weights = {targets.device: _per_row(targets)}

        def score(name: str, pattern: torch.Tensor, weights: dict = weights) -> None:
            if pattern.device not in weights:  # a layer on another device (device_map)
                weights[pattern.device] = next(iter(weights.values())).to(pattern.device)
            mass[:, layer_of[name]] += _mass(pattern, weights[pattern.device], exclude_bos).cpu()

        capture(model, part, names=list(layer_of), on_layer=score)
        queries += targets.any(-1).sum((1, 2)).float().cpu()
    return mass / queries[:, None, None]


def _clean_pass(model: Any, batch: Tokenized, loss_mask: torch.Tensor, ablation: str,
                cache: Capture | None) -> tuple[float, list[torch.Tensor] | None]:
    """Mean next-token loss of the unablated model over ``loss_mask``, and (mean ablation) each layer's batch mean
    of ``z``: from ``cache`` when given, else from a capture run a few rows at a time."""
    n_layers = model_info(model).n_layers
    if cache is not None:
        losses = next_token_losses(cache.logits, batch.tokens)
        clean = float((losses * loss_mask).sum() / loss_mask.sum().clamp(min=1))
        z_mean = None if ablation != "mean" else [batch_mean(cache.z(L), batch.attention_mask) for L in range(n_layers)]
        return clean, z_mean
    step = rows_per_pass(model, batch.tokens.shape[1])
    total, z_sum, weight = torch.zeros(()), [torch.zeros(())] * n_layers, torch.zeros(())
    for start in range(0, batch.tokens.shape[0], step):
        rows = slice(start, start + step)
        cap = capture(model, Tokenized(batch.tokens[rows], batch.attention_mask[rows]),
                      names=["z"] if ablation == "mean" else [])
        total = total + (next_token_losses(cap.logits, batch.tokens[rows]) * loss_mask[rows]).sum()
        if ablation == "mean":
            w = batch.attention_mask[rows].to(cap.z(0).dtype)[:, :, None, None]
            z_sum = [z_sum[L] + (cap.z(L) * w).sum(0) for L in range(n_layers)]
            weight = weight + w.sum(0)
    clean = float(total / loss_mask.sum().clamp(min=1))
    return clean, None if ablation != "mean" else [z / weight.clamp(min=1) for z in z_sum]


def label_heads(scores: Float[torch.Tensor, "type layer head"], threshold: float,
                types: tuple[str, ...] = TYPES) -> dict[tuple[int, int], str]:
    """Label each head with the behaviours scoring at least ``threshold``, best first, or ``"other"``."""
    labels = {}
    for layer in range(scores.shape[1]):
        for head in range(scores.shape[2]):
            column = scores[:, layer, head].tolist()
            passing = sorted((s, t) for s, t in zip(column, types, strict=True) if not math.isnan(s) and s >= threshold)
            labels[(layer, head)] = "+".join(t for _, t in reversed(passing)) or "other"
    return labels


def repeated_world_tokens(model: Any, n_seqs: int, *, seed: int = 0,
                          seq_len: int | None = None) -> Int[torch.Tensor, "batch pos"]:
    """``[BOS] + t + t``: reference-world text chunks ``t`` repeated once, ``seq_len`` tokens at most (default the
    context)."""
    info = model_info(model)
    bos = bos_offset(model)
    half = ((info.n_ctx if seq_len is None else seq_len) - bos) // 2
    text = world_tokens(model, n_seqs, half + bos, seed=seed)
    return torch.cat([text, text[:, bos:]], dim=1)


def default_census_tokens(model: Any, *, seed: int = 0, seq_len: int | None = None,
                          n_rows: int = 16) -> Int[torch.Tensor, "batch pos"]:
    """The census' default batch: ``n_rows // 2`` rows of repeated world text, then as many of repeated random
    tokens, ``seq_len`` tokens at most (default: the pattern length of :func:`census_lengths`)."""
    seq_len = census_lengths(model)[0] if seq_len is None else seq_len
    text = repeated_world_tokens(model, n_rows // 2, seed=seed, seq_len=seq_len)
    bos = bos_offset(model)
    random = repeated_random_tokens(model, (text.shape[1] - bos) // 2, n_rows - n_rows // 2, seed=seed)
    return torch.cat([text, random])


def _short(label: str) -> str:
    return "+".join(part.replace("_token", "").replace("duplicate", "dup")[:6] for part in label.split("+"))
