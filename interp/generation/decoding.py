"""Next-token views and generation with a KV cache, on top of the sampling pipeline.

:func:`next_token` shows the distribution after every step of :func:`interp.generation.pipeline`;
:func:`generate` samples a continuation from its last step, token by token, and stops at a length,
the end-of-text token or a stop string (:class:`Stopper`, shared with speculative decoding).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int

from interp.core import kv_cache
from interp.core.capturing import capture
from interp.core.locking import holds_model
from interp.core.model_info import model_info
from interp.core.tokens import Prompts, str_tokens, tokenize
from interp.generation.plots import next_token_figure, step_label
from interp.generation.sampling import (
    STEPS,
    StepEffect,
    check_sampling,
    make_generator,
    pipeline,
    sample,
    sampling_probs,
    step_effects,
)


@dataclass
class NextToken:
    """The next-token distribution after each step of the sampling pipeline."""

    tokens: Int[torch.Tensor, " pos"]
    """Prompt token ids."""
    str_tokens: list[str]
    """Prompt tokens as text."""
    logits: Float[torch.Tensor, " vocab"]
    """Raw logits at the last prompt position."""
    probs_by_step: dict[str, Float[torch.Tensor, " vocab"]]
    """Distribution after each step of :data:`interp.generation.STEPS`."""
    kept_by_step: dict[str, Bool[torch.Tensor, " vocab"]]
    """Tokens still allowed after each step."""
    temperature: float | int
    """Temperature used (0 = greedy)."""
    top_k: int | None
    """Top-k filter (None = off)."""
    top_p: float | int | None
    """Top-p filter (None = off)."""
    tokenizer: Any = field(repr=False)
    """Tokenizer, to name tokens."""

    @property
    def probs(self) -> Float[torch.Tensor, " vocab"]:
        """The final distribution, the one :func:`generate` samples from."""
        return self.probs_by_step["top_p"]

    @property
    def greedy_token(self) -> int:
        """Id of the most probable token."""
        return int(self.logits.argmax())

    def top(self, k: int = 10) -> list[int]:
        """Ids of the ``k`` tokens with the highest raw logits."""
        return self.logits.topk(min(k, self.logits.shape[0])).indices.tolist()

    def to_frame(self, k: int = 10) -> Any:
        """One row per top-``k`` token: logit and probability after each step."""
        import pandas as pd

        ids = self.top(k)
        rows = []
        for rank, i in enumerate(ids):
            row = {"rank": rank, "id": i, "token": self.tokenizer.decode([i]), "logit": float(self.logits[i])}
            row.update({f"p_{name}": float(self.probs_by_step[name][i]) for name in STEPS})
            rows.append(row)
        return pd.DataFrame(rows)

    def step_effects(self) -> list[StepEffect]:
        """What each pipeline step did: tokens left, tokens and probability mass it cut, top probability, entropy."""
        return step_effects([self.probs_by_step[n] for n in STEPS], [self.kept_by_step[n] for n in STEPS])

    def effects_frame(self) -> Any:
        """One row per pipeline step: its setting, tokens left, tokens and probability it removed, entropy (nats)."""
        import pandas as pd

        return pd.DataFrame([{"step": step_label(e.step, self), "tokens left": e.kept, "removed": e.removed,
                              "removed probability": e.removed_mass, "top token p": e.top_prob,
                              "entropy (nats)": e.entropy} for e in self.step_effects()])

    def figure(self, k: int = 10, log: bool = False) -> Any:
        """Grouped bars: the top-``k`` tokens' and the rest's probability after each step (see :mod:`.plots`)."""
        return next_token_figure(self, k, log=log)


@holds_model
def next_token(
    model: Any,
    prompt: Prompts,
    *,
    temperature: float | int = 1.0,
    top_k: int | None = None,
    top_p: float | int | None = None,
) -> NextToken:
    """The next-token distribution at every step of the sampling pipeline.

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`.
        prompt: One prompt (text or token ids).
        temperature: Softmax temperature; 0 is greedy.
        top_k: Keep only the ``top_k`` most probable tokens (None: off).
        top_p: Keep the smallest set of tokens whose probability reaches ``top_p`` (None: off).

    Returns:
        A :class:`NextToken`.

    Raises:
        ValueError: an empty prompt, several prompts, bad sampling parameters, or non-finite logits.

    Examples:
        >>> result = next_token(model, "The Eiffel Tower is in the city of", top_k=5)  # doctest: +SKIP
        >>> result.to_frame(5)  # doctest: +SKIP
    """
    check_sampling(temperature, top_k, top_p)
    cap = capture(model, single_prompt_tokens(model, prompt), names=[])
    return next_token_from_logits(cap.tokens[0], cap.logits[0, -1], model.tokenizer, temperature, top_k, top_p)


def next_token_from_logits(
    tokens: Int[torch.Tensor, " pos"],
    logits: Float[torch.Tensor, " vocab"],
    tokenizer: Any,
    temperature: float | int = 1.0,
    top_k: int | None = None,
    top_p: float | int | None = None,
) -> NextToken:
    """Build a :class:`NextToken` from logits already computed (the journey reuses its one capture)."""
    check_finite_logits(logits, "the last prompt position")
    steps = pipeline(logits.detach(), temperature, top_k, top_p)
    return NextToken(
        tokens=tokens.detach().cpu(),
        str_tokens=str_tokens(tokenizer, tokens.detach().cpu()),
        logits=logits.detach().float().cpu(),
        probs_by_step={name: p.cpu() for name, (p, _) in zip(STEPS, steps, strict=True)},
        kept_by_step={name: k.cpu() for name, (_, k) in zip(STEPS, steps, strict=True)},
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        tokenizer=tokenizer,
    )


def check_finite_logits(logits: torch.Tensor, where: str) -> None:
    """Refuse to sample from logits holding NaN or inf: softmax of them is garbage, not a distribution.

    Args:
        logits: Raw model logits, any shape.
        where: Which step produced them, for the message (e.g. ``"generation step 3"``).

    Raises:
        ValueError: some logit is NaN or infinite (the message counts them and names ``where``).
    """
    finite = torch.isfinite(logits)
    if not bool(finite.all()):
        raise ValueError(
            f"the model produced non-finite logits at {where} ({int((~finite).sum())} of {finite.numel()} are "
            "NaN or inf); its weights or activations hold NaN/inf (a broken checkpoint or edit, or float16 "
            "overflow), so there is no distribution to sample from"
        )


def single_prompt_tokens(model: Any, prompt: Prompts) -> Int[torch.Tensor, "1 pos"]:
    """Token ids of exactly one prompt, as a one-row batch.

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`.
        prompt: One prompt (text or token ids).

    Raises:
        ValueError: an empty prompt, or more than one.
    """
    tokens = tokenize(model, prompt).tokens
    if tokens.shape[0] != 1:
        raise ValueError(f"got {tokens.shape[0]} prompts; pass exactly one prompt")
    return tokens


@dataclass
class Generation:
    """Tokens sampled after a prompt, with how and why generation stopped."""

    prompt_tokens: Int[torch.Tensor, " pos"]
    """Prompt token ids (with BOS when the model prepends it)."""
    new_tokens: Int[torch.Tensor, " new"]
    """Generated token ids, in order (an end-of-text token that stopped generation included)."""
    token_probs: list[float]
    """Probability of each generated token under the distribution it was sampled from."""
    text: str
    """Generated text, cut before the first stop string and without the end-of-text token."""
    stop_reason: str
    """``"max_new_tokens"``, ``"eos"``, ``"stop"`` (a stop string) or ``"n_ctx"`` (context full)."""
    seed: int
    """Seed of the sampling generator: the same seed and arguments give the same tokens."""
    seconds: float
    """Wall-clock time of the generation loop (no tokenization or loading)."""
    forward_passes: int
    """Model calls made."""
    tokenizer: Any = field(repr=False)
    """Tokenizer, to name tokens."""

    def to_frame(self) -> Any:
        """One row per generated token: step, id, token text and its sampling probability."""
        import pandas as pd

        ids = self.new_tokens.tolist()
        return pd.DataFrame(
            {"step": range(len(ids)), "id": ids, "token": str_tokens(self.tokenizer, self.new_tokens),
             "prob": self.token_probs}
        )

    def figure(self) -> Any:
        """Bars: probability of each generated token when it was sampled."""
        import plotly.graph_objects as go

        frame = self.to_frame()
        fig = go.Figure(go.Bar(x=frame["step"], y=frame["prob"], text=[repr(t) for t in frame["token"]]))
        fig.update_layout(title=f"Generated tokens (stopped: {self.stop_reason})", xaxis_title="step",
                          yaxis_title="probability when sampled", yaxis_range=[0, 1])
        return fig


class Stopper:
    """Decides after each generated token whether generation is over, and cuts the text.

    Args:
        tokenizer: The model's tokenizer, to decode the generated ids.
        stop: A string or strings; generation ends once the generated text contains one.
        stop_at_eos: End when the tokenizer's end-of-text token is generated.

    Attributes:
        stops: The stop strings.
        tokenizer: Tokenizer that decodes the generated ids.
        eos: End-of-text token id that ends generation (None: it does not).

    Raises:
        ValueError: a stop string that is empty or not a string.
    """

    def __init__(self, tokenizer: Any, stop: str | Sequence[str] | None, stop_at_eos: bool):
        """Keep ``stop`` as a list of strings, and the EOS id when ``stop_at_eos``."""
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if any(not isinstance(s, str) or s == "" for s in stops):
            raise ValueError(f"stop={stop!r}; stop strings must be non-empty strings")
        self.stops, self.tokenizer = stops, tokenizer
        self.eos: int | None = tokenizer.eos_token_id if stop_at_eos else None

    def check(self, new_ids: list[int]) -> str | None:
        """Why generation is over after ``new_ids`` (``"eos"`` or ``"stop"``), or None to go on."""
        if self.eos is not None and new_ids and new_ids[-1] == self.eos:
            return "eos"
        if self.stops and any(s in self._decode(new_ids) for s in self.stops):
            return "stop"
        return None

    def text(self, new_ids: list[int]) -> str:
        """The text of ``new_ids``, cut before the first stop string and without the end-of-text token."""
        text = self._decode(new_ids)
        cuts = [text.find(s) for s in self.stops if s in text]
        return text[: min(cuts)] if cuts else text

    def _decode(self, new_ids: list[int]) -> str:
        if self.eos is not None and new_ids and new_ids[-1] == self.eos:
            new_ids = new_ids[:-1]
        return self.tokenizer.decode(new_ids)


@holds_model
def generate(
    model: Any,
    prompt: Prompts,
    *,
    max_new_tokens: int = 20,
    temperature: float | int = 1.0,
    top_k: int | None = None,
    top_p: float | int | None = None,
    seed: int | None = None,
    stop: str | Sequence[str] | None = None,
    stop_at_eos: bool = True,
    use_cache: bool = True,
) -> Generation:
    """Sample a continuation of one prompt, token by token, reusing keys and values through a KV cache.

    Each step samples from :func:`interp.generation.sampling_probs` of the last logits with a CPU ``torch.Generator``
    seeded by ``seed``, so a seeded run is reproducible. ``temperature=0`` or ``top_k=1`` is greedy.

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`.
        prompt: One prompt (text or token ids).
        max_new_tokens: Most tokens to generate (>= 1).
        temperature: Softmax temperature; 0 is greedy.
        top_k: Top-k filter (None: off).
        top_p: Top-p (nucleus) filter (None: off).
        seed: Seed of the sampling generator (None: drawn from torch's global RNG and recorded).
        stop: A string or strings; generation ends once the generated text contains one.
        stop_at_eos: End when the tokenizer's end-of-text token is generated.
        use_cache: Reuse keys/values (one new position per step); ``False`` reruns the whole sequence
            each step, for checking and timing.

    Returns:
        A :class:`Generation`.

    Raises:
        ValueError: an empty prompt, several prompts, ``max_new_tokens < 1``, bad sampling parameters, or
            non-finite logits at some step.

    Examples:
        >>> out = generate(  # doctest: +SKIP
        ...     model, "The Eiffel Tower is in the city of", max_new_tokens=5, temperature=0
        ... )
        >>> out.text  # doctest: +SKIP
    """
    check_sampling(temperature, top_k, top_p)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens!r}; it must be an integer >= 1")
    stopper = Stopper(model.tokenizer, stop, stop_at_eos)
    generator, seed = make_generator(seed)
    tokens = single_prompt_tokens(model, prompt)
    n_ctx = model_info(model).n_ctx
    start = time.perf_counter()
    new_ids: list[int] = []
    probs_taken: list[float] = []
    reason, passes, cache = "max_new_tokens", 1, None
    if use_cache:
        logits, cache = kv_cache.prefill(model, tokens)
    else:
        logits = _forward(model, tokens)
    for step in range(max_new_tokens):
        if tokens.shape[1] >= n_ctx:
            reason = "n_ctx"
            break
        check_finite_logits(logits[0, -1], f"generation step {step} (position {tokens.shape[1] - 1})")
        probs = sampling_probs(logits[0, -1], temperature, top_k, top_p)
        token = sample(probs, generator)
        new_ids.append(token)
        probs_taken.append(float(probs[token]))
        tokens = torch.cat([tokens, tokens.new_tensor([[token]])], dim=1)
        stopped = stopper.check(new_ids)
        if stopped:
            reason = stopped
            break
        if step < max_new_tokens - 1 and tokens.shape[1] < n_ctx:
            logits = kv_cache.extend(model, tokens[:, -1:], cache) if use_cache else _forward(model, tokens)
            passes += 1
    return Generation(
        prompt_tokens=tokens[0, : tokens.shape[1] - len(new_ids)].cpu(),
        new_tokens=torch.tensor(new_ids, dtype=torch.long),
        token_probs=probs_taken,
        text=stopper.text(new_ids),
        stop_reason=reason,
        seed=seed,
        seconds=time.perf_counter() - start,
        forward_passes=passes,
        tokenizer=model.tokenizer,
    )


def _forward(model: Any, tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, "batch pos vocab"]:
    with torch.no_grad():
        return model(tokens, return_type="logits")
