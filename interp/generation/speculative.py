"""Speculative decoding: a small draft model proposes tokens, the target model checks them in one pass.

The accept/reject rule of Leviathan et al. (2023) and Chen et al. (2023) keeps the output distributed
exactly as the target's sampling distribution (after the same temperature/top-k/top-p filters, see
:func:`interp.generation.sampling_probs`): draft token ``x ~ q`` is accepted with probability
``min(1, p(x) / q(x))``; on rejection a replacement is drawn from ``max(p - q, 0)`` renormalised, and
when every draft token is accepted one more token is drawn from the target's next distribution. Each
round therefore emits between 1 and ``n_draft + 1`` tokens for one target forward pass.

Both models keep a KV cache; rejected draft positions are cropped from it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int

from interp.core import kv_cache
from interp.core.locking import holds_models
from interp.core.model_info import model_info
from interp.core.tokens import Prompts, str_tokens
from interp.generation.decoding import Stopper, check_finite_logits, generate, single_prompt_tokens
from interp.generation.sampling import check_sampling, make_generator, sample, sampling_probs


def verify(
    p: Float[torch.Tensor, "n_plus_1 vocab"],
    q: Float[torch.Tensor, "n vocab"],
    drafted: Sequence[int],
    generator: torch.Generator,
) -> tuple[int, int]:
    """Accept a prefix of the drafted tokens and draw the token that follows it.

    Args:
        p: Target sampling distributions at each drafted position, plus one after the last.
        q: Draft sampling distributions the drafted tokens were drawn from.
        drafted: The ``n`` drafted token ids.
        generator: Source of the uniform draws and of the replacement/bonus token.

    Returns:
        ``(n_accepted, next_token)``: the first ``n_accepted`` drafted tokens stand, then ``next_token``.

    Examples:
        >>> p = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> q = torch.tensor([[1.0, 0.0]])
        >>> verify(p, q, [0], torch.Generator().manual_seed(0))  # p(0) = 0: rejected, replaced by 1
        (0, 1)
    """
    p, q = p.detach().float().cpu(), q.detach().float().cpu()
    for i, x in enumerate(drafted):
        # Accept with probability min(1, p/q), written without dividing (q(x) > 0: x was drawn from q).
        if float(torch.rand((), generator=generator)) * float(q[i, x]) < float(p[i, x]):
            continue
        residual = (p[i] - q[i]).clamp(min=0)
        # The residual is all zero only if p == q, and then rejection has probability 0; rounding can still
        # land here, and p itself is the right distribution to fall back on.
        residual = residual / residual.sum() if residual.sum() > 0 else p[i]
        return i, sample(residual, generator)
    return len(drafted), sample(p[len(drafted)], generator)


@dataclass
class Round:
    """One draft-and-verify round."""

    drafted: list[int]
    """Token ids the draft model proposed."""
    accepted: int
    """How many of them the target accepted (a prefix)."""
    next_token: int
    """The token the target drew after the accepted prefix (replacement or bonus)."""


@dataclass
class SpeculativeGeneration:
    """Tokens from speculative decoding, with acceptance statistics and timing."""

    prompt_tokens: Int[torch.Tensor, " pos"]
    """Prompt token ids."""
    new_tokens: Int[torch.Tensor, " new"]
    """Generated token ids."""
    text: str
    """Generated text (cut before a stop string, without the end-of-text token)."""
    stop_reason: str
    """``"max_new_tokens"``, ``"eos"``, ``"stop"`` or ``"n_ctx"``."""
    rounds: list[Round]
    """Every draft-and-verify round, in order."""
    seed: int
    """Seed of the generator for draft sampling, acceptance draws and target draws."""
    seconds: float
    """Wall-clock time of the decoding loop."""
    target_calls: int
    """Forward passes of the target model."""
    draft_calls: int
    """Forward passes of the draft model."""
    baseline_seconds: float | None = None
    """Time of plain KV-cached :func:`interp.generate` with the target for as many tokens (``baseline=True``)."""
    tokenizer: Any = field(default=None, repr=False)
    """Shared tokenizer."""

    @property
    def drafted(self) -> int:
        """Draft tokens proposed in all rounds."""
        return sum(len(r.drafted) for r in self.rounds)

    @property
    def acceptance_rate(self) -> float:
        """Share of drafted tokens the target accepted (nan if nothing was drafted)."""
        return sum(r.accepted for r in self.rounds) / self.drafted if self.drafted else float("nan")

    @property
    def tokens_per_target_call(self) -> float:
        """Generated tokens per target forward pass (1.0 for plain decoding)."""
        return len(self.new_tokens) / max(self.target_calls, 1)

    @property
    def speedup(self) -> float | None:
        """``baseline_seconds / seconds``: above 1 when speculative decoding was faster."""
        return None if self.baseline_seconds is None else self.baseline_seconds / self.seconds

    def to_frame(self) -> Any:
        """One row per round: drafted tokens, how many were accepted, and the target's token."""
        import pandas as pd

        def name(ids: Sequence[int]) -> list[Any]:
            return str_tokens(self.tokenizer, torch.tensor(ids, dtype=torch.long)) if ids else []

        return pd.DataFrame(
            [{"round": i, "drafted": name(r.drafted), "accepted": r.accepted,
              "next_token": name([r.next_token])[0]} for i, r in enumerate(self.rounds)]
        )

    def figure(self) -> Any:
        """Stacked bars per round: accepted and rejected draft tokens."""
        import plotly.graph_objects as go

        frame = self.to_frame()
        rejected = [len(d) - a for d, a in zip(frame["drafted"], frame["accepted"], strict=True)]
        fig = go.Figure()
        fig.add_bar(name="accepted", x=frame["round"], y=frame["accepted"],
                    hovertext=[" ".join(map(repr, d)) for d in frame["drafted"]])
        fig.add_bar(name="rejected", x=frame["round"], y=rejected)
        fig.update_layout(barmode="stack", xaxis_title="round", yaxis_title="draft tokens",
                          title=f"Speculative decoding: acceptance {self.acceptance_rate:.0%}, "
                                f"{self.tokens_per_target_call:.2f} tokens per target pass")
        return fig


