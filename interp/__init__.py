"""interp: a mechanistic-interpretability toolkit on TransformerLens' ``TransformerBridge``.

Load a model with :func:`load`, run it once with :func:`capture`, and read activations from the
returned :class:`Capture`.
"""

from interp import reference
from interp.activation_view import ACTIVATION_SITES, ActivationView, PositionSummary, activation_view
from interp.attention_view import AttentionView, attention_view
from interp.capture import ALIASES, Capture, NotCapturedError, capture, expand_kv_heads, resolve_names
from interp.head_knockout import HeadKnockout, knock_out_head
from interp.heads import HeadCensus, head_census
from interp.induction import InductionReport, find_induction_heads
from interp.lens import LensResult, logit_lens
from interp.loading import check_checkpoint_dir, load
from interp.model_info import ModelInfo, check_head, check_layer, model_info
from interp.tokens import Tokenized, str_tokens, to_single_token, tokenize
from interp.tuned_lens import TunedLens

__all__ = [
    "ACTIVATION_SITES",
    "ALIASES",
    "ActivationView",
    "AttentionView",
    "Capture",
    "HeadCensus",
    "HeadKnockout",
    "InductionReport",
    "LensResult",
    "ModelInfo",
    "NotCapturedError",
    "PositionSummary",
    "Tokenized",
    "TunedLens",
    "activation_view",
    "attention_view",
    "capture",
    "check_checkpoint_dir",
    "check_head",
    "check_layer",
    "expand_kv_heads",
    "find_induction_heads",
    "head_census",
    "knock_out_head",
    "load",
    "logit_lens",
    "model_info",
    "reference",
    "resolve_names",
    "str_tokens",
    "to_single_token",
    "tokenize",
]
