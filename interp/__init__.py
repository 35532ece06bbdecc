"""interp: a mechanistic-interpretability toolkit on TransformerLens' ``TransformerBridge``.

Load a model with :func:`load`, run it once with :func:`capture`, and read activations from the
returned :class:`Capture`.
"""

from interp import journey, reference, rome
from interp.activation_view import ACTIVATION_SITES, ActivationView, PositionSummary, activation_view
from interp.attention_view import AttentionView, attention_view
from interp.capture import ALIASES, Capture, NotCapturedError, capture, expand_kv_heads, resolve_names
from interp.generate import Generation, NextToken, generate, next_token
from interp.head_knockout import HeadKnockout, knock_out_head
from interp.heads import HeadCensus, head_census
from interp.induction import InductionReport, find_induction_heads
from interp.journey.embeddings import analogy
from interp.lens import LensResult, logit_lens
from interp.loading import check_checkpoint_dir, load
from interp.model_info import ModelInfo, check_head, check_layer, model_info
from interp.speculative import SpeculativeGeneration, speculative_generate
from interp.tokens import Tokenized, str_tokens, to_single_token, tokenize
from interp.tracing import TraceResult, causal_trace
from interp.tuned_lens import TunedLens

__all__ = [
    "ACTIVATION_SITES",
    "ALIASES",
    "ActivationView",
    "AttentionView",
    "Capture",
    "Generation",
    "HeadCensus",
    "HeadKnockout",
    "InductionReport",
    "LensResult",
    "ModelInfo",
    "NextToken",
    "NotCapturedError",
    "PositionSummary",
    "SpeculativeGeneration",
    "Tokenized",
    "TraceResult",
    "TunedLens",
    "activation_view",
    "analogy",
    "attention_view",
    "capture",
    "causal_trace",
    "check_checkpoint_dir",
    "check_head",
    "check_layer",
    "expand_kv_heads",
    "find_induction_heads",
    "generate",
    "head_census",
    "journey",
    "knock_out_head",
    "load",
    "logit_lens",
    "model_info",
    "next_token",
    "reference",
    "resolve_names",
    "rome",
    "speculative_generate",
    "str_tokens",
    "to_single_token",
    "tokenize",
]
