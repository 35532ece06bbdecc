"""Plain views of one layer on one prompt: its activations at any site, and its attention patterns."""

from interp.views.activations import ACTIVATION_SITES, ActivationView, PositionSummary, activation_view
from interp.views.attention import AttentionView, attention_view

__all__ = [
    "ACTIVATION_SITES",
    "ActivationView",
    "AttentionView",
    "PositionSummary",
    "activation_view",
    "attention_view",
]