@holds_models("target", "draft")
def speculative_generate(
    target: Any,
    draft: Any,
    prompt: Prompts,
    *,
    max_new_tokens: int = 32,
    n_draft: int = 4,
    temperature: float | int = 1.0,
    top_k: int | None = None,
    top_p: float | int | None = None,
    seed: int | None = None,
    stop: str | Sequence[str] | None = None,
    stop_at_eos: bool = True,
    draft_temperature: float | int | None = None,
    baseline: bool = False,
) -> SpeculativeGeneration:
    """Generate with ``target``'s sampling distribution, drafting ``n_draft`` tokens per round with ``draft``.

    Args:
        target: The model whose distribution the output follows.
        draft: A (smaller) model with the same tokenizer.
        prompt: One prompt, tokenized as for ``target``.
        max_new_tokens: Most tokens to generate (>= 1).
        n_draft: Tokens drafted per round (>= 1).
        temperature: Softmax temperature for both models; 0 is greedy.
        top_k: Top-k filter for both models (None: off).
        top_p: Top-p filter for both models (None: off).
        seed: Seed of the one generator behind every random draw (None: drawn and recorded).
        stop: Stop string(s), as in :func:`interp.generate`.
        stop_at_eos: End at the end-of-text token.
        draft_temperature: Temperature of the draft's proposals (default: ``temperature``). Any proposal
            distribution keeps the output exact; a closer one is accepted more often.
        baseline: Also time plain :func:`interp.generate` with ``target`` for the same number of tokens,
            filling ``baseline_seconds`` and ``speedup``.

    Returns:
        A :class:`SpeculativeGeneration`.

    Raises:
        ValueError: the models' vocabularies differ, bad prompt, ``n_draft`` or sampling parameters, or
            either model produced non-finite logits.

    Examples:
        >>> out = speculative_generate(interp.load("ref-llama"), interp.load("ref-gpt2"), "The capital of France is",
        ...                            n_draft=4, temperature=0, baseline=True)  # doctest: +SKIP
        >>> out.acceptance_rate, out.speedup  # doctest: +SKIP
    """
    check_sampling(temperature, top_k, top_p)
    draft_temperature = temperature if draft_temperature is None else draft_temperature
    check_sampling(draft_temperature, top_k, top_p)
    for name, value in (("max_new_tokens", max_new_tokens), ("n_draft", n_draft)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}; it must be an integer >= 1")
    _check_same_vocabulary(target, draft)
    stopper = Stopper(target.tokenizer, stop, stop_at_eos)
    generator, seed = make_generator(seed)
    seq = single_prompt_tokens(target, prompt).to(model_info(target).device)
    prompt_len = seq.shape[1]
    n_ctx = min(model_info(target).n_ctx, model_info(draft).n_ctx)
    draft_device = model_info(draft).device

    def probs(logits: torch.Tensor, t: float | int = temperature) -> torch.Tensor:
        return sampling_probs(logits, t, top_k, top_p)

    start = time.perf_counter()
    rounds: list[Round] = []
    target_cache = draft_cache = None
    target_calls = draft_calls = 0
    reason = "max_new_tokens"
    while True:
        new_ids = seq[0, prompt_len:].tolist()
        done = stopper.check(new_ids)
        if done or len(new_ids) >= max_new_tokens or seq.shape[1] >= n_ctx:
            reason = done or ("max_new_tokens" if len(new_ids) >= max_new_tokens else "n_ctx")
            break
        remaining = max_new_tokens - len(new_ids)
        # Drafting more than remaining - 1 would only throw tokens away; the target must fit every position.
        n = min(n_draft, remaining - 1, n_ctx - seq.shape[1])
        drafted: list[int] = []
        q_rows: list[torch.Tensor] = []
        if n > 0:
            logits, draft_cache = _run(draft, seq.to(draft_device), draft_cache)
            draft_calls += 1
            for i in range(n):
                check_finite_logits(logits[0, -1], f"round {len(rounds)}, draft token {i} (draft model)")
                q = probs(logits[0, -1], draft_temperature)
                drafted.append(sample(q, generator))
                q_rows.append(q)
                if i < n - 1:
                    logits = kv_cache.extend(draft, seq.new_tensor([[drafted[-1]]]).to(draft_device), draft_cache)
                    draft_calls += 1
        candidate = torch.cat([seq, seq.new_tensor([drafted])], dim=1) if drafted else seq
        logits, target_cache = _run(target, candidate, target_cache)
        target_calls += 1
        check_finite_logits(logits[0, -(n + 1):], f"round {len(rounds)} (target model)")
        p = probs(logits[0, -(n + 1):])
        accepted, token = verify(p, torch.stack(q_rows) if q_rows else p[:0], drafted, generator)
        rounds.append(Round(drafted=drafted, accepted=accepted, next_token=token))
        emitted = drafted[:accepted] + [token]
        if stopper.eos is not None and stopper.eos in emitted:
            # Nothing after an accepted end-of-text token belongs to the output.
            emitted = emitted[: emitted.index(stopper.eos) + 1]
        seq = torch.cat([seq, seq.new_tensor([emitted])], dim=1)
        # Keep only positions whose tokens stand; the newest token has not been run through either model yet.
        kv_cache.crop(target_cache, min(kv_cache.cache_length(target_cache), seq.shape[1] - 1))
        if draft_cache is not None:
            kv_cache.crop(draft_cache, min(kv_cache.cache_length(draft_cache), seq.shape[1] - 1))
    seconds = time.perf_counter() - start
    new_ids = seq[0, prompt_len:].tolist()
    result = SpeculativeGeneration(
        prompt_tokens=seq[0, :prompt_len].cpu(),
        new_tokens=torch.tensor(new_ids, dtype=torch.long),
        text=stopper.text(new_ids),
        stop_reason=reason,
        rounds=rounds,
        seed=seed,
        seconds=seconds,
        target_calls=target_calls,
        draft_calls=draft_calls,
        tokenizer=target.tokenizer,
    )
    if baseline and new_ids:
        plain = generate(target, seq[:, :prompt_len], max_new_tokens=len(new_ids), temperature=temperature,
                         top_k=top_k, top_p=top_p, seed=seed, stop_at_eos=False)
        result.baseline_seconds = plain.seconds
    return result


def _run(model: Any, seq: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
    """Logits for the positions of ``seq`` not yet in ``cache`` (all of them when there is no cache)."""
    if cache is None:
        logits, cache = kv_cache.prefill(model, seq)
        return logits, kv_cache.keep_for_rollback(cache)  # rejected drafts are cropped, sliding windows too
    return kv_cache.extend(model, seq[:, kv_cache.cache_length(cache):], cache), cache


def _check_same_vocabulary(target: Any, draft: Any) -> None:
    t_info, d_info = model_info(target), model_info(draft)
    if t_info.d_vocab != d_info.d_vocab or target.tokenizer.get_vocab() != draft.tokenizer.get_vocab():
        raise ValueError(
            f"target {t_info.name} (vocab {t_info.d_vocab}) and draft {d_info.name} (vocab {d_info.d_vocab}) "
            "do not share a tokenizer; speculative decoding needs the same token ids in both"
        )
