"""ROME's defaults sized for the model: the value optimisation's steps and prefixes, and the layer choice's traces.

An edit's work beyond its key statistics (sized by :data:`interp.heads.sizing.STATS_FLOPS`) is

* the **value optimisation**: ``steps`` forward+backward passes over ``n_prefixes + 2`` rows (the bare prompt, each
  prefixed copy, the KL prompt) of about ``prefix_tokens`` + the prompt's tokens. It is capped by
  :data:`VALUE_FLOPS` (:func:`value_plan`): fewer steps first, down to :data:`STEPS`' floor of 20 (ROME's value for
  GPT-2 XL and GPT-J: larger models reach the target in fewer steps), then fewer prefixes, down to 5 (MEMIT's count
  on GPT-J). Early stopping still ends it sooner once the target is reached;
* the **layer choice** (``layer=None``): on a model without a world, one causal trace of the prompt,
  ``n_layers x (samples + 1)`` rows, with ``samples`` capped by :data:`TRACE_FLOPS` (:func:`trace_samples`, floor
  3: every layer sees the same noise draws, so the comparison between layers is paired); on a model with a world,
  a profile over world facts whose count is capped by the same budget (:func:`profile_facts`, floor 5).

Each budget is tens of times what the 6-layer reference models spend, so they keep the defaults they were tuned with
(100 steps, 10 prefixes of 8 tokens, 10 trace samples, 20 facts), and a cost is estimated per token by
:func:`interp.heads.sizing.token_flops` (a forward+backward as :data:`FORWARD_BACKWARD` forwards). What the
defaults become (estimated costs of 0.29, 2.5 and 15 GFLOP per token; a 12-token prompt traced):

============  ==========  =========================  ==============
model         steps        prefixes (8 tokens each)  trace samples
============  ==========  =========================  ==============
ref-gpt2      100          10                        10
GPT-2 small   39           10                        10
Llama 1B      20           5                         3
Llama 8B      20           5                         3
============  ==========  =========================  ==============

Not sized, since their cost does not grow with the model beyond one forward's: the learning rate (ROME uses 0.5 from
GPT-2 medium to GPT-J 6B; Adam's step is per coordinate and the clamp bounds ``|delta|`` by the layer's own output),
the prefix length (8 tokens of a row's ~24), the single KL prompt, and the prefixes' generation (``n_prefixes``
sampled texts of ``prefix_tokens`` tokens, about ``n_prefixes * prefix_tokens**2 / 2`` token-forwards: less than
one optimisation step).

Examples:
    >>> value_plan(10**9, 8)  # a small model: the reference defaults
    (100, 10)
    >>> value_plan(1000, 8)  # a large one: the floors
    (20, 5)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from interp.core.model_info import model_info
from interp.heads.sizing import budget_tokens

VALUE_FLOPS = 1e13
"""Floating-point operations the default value optimisation may spend (steps x forward+backward of its batch):
39 steps on GPT-2 small, 20 steps over 5 prefixes (the floors) from about 1B parameters on; ref-gpt2 (7.9 MFLOP per
token) would fit about 1,500 steps of its 100. About two minutes on a quiet 2-core laptop."""

TRACE_FLOPS = 2e12
"""Floating-point operations the default layer choice may spend on causal traces: 10 samples on GPT-2 small, 3 on
Llama 1B and 8B; the reference models' 20-fact profiles cost about 4e11 (100 facts would fit)."""

FORWARD_BACKWARD = 3
"""Forward passes one forward+backward is counted as."""

NOMINAL_PROMPT_TOKENS = 16
"""Tokens of the prompt and its target that the value's budget assumes, so that the sized defaults depend on the
model only (``RomeConfig().sized(model)`` is the same for every request)."""

STEPS = (20, 100)
"""Fewest and most default optimisation steps."""
PREFIXES = (5, 10)
"""Fewest and most default prefixes."""
TRACE_SAMPLES = (3, 10)
"""Fewest and most default noise samples of the layer choice's trace."""
PROFILE_FACTS = (5, 20)
"""Fewest and most default world facts of the layer profile."""


def value_plan(
    tokens: int, prefix_tokens: int, steps: int | None = None, n_prefixes: int | None = None
) -> tuple[int, int]:
    """``(steps, n_prefixes)`` whose optimisation fits ``tokens`` token-passes (given values are kept).

    A step passes ``n_prefixes + 2`` rows of ``prefix_tokens + NOMINAL_PROMPT_TOKENS`` tokens. Steps are cut first
    (to at least ``STEPS[0]``), then prefixes (to at least ``PREFIXES[0]``); at the floors the plan may exceed
    ``tokens``.

    Args:
        tokens: Token-passes in the budget (``budget_tokens(model, VALUE_FLOPS, FORWARD_BACKWARD)``).
        prefix_tokens: Length of each prefix.
        steps: A fixed number of steps, or ``None`` to size it.
        n_prefixes: A fixed number of prefixes, or ``None`` to size it.
    """
    row = prefix_tokens + NOMINAL_PROMPT_TOKENS
    if steps is None:
        rows = (PREFIXES[1] if n_prefixes is None else n_prefixes) + 2
        steps = _clamp(tokens // (rows * row), STEPS)
    if n_prefixes is None:
        n_prefixes = _clamp(tokens // (max(1, steps) * row) - 2, PREFIXES)
    return steps, n_prefixes


def sized(model: Any, config: Any) -> Any:
    """``config`` with its ``None`` steps and prefix count sized for ``model`` by :func:`value_plan`."""
    if config.steps is not None and config.n_prefixes is not None:
        return config
    tokens = budget_tokens(model, VALUE_FLOPS, FORWARD_BACKWARD)
    steps, n_prefixes = value_plan(tokens, config.prefix_tokens, config.steps, config.n_prefixes)
    return dataclasses.replace(config, steps=steps, n_prefixes=n_prefixes)


def trace_samples(model: Any, prompt_tokens: int) -> int:
    """Noise samples of the layer choice's trace of one ``prompt_tokens``-token prompt: ``n_layers x (samples + 1)``
    rows within :data:`TRACE_FLOPS`, clamped to :data:`TRACE_SAMPLES`."""
    per_sample = model_info(model).n_layers * max(1, prompt_tokens)
    return _clamp(budget_tokens(model, TRACE_FLOPS) // per_sample - 1, TRACE_SAMPLES)


def profile_facts(model: Any, prompt_tokens: float, samples: int) -> int:
    """World facts the layer profile traces: each full trace is ``n_layers x samples`` batches of
    ``prompt_tokens`` rows of ``prompt_tokens`` tokens (plus a clean and a corrupted run), within
    :data:`TRACE_FLOPS`, clamped to :data:`PROFILE_FACTS`."""
    per_fact = model_info(model).n_layers * samples * (prompt_tokens + 2) * prompt_tokens
    return _clamp(int(budget_tokens(model, TRACE_FLOPS) // max(1.0, per_fact)), PROFILE_FACTS)


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return min(bounds[1], max(bounds[0], int(value)))
