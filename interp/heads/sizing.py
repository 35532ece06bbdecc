"""Default work sized for the model: budgets in floating-point operations and bytes, not in ``n_ctx x n_heads``.

An analysis whose default batch is "16 sequences filling the context", ablated once per head, costs
``n_layers * n_heads * 16 * n_ctx`` token-forwards: a few seconds on a 6-layer, 64-token model, and hours on a
124M-parameter, 1024-token one. The defaults of :func:`interp.head_census`, :func:`interp.find_induction_heads` and
ROME's key statistics (:func:`interp.rome.key_stats`) are instead capped by a budget of floating-point operations
(:data:`ABLATION_FLOPS`, :data:`STATS_FLOPS`), estimated as :func:`token_flops` per token, and every forward pass
they run is split into chunks of at most :data:`PASS_BYTES` of activations (:func:`rows_per_pass`). The budgets
are set so that a GPT-2-small-shaped model (124M parameters, 1024 tokens) stays within a few minutes and a few GB on
a 2-core laptop, and so that the 6-layer reference models keep their full defaults (their budgets are tens of times
larger than their work).

Examples:
    >>> from interp.core.toy_models import load_toy
    >>> model = load_toy()
    >>> token_flops(model) > 0, rows_per_pass(model, 32) >= 1
    (True, True)
"""

from __future__ import annotations

from typing import Any

from interp.core.model_info import model_info

ABLATION_FLOPS = 8e12
"""Floating-point operations the default head ablations of one analysis may spend: ``n_layers * n_heads`` passes
over the ablated tokens. GPT-2 small (0.29 GFLOP per token as estimated, 144 heads) gets 191 tokens; ref-gpt2 (7.8
MFLOP per token, 36 heads) gets 28,000, far more than its default 1,024."""

PATTERN_FLOPS = 1e12
"""Floating-point operations the head census' default pattern batch may cost (16 rows in one forward): 3,450 tokens
on GPT-2 small (rows of 215 tokens), 127,000 on ref-gpt2 (its default rows of 64 tokens stay)."""

STATS_FLOPS = 2e12
"""Floating-point operations ROME's default key statistics may spend (forward passes over reference-world text):
6,900 tokens on GPT-2 small (7 sequences of 1024), 255,000 on ref-gpt2 (whose default is 64,000)."""

PASS_BYTES = 2**29
"""Activation memory one chunk of a batched forward pass may take (512 MiB, estimated by :func:`rows_per_pass`)."""


def token_flops(model: Any) -> float:
    """Forward floating-point operations per token: twice the blocks' weights plus the unembedding.

    Attention's term that grows with the context is left out; at the default lengths it is a small share. The count
    is the bridge's parameters, which hold split copies of fused projections (GPT-2's ``c_attn``: +17% on GPT-2
    small), and every expert of a mixture-of-experts block counts: over-estimates, so budgets err on the cheap
    side.
    """
    info = model_info(model)
    weights = sum(p.numel() for p in model.blocks.parameters())
    return 2.0 * (weights + info.d_model * info.d_vocab)


def budget_tokens(model: Any, flops: float, passes: int = 1) -> int:
    """How many tokens ``passes`` forward passes can cover within ``flops`` (at least 1)."""
    return max(1, int(flops / (max(1, passes) * token_flops(model))))


def rows_per_pass(model: Any, pos: int, budget: int = PASS_BYTES) -> int:
    """Rows of ``pos`` tokens one forward pass may run within ``budget`` bytes of activations (at least 1).

    A row costs, in float32: the logits and their log-softmax (``2 * d_vocab`` per token), one layer's attention
    scores, softmax and pattern (``3 * n_heads * pos`` per token), and the MLP and residual activations
    (``4 * d_mlp + 8 * d_model`` per token).
    """
    info = model_info(model)
    per_token = 2 * info.d_vocab + 3 * info.n_heads * pos + 4 * info.d_mlp + 8 * info.d_model
    return max(1, budget // (4 * pos * per_token))
