"""The bottom layer: loading, model shapes, tokens, hook names, and the one capture path every analysis runs through."""

from interp.core.capturing import ALIASES, Capture, NotCapturedError, capture, expand_kv_heads, resolve_names
from interp.core.loading import check_checkpoint_dir, load
from interp.core.model_info import ModelInfo, check_head, check_layer, model_info
from interp.core.tokens import Prompts, Tokenized, str_tokens, to_single_token, tokenize

__all__ = [
    "ALIASES",
    "Capture",
    "ModelInfo",
    "NotCapturedError",
    "Prompts",
    "Tokenized",
    "capture",
    "check_checkpoint_dir",
    "check_head",
    "check_layer",
    "expand_kv_heads",
    "load",
    "model_info",
    "resolve_names",
    "str_tokens",
    "to_single_token",
    "tokenize",
]
