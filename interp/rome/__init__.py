"""ROME: rank-one edits of a stored fact, undone bit-exactly, and their CounterFact-style evaluation.

config.py holds the hyperparameters; keys.py reads the key k* and solves u = C^-1 k*; value.py optimises v*;
layers.py chooses the block; apply.py builds, applies and undoes the Edit; counterfact.py scores edits (baseline.py:
the fine-tuning baseline).
"""

from interp.rome.apply import Edit, check_request, edit, edited, load_edit
from interp.rome.config import KEY_CONTEXTS, KL_PROMPT, RomeConfig
from interp.rome.counterfact import EditCase, EditEvalResult, evaluate, make_cases
from interp.rome.keys import fingerprint, key_stats, prefixes, projection, solve_stats, stats_path
from interp.rome.layers import choose_layer, layer_profile, traced_scores

__all__ = [
    "Edit",
    "EditCase",
    "EditEvalResult",
    "KEY_CONTEXTS",
    "KL_PROMPT",
    "RomeConfig",
    "check_request",
    "choose_layer",
    "edit",
    "edited",
    "evaluate",
    "fingerprint",
    "key_stats",
    "layer_profile",
    "load_edit",
    "make_cases",
    "prefixes",
    "projection",
    "solve_stats",
    "stats_path",
    "traced_scores",
]
