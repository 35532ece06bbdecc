"""Activation patching and path patching: run a corrupted prompt, restore a clean activation, measure."""

from interp.patching.activation import SITES, ActivationPatching, activation_patching
from interp.patching.metrics import METRICS
from interp.patching.nodes import all_senders, parse_receiver, parse_sender
from interp.patching.path import PathPatching, path_patching

__all__ = [
    "ActivationPatching",
    "METRICS",
    "PathPatching",
    "SITES",
    "activation_patching",
    "all_senders",
    "parse_receiver",
    "parse_sender",
    "path_patching",
]
