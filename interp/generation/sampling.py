"""The sampling pipeline: temperature, top-k and top-p filters on a next-token distribution, and seeded draws.

The steps, in the order Hugging Face applies its logits warpers:

1. ``logits``: the raw softmax of the model's logits;
2. ``temperature``: ``softmax(logits / T)``; ``T = 0`` is greedy (all mass on the argmax);
3. ``top_k``: keep the ``k`` most probable tokens, renormalise;
4. ``top_p``: keep the smallest set of most probable tokens whose mass reaches ``p`` (the top token
   always stays), renormalise.

:func:`sampling_probs` is the one implementation; :func:`interp.generation.next_token` shows every step,
:func:`interp.generation.generate` samples from the last, and :func:`interp.generation.speculative_generate`
preserves it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float

STEPS = ("logits", "temperature", "top_k", "top_p")
"""Names of the pipeline steps, in order."""


def check_sampling(temperature: float | int, top_k: int | None, top_p: float | int | None) -> None:
    """Validate sampling parameters, naming the bad value and the valid range.

    Raises:
        ValueError: ``temperature`` negative or not finite, ``top_k < 1``, ``top_p`` outside ``(0, 1]``.

    Examples:
        >>> check_sampling(0.7, 40, 0.9)
        >>> check_sampling(1.0, 0, None)
        Traceback (most recent call last):
        ...
        ValueError: top_k=0; top_k must be an integer >= 1 (or None for no top-k filter)
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature):
        raise ValueError(f"temperature={temperature!r}; temperature must be a finite number >= 0 (0 = greedy)")
    if temperature < 0:
        raise ValueError(f"temperature={temperature!r}; temperature must be >= 0 (0 = greedy)")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k={top_k!r}; top_k must be an integer >= 1 (or None for no top-k filter)")
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1
    ):
        raise ValueError(f"top_p={top_p!r}; top_p must be in (0, 1] (or None for no top-p filter)")


def pipeline(
    logits: Float[torch.Tensor, "*batch vocab"],
    temperature: float | int = 1.0,
    top_k: int | None = None,
    top_p: float | int | None = None,
) -> list[tuple[Float[torch.Tensor, "*batch vocab"], Bool[torch.Tensor, "*batch vocab"]]]:
    """Apply the four steps to ``logits``, returning ``(probs, kept)`` after each, in :data:`STEPS` order.

    A step that is switched off (``top_k=None``...) repeats the previous step's distribution.

    Raises:
        ValueError: bad sampling parameters (see :func:`check_sampling`).
    """
    check_sampling(temperature, top_k, top_p)
    logits = logits.float()
    everything = torch.ones_like(logits, dtype=torch.bool)
    steps = [(logits.softmax(-1), everything)]
    if temperature == 0:
        greedy = torch.zeros_like(everything).scatter_(-1, logits.argmax(-1, keepdim=True), True)
        steps.append((greedy.float(), greedy))
    else:
        steps.append(((logits / temperature).softmax(-1), everything))
    probs, kept = steps[-1]
    if top_k is not None:
        # Rank by the tempered probabilities (the same order as the logits when T > 0; the argmax first at T = 0).
        top = probs.topk(min(top_k, probs.shape[-1]), dim=-1).indices
        kept = kept & torch.zeros_like(kept).scatter_(-1, top, True)
        probs = _renormalise(probs, kept)
    steps.append((probs, kept))
    if top_p is not None:
        order = probs.argsort(dim=-1, descending=True, stable=True)
        sorted_probs = probs.gather(-1, order)
        mass_before = sorted_probs.cumsum(-1) - sorted_probs
        keep_sorted = mass_before < top_p
        keep_sorted[..., 0] = True
        kept = kept & torch.zeros_like(kept).scatter_(-1, order, keep_sorted)
        probs = _renormalise(probs, kept)
    steps.append((probs, kept))
    return steps


def sampling_probs(
    logits: Float[torch.Tensor, "*batch vocab"],
    temperature: float | int = 1.0,
    top_k: int | None = None,
    top_p: float | int | None = None,
) -> Float[torch.Tensor, "*batch vocab"]:
    """The distribution tokens are sampled from: the last step of :func:`pipeline`.

    Examples:
        >>> logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
        >>> sampling_probs(logits, top_k=2).gt(0).tolist()
        [True, True, False, False]
        >>> sampling_probs(logits, temperature=0).tolist()
        [1.0, 0.0, 0.0, 0.0]
    """
    return pipeline(logits, temperature, top_k, top_p)[-1][0]


@dataclass
class StepEffect:
    """What one step of the pipeline did to the distribution before it."""

    step: str
    """Step name, from :data:`STEPS`."""
    kept: int
    """Tokens still allowed after the step."""
    removed: int
    """Tokens the step removed (allowed before it, not after)."""
    removed_mass: float
    """Probability the previous step's distribution gave the removed tokens (0 for the first step)."""
    top_prob: float
    """Probability of the most probable token after the step."""
    entropy: float
    """Entropy of the distribution after the step, in nats (``exp`` of it: the effective number of choices)."""


def step_effects(
    probs: Sequence[Float[torch.Tensor, " vocab"]], kept: Sequence[Bool[torch.Tensor, " vocab"]]
) -> list[StepEffect]:
    """Summarise each step of :func:`pipeline`: tokens left, tokens and probability it cut, sharpness.

    Args:
        probs: One distribution per step of :data:`STEPS` (``pipeline(...)[i][0]``).
        kept: The allowed tokens after each step (``pipeline(...)[i][1]``).

    Examples:
        >>> steps = pipeline(torch.tensor([2.0, 1.0, 0.0, -1.0]), top_k=2)
        >>> [(e.step, e.kept, e.removed) for e in step_effects([p for p, _ in steps], [k for _, k in steps])]
        [('logits', 4, 0), ('temperature', 4, 0), ('top_k', 2, 2), ('top_p', 2, 0)]
    """
    effects = []
    for i, (name, p, k) in enumerate(zip(STEPS, probs, kept, strict=True)):
        p = p.detach().double().cpu()
        gone = torch.zeros_like(k, dtype=torch.bool) if i == 0 else kept[i - 1].cpu() & ~k.cpu()
        before = p if i == 0 else probs[i - 1].detach().double().cpu()
        entropy = max(0.0, float(-(p[p > 0] * p[p > 0].log()).sum()))  # max: no -0.0 for a one-hot
        effects.append(StepEffect(step=name, kept=int(k.sum()), removed=int(gone.sum()),
                                  removed_mass=float(before[gone].sum()), top_prob=float(p.max()),
                                  entropy=float(entropy)))
    return effects


def _renormalise(probs: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    masked = probs * kept
    return masked / masked.sum(-1, keepdim=True)


def sample(probs: Float[torch.Tensor, " vocab"], generator: torch.Generator) -> int:
    """Draw one token id from ``probs`` with ``generator`` (on the CPU, so seeds agree across devices)."""
    return int(torch.multinomial(probs.detach().float().cpu(), 1, generator=generator))


def make_generator(seed: int | None) -> tuple[torch.Generator, int]:
    """A CPU generator seeded with ``seed``, or with a fresh seed drawn from torch's global RNG.

    Returns:
        ``(generator, seed)``, the seed recorded so that any run can be replayed.
    """
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed={seed!r}; seed must be an integer or None")
    return torch.Generator().manual_seed(seed), seed
