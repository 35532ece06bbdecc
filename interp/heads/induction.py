"""Find induction heads: prefix matching, copying and causal importance on repeated random tokens.

The probe is the classic one: each sequence is ``[BOS] + r + r`` with ``r`` a span of random tokens
from the whole vocabulary (special tokens excluded). Nothing about the second copy can be predicted
from language statistics, so a model that predicts it well must look back at the first copy; the
heads that do so are induction heads. Every score comes from one batched
:func:`interp.capture` of patterns, values and head outputs, computed for all layers and heads at
once; ablation costs one batched pass per layer (:mod:`interp.heads.ablation`). The code knows no
model's head indices: the ranking is all it reports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int

from interp.core.capturing import capture
from interp.core.hooks import layer_names
from interp.core.locking import holds_model
from interp.core.model_info import ModelInfo, display_name, model_info
from interp.core.tokens import bos_offset
from interp.core.unembedding import centred_unembed
from interp.heads.ablation import (
    batch_mean,
    check_ablation,
    head_ablation_losses,
    joint_ablation_loss,
    masked_mean,
    next_token_losses,
)
from interp.heads.plots import head_heatmaps
from interp.heads.sizing import ABLATION_FLOPS, budget_tokens

SCORES = ("induction", "copying", "ablation")
"""The per-head scores of an :class:`InductionReport`, in column order."""


@dataclass
class InductionReport:
    """Per-head induction scores of one model on ``[BOS] + r + r`` batches.

    Examples:
        >>> report = find_induction_heads(model, seq_len=20, batch=8)  # doctest: +SKIP
        >>> report.ranked()[0]  # doctest: +SKIP
        (1, 2, 0.93)
        >>> report.to_frame().head()  # doctest: +SKIP
    """

    induction: Float[torch.Tensor, "layer head"]
    """Prefix-matching score: mean attention from each second-copy token to the token that followed
    its first occurrence (0..1; a perfect induction head scores 1)."""
    copying: Float[torch.Tensor, "layer head"]
    """OV copying score in -1..1: sum(Re eigenvalues) / sum(|eigenvalues|) of the head's OV circuit
    restricted to the probe's tokens (positive: attending to a token raises that token's logit)."""
    ablation: Float[torch.Tensor, "layer head"] | None
    """Increase of the second-copy loss (nats) when the head is ablated; ``None`` if not measured."""
    clean_loss: float
    """Second-copy loss of the unablated model (nats per token)."""
    seq_len: int
    """Length of the random span ``r``."""
    batch: int
    """Number of sequences."""
    ablation_method: str
    """``"mean"`` or ``"zero"`` (see :mod:`interp.heads.ablation`)."""
    joint_ablation: float | None = None
    """Increase of the second-copy loss (nats) when all heads with induction score > 0.5 are ablated
    together (redundant induction heads each look harmless alone); ``None`` if not measured or none."""
    model_name: str = ""
    """What the model was loaded from."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping with the report (e.g. the seed)."""

    def ranked(self, by: str = "induction") -> list[tuple[int, int, float]]:
        """All heads as ``(layer, head, score)``, best first by ``by`` (one of :data:`SCORES`)."""
        scores = self._column(by)
        order = torch.argsort(scores.flatten(), descending=True, stable=True)
        n_heads = scores.shape[1]
        return [(int(i) // n_heads, int(i) % n_heads, float(scores.flatten()[i])) for i in order]

    def heads(self, threshold: float = 0.5, by: str = "induction") -> list[tuple[int, int]]:
        """``(layer, head)`` of every head whose ``by`` score exceeds ``threshold``, best first."""
        return [(layer, head) for layer, head, score in self.ranked(by) if score > threshold]

    def to_frame(self) -> Any:
        """One row per head (``layer``, ``head``, ``induction``, ``copying``, ``ablation``), ranked."""
        import pandas as pd

        return pd.DataFrame(self._rows()).reset_index(drop=True)

    def to_json(self) -> dict[str, Any]:
        """``{"heads": [{"layer", "head", "induction", "copying", "ablation"}, ...]}``, ranked best first,
        plus the probe's settings."""
        return {
            "model": self.model_name,
            "seq_len": self.seq_len,
            "batch": self.batch,
            "ablation_method": self.ablation_method,
            "clean_loss": self.clean_loss,
            "joint_ablation": self.joint_ablation,
            "joint_heads": [list(h) for h in self.heads(0.5)],
            "heads": self._rows(),
        }

    def figure(self) -> Any:
        """Plotly heat maps (layers x heads): induction, copying and ablation side by side."""
        panels = {"induction score": self.induction, "copying score": self.copying}
        if self.ablation is not None:
            panels["ablation: loss increase (nats)"] = self.ablation
        return head_heatmaps(panels, title=f"Induction heads of {display_name(self.model_name) or 'model'}")

    def __str__(self) -> str:
        """A text table: each head's induction, copying and ablation scores, under the run's settings."""
        lines = [f"induction heads of {self.model_name} ([BOS] + r + r, |r|={self.seq_len}, batch {self.batch}, "
                 f"{self.ablation_method}-ablation, clean second-copy loss {self.clean_loss:.3f} nats)",
                 f"{'layer':>5} {'head':>4} {'induction':>9} {'copying':>8} {'ablation':>8}"]
        for row in self._rows():
            ablation = "-" if row["ablation"] is None else f"{row['ablation']:.3f}"
            lines.append(f"{row['layer']:>5} {row['head']:>4} {row['induction']:>9.3f} {row['copying']:>8.3f} "
                         f"{ablation:>8}")
        if self.joint_ablation is not None:
            lines.append(f"ablating {self.heads(0.5)} together: +{self.joint_ablation:.3f} nats")
        return "\n".join(lines)

    def _column(self, by: str) -> torch.Tensor:
        if by not in SCORES:
            raise ValueError(f"by={by!r}; valid scores are {', '.join(SCORES)}")
        column = getattr(self, by)
        if column is None:
            raise ValueError(f"by={by!r}: the report was made with ablate=False")
        return column

    def _rows(self) -> list[dict[str, Any]]:
        rows = []
        for layer, head, score in self.ranked():
            rows.append({
                "layer": layer, "head": head, "induction": round(score, 6),
                "copying": round(float(self.copying[layer, head]), 6),
                "ablation": None if self.ablation is None else round(float(self.ablation[layer, head]), 6),
            })
        return rows

    def dumps(self) -> str:
        """:meth:`to_json` as a JSON string."""
        return json.dumps(self.to_json())


def repeated_random_tokens(
    model: Any, seq_len: int, batch: int, seed: int = 0
) -> Int[torch.Tensor, "batch pos"]:
    """``[BOS] + r + r`` for ``batch`` random spans ``r`` of ``seq_len`` non-special tokens (seeded).

    Without a BOS token the sequence is ``r + r``.

    Examples:
        >>> repeated_random_tokens(model, 5, 2).shape  # with BOS  # doctest: +SKIP
        torch.Size([2, 11])
    """
    info = model_info(model)
    special = set(getattr(model.tokenizer, "all_special_ids", []) or [])
    allowed = torch.tensor([t for t in range(info.d_vocab) if t not in special], dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    span = allowed[torch.randint(len(allowed), (batch, seq_len), generator=generator)]
    parts = [span, span]
    bos = model.tokenizer.bos_token_id if info.prepend_bos else None
    if bos is not None:
        parts.insert(0, torch.full((batch, 1), bos, dtype=torch.long))
    return torch.cat(parts, dim=1).to(info.device)


@holds_model
def find_induction_heads(
    model: Any,
    *,
    seq_len: int | None = None,
    batch: int | None = None,
    seed: int = 0,
    ablate: bool = True,
    ablation: str = "mean",
    progress: bool = True,
) -> InductionReport:
    """Score every attention head as an induction head on ``[BOS] + r + r`` with random ``r``.

    Scores, all from one batched capture, vectorised over layers and heads:

    * **induction** (prefix matching): mean attention from each second-copy token to the token that
      followed its first occurrence.
    * **copying**: the eigenvalue copying score of the head's OV circuit,
      ``sum(Re λ) / sum(|λ|)`` for ``M = V · W_O · U[:, T]`` where ``V`` holds the head's actual
      value vectors at the first-copy positions (what it reads when it attends there), ``W_O`` its
      output projection, and ``U`` the unembedding seen through the final norm's linear part (gain,
      and centring for LayerNorm), centred over the vocabulary, restricted to the probe's tokens
      ``T``. Why this choice: ``sum(λ) = trace(M)`` is exactly the total direct effect of "attend to
      token t" on "logit of t", i.e. whether the head raises the logit of the token it attends to;
      dividing by ``sum(|λ|)`` makes it scale-free (-1..1) so heads of different norms and models
      compare, and a head that moves logits a lot but not towards the attended token scores near 0.
      Using real value vectors instead of raw embeddings accounts for earlier layers and norms, and
      the rank-``d_head`` structure means only ``d_head x d_head`` eigenproblems are solved. The
      final norm's per-position scale is left out (it is positive and shared by all heads).
    * **ablation**: increase of the mean loss on the second copy (tokens 2..n of it, whose next
      token is determined by the first copy) when the head is ablated, one batched pass per layer.
      ``ablation="mean"`` replaces the head's output by its batch mean at each position,
      ``"zero"`` by zero (see :mod:`interp.heads.ablation`). Several induction heads often back each
      other up, so each alone looks harmless; ``joint_ablation`` also knocks out every head with
      induction score > 0.5 together (one more pass).

    Args:
        model: A ``TransformerBridge`` (GPT-2 or Llama style; GQA patterns are per query head).
        seq_len: Length of the random span; default the longest that fits the context, at most 32,
            cut further on a large model (see ``batch``).
        batch: Number of random sequences; default 16. The ablations cost ``n_layers * n_heads``
            passes over all the tokens, so where 16 sequences of the default span exceed
            :data:`interp.heads.sizing.ABLATION_FLOPS` the default is 8 sequences and the span is cut
            to fit the budget (at least 2): on a GPT-2-small-shaped model, 8 sequences of span 11
            (184 tokens); the reference models keep 16 of span 31. With only one of the two given,
            the other is sized to the budget the same way (span at most 32, at most 16 sequences).
        seed: Seed of the random spans.
        ablate: Measure ablation effects (``n_layers`` extra passes of ``n_heads * batch`` rows, in
            chunks of bounded memory, :func:`interp.heads.sizing.rows_per_pass`).
        ablation: ``"mean"`` or ``"zero"``.
        progress: Show a tqdm progress bar over the ablated layers.

    Returns:
        An :class:`InductionReport`.

    Raises:
        ValueError: ``seq_len`` does not fit the context (``1 + 2 * seq_len > n_ctx``) or is < 2,
            ``batch < 1``, an unknown ablation, or a model without attention patterns.

    Examples:
        >>> report = find_induction_heads(model)  # doctest: +SKIP
        >>> report.heads(0.5)  # doctest: +SKIP
    """
    info = model_info(model)
    check_has_patterns(model, info)
    check_ablation(ablation)
    bos = bos_offset(model)
    longest = (info.n_ctx - bos) // 2
    seq_len, batch = probe_size(model, seq_len, batch)
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or not 2 <= seq_len <= longest:
        raise ValueError(f"seq_len={seq_len!r}; with n_ctx={info.n_ctx} the span length must be in 2..{longest} "
                         f"({'BOS + ' if bos else ''}2 * seq_len tokens must fit the context)")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch={batch!r}; need at least 1 sequence")

    tokens = repeated_random_tokens(model, seq_len, batch, seed)
    cap = capture(model, tokens, names=["pattern", "v", "z"])
    patterns = torch.stack([cap.pattern(layer) for layer in range(info.n_layers)])  # [layer batch head q k]
    induction = induction_stripe(patterns, seq_len).mean(dim=(1, 3)).cpu()
    first_copy = slice(bos, bos + seq_len)
    copying = copying_scores(model, info, cap, tokens, first_copy).cpu()

    # Position p predicts tokens[p + 1]: score the predictions of second-copy tokens 2..n.
    loss_mask = torch.zeros_like(tokens, dtype=torch.bool)
    loss_mask[:, bos + seq_len : bos + 2 * seq_len - 1] = True
    clean = float(masked_mean(next_token_losses(cap.logits, tokens), loss_mask))
    effect, joint = None, None
    if ablate:
        z_mean = None
        if ablation == "mean":
            z_mean = [batch_mean(cap.z(layer), cap.attention_mask) for layer in range(info.n_layers)]
        losses = head_ablation_losses(model, tokens, loss_mask, z_mean, method=ablation, progress=progress)
        effect = losses - clean
        strong = [(layer, head) for layer, head in torch.nonzero(induction > 0.5).tolist()]
        if strong:
            joint = joint_ablation_loss(model, tokens, loss_mask, strong, z_mean, method=ablation) - clean
    return InductionReport(
        induction=induction, copying=copying, ablation=effect, clean_loss=clean, seq_len=seq_len,
        batch=batch, ablation_method=ablation, joint_ablation=joint, model_name=info.name, extras={"seed": seed},
    )


def probe_size(model: Any, seq_len: int | None, batch: int | None) -> tuple[int, int]:
    """The probe's span length and sequence count, each given value kept and each ``None`` sized to the budget.

    Defaults: span ``min(32, longest that fits)`` and 16 sequences, unless the ablation passes over them
    (``n_layers * n_heads``) exceed :data:`~interp.heads.sizing.ABLATION_FLOPS`; then 8 sequences and the span
    the budget allows (at least 2). Invalid given values are returned unchanged, for the caller to refuse.
    """
    info = model_info(model)
    bos = bos_offset(model)
    affordable = budget_tokens(model, ABLATION_FLOPS, passes=info.n_layers * info.n_heads)
    longest = min(32, (info.n_ctx - bos) // 2)
    if seq_len is None and batch is None:
        if 16 * (bos + 2 * longest) <= affordable:
            return longest, 16
        batch = 8
    if seq_len is None:
        rows = batch if isinstance(batch, int) and batch > 0 else 1
        return max(2, min(longest, (affordable // rows - bos) // 2)), batch
    if batch is None:
        row = bos + 2 * seq_len if isinstance(seq_len, int) and seq_len > 0 else 1
        return seq_len, max(1, min(16, affordable // row))
    return seq_len, batch


def induction_stripe(
    patterns: Float[torch.Tensor, "layer batch head pos pos"], seq_len: int
) -> Float[torch.Tensor, "layer batch head seq"]:
    """Attention from each second-copy token to the token after its first occurrence.

    In ``[BOS] + r + r`` (or ``r + r``) that key sits ``seq_len - 1`` positions before the query,
    so the scores form the diagonal at offset ``1 - seq_len``; it ends at the last query, so it is
    the same with or without BOS.
    """
    return patterns.diagonal(offset=1 - seq_len, dim1=-2, dim2=-1)[..., -seq_len:]


def copying_scores(
    model: Any, info: ModelInfo, cap: Any, tokens: torch.Tensor, source: slice
) -> Float[torch.Tensor, "layer head"]:
    """Eigenvalue copying score per head (see :func:`find_induction_heads`), all heads at once."""
    # float64: the score is a ratio of sums of small eigenvalues, and float32 loses several digits of it
    # on near-random heads.
    u = centred_unembed(model, tokens[:, source].flatten())  # [d_model n]
    w_o = model.W_O.detach()  # [layer head d_head d_model]
    small = []
    for layer in range(info.n_layers):  # a layer at a time: all of W_O in float64 is 0.5 GB on a 1B model
        out = torch.einsum("hdm,mn->hnd", w_o[layer].double(), u)  # what each source token's logit gets per value
        values = cap.v(layer, expand=True)[:, source].double().flatten(0, 1).transpose(0, 1)  # [head n d_head]
        # M = values @ out^T is n x n of rank <= d_head; its non-zero eigenvalues are those of out^T @ values.
        small.append(torch.einsum("hnd,hne->hde", out, values))
    eig = torch.linalg.eigvals(torch.stack(small))  # [layer head d_head]
    return (eig.real.sum(-1) / eig.abs().sum(-1).clamp(min=torch.finfo(torch.float64).tiny)).float()


def check_has_patterns(model: Any, info: ModelInfo) -> None:
    """Raise ``ValueError`` unless every layer exposes ``attn.hook_pattern`` (softmax attention).

    Induction scores and the head census read attention patterns; a model without them cannot be scored.
    """
    missing = [name for name in layer_names("pattern", range(info.n_layers)) if name not in model.hook_dict]
    if missing:
        raise ValueError(f"model {info.name} exposes no attention patterns ({missing[0]} missing): "
                         "induction and head scores need softmax attention with a hook_pattern per layer")
