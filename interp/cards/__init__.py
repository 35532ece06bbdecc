"""Model cards: score a model on the reference world, measure every analysis on it, and write CARD.md."""

from interp.cards.card import write_card
from interp.cards.measure import SECTIONS, measure_all
from interp.cards.scoring import WorldScores, evaluate
from interp.cards.targets import TARGETS

__all__ = [
    "SECTIONS",
    "TARGETS",
    "WorldScores",
    "evaluate",
    "measure_all",
    "write_card",
]
