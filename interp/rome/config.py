"""Hyperparameters of a ROME edit, and the fixed prompts and choices they refer to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from interp.rome.sizing import sized

KL_PROMPT = "{} is a"
"""Prompt whose next-token distribution the KL term keeps unchanged (ROME's essence prompt)."""


KEY_CONTEXTS = ("subject", "prompt", "both")
"""Valid :attr:`RomeConfig.key_context` values."""


@dataclass
class RomeConfig:
    """Hyperparameters of one ROME edit.

    Defaults were chosen on the dev split of reference-world facts (``interp.rome.counterfact.split_facts``) at layer 0
    of ``ref-gpt2`` and ``ref-llama``, by the largest worst-case margin over the efficacy, paraphrase and
    neighbourhood targets; the measurements are in ``docs/rome_tuning.md``. The fields whose cost grows with the
    model (``steps``, ``n_prefixes``, ``stats_tokens``) default to ``None``: sized for the model by budgets of
    floating-point operations that the reference models stay well inside (:mod:`interp.rome.sizing`).

    Examples:
        >>> from interp.core.toy_models import load_toy
        >>> config = RomeConfig().sized(load_toy())
        >>> config.steps, config.n_prefixes
        (100, 10)
    """

    n_prefixes: int | None = None
    """Prefixed copies of the prompt used besides the bare prompt, for the key and the value; ``None`` sizes it for
    the model (:meth:`sized`): 10 while the value optimisation fits ``interp.rome.sizing.VALUE_FLOPS`` at 20 steps
    (the reference models, GPT-2 small), down to 5 beyond (Llama 1B and 8B)."""
    prefix_tokens: int = 8
    """Length of each sampled prefix, in tokens (not sized: a few tokens of each row)."""
    prefix_sep: str = ". "
    """Text between a prefix and the prompt (ROME: ``"{prefix}. {prompt}"``)."""
    steps: int | None = None
    """Most Adam steps optimising the value; ``None`` sizes it for the model (:meth:`sized`): 100 on the reference
    models (which need that many), as many as ``interp.rome.sizing.VALUE_FLOPS`` allows beyond (39 on GPT-2 small),
    at least 20 (ROME's GPT-2 XL value; Llama 1B and 8B)."""
    lr: float = 0.5
    """Adam learning rate (not sized: ROME uses 0.5 from GPT-2 medium to GPT-J 6B)."""
    kl_factor: float = 0.0
    """Weight of KL(before || after) on ``"{subject} is a"`` (ROME's GPT-2 XL value: 0.0625; off, since it made no
    difference on the reference models)."""
    weight_decay: float = 0.0
    """Weight of ``|delta|^2 / |W k* + b|^2`` (ROME's GPT-2 XL value: 0.5; off, since the small models need no
    decay)."""
    clamp_norm: float = 6.0
    """Largest ``|delta|`` as a multiple of ``|W k* + b|`` (ROME's GPT-2 XL value: 4; 6 is the tightest clamp tried that
    kept dev efficacy on target for both reference models, and a looser one lets the edit reach the neighbours' keys
    too)."""
    early_stop: float = 0.01
    """Stop optimising once the target NLL (nats per token) is below this, on average and on the bare prompt
    (a higher threshold stops sooner and spares more neighbours; 0.01 still kept dev efficacy on target)."""
    stats_samples: int = 1000
    """Reference-world sequences (``n_ctx`` tokens each, at most 2048 on Llama 3: ``keys.stats_length``) for the key
    statistics ``C``; 0 uses the identity (``C = I``: the plain minimum-norm update, for models without suitable
    text)."""
    stats_tokens: int | None = None
    """Most tokens the key statistics read (whole sequences, rounded up); ``None`` sizes it for the model: what
    ``interp.heads.sizing.STATS_FLOPS`` of forward passes cover (7 x 1024 tokens on GPT-2 small; the reference
    models are not capped). ROME's own statistics used 100,000 Wikipedia samples: raise it for a large model with
    time to spare."""
    stats_ridge: float = 1e-3
    """``C + stats_ridge * mean(diag C) * I`` is inverted, so rarely-active neurons do not blow up."""
    seed: int = 0
    """Seed of the prefix sampler."""
    key_context: str = "subject"
    """Where the key ``k*`` is read, each behind every sampled prefix: ``"subject"``, the subject alone
    (``"{prefix}. {subject}"``); ``"prompt"``, the rewrite prompt (``"{prefix}. {prompt}"``, ROME's rule, which also
    carries the prompt's words before the subject); ``"both"``, the mean over the two sets. The value is always
    optimised on the prompts. The default spares the neighbours best: they share the prompt's words, not the
    subject."""

    def sized(self, model: Any) -> RomeConfig:
        """This config with ``steps`` and ``n_prefixes`` sized for ``model`` where they are ``None``
        (:func:`interp.rome.sizing.sized`); what :func:`interp.rome.edit` runs with."""
        return sized(model, self)
