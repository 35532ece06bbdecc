"""How the card's measured sections write tables, numbers, heads and model names.

Every section of CARD.md formats its cells with these helpers, so the tables share one style: percentages with
``%``, decimals without the leading zero (``.75``), heads as ``L{layer}H{head}``, and "n/a" for NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interp.reference.registry import CHECKPOINTS

Section = tuple[str, dict[str, Any]]
"""``(markdown_body, numbers)`` returned by every section function."""


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with ``header`` and one line per row of cells.

    Examples:
        >>> print(markdown_table(["a", "b"], [["1", "2"]]))
        | a | b |
        |---|---|
        | 1 | 2 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def head_label(layer: int, head: int) -> str:
    """``L{layer}H{head}``, how the card names a head."""
    return f"L{layer}H{head}"


def at_least(value: float, threshold: float) -> bool | None:
    """Whether ``value`` reaches ``threshold``; ``None`` when it was not measured (NaN)."""
    return None if math.isnan(value) else value >= threshold


def pct(x: float, digits: int = 0) -> str:
    """``x`` as a percentage with ``digits`` decimals, or "n/a" for NaN.

    Examples:
        >>> pct(0.915, 1), pct(float("nan"))
        ('91.5%', 'n/a')
    """
    return "n/a" if math.isnan(x) else f"{x:.{digits}%}"


def kl_cell(x: float) -> str:
    """A KL divergence in nats: two decimals from 0.1, two significant digits below, ``0`` when it rounds away."""
    # The last lens layer is the model's output: its KL is 0 up to rounding, shown as 0.
    return "0" if abs(x) < 5e-4 else f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.2g}"


def dec(x: float, digits: int, zero: str) -> str:
    """``0.75`` -> ``.75``, ``-0.001`` -> ``-.001``, a value that rounds to zero -> ``zero`` (the tables' style).

    Examples:
        >>> dec(0.754, 2, "0"), dec(-0.001, 3, ".000"), dec(0.0001, 2, "0")
        ('.75', '-.001', '0')
    """
    if math.isnan(x):
        return "n/a"
    text = f"{x:.{digits}f}"
    if float(text) == 0:
        return zero
    sign, digits_text = ("-", text[1:]) if text.startswith("-") else ("", text)
    return sign + (digits_text[1:] if digits_text.startswith("0.") else digits_text)


def dec2(x: float) -> str:
    """:func:`dec` with two decimals, ``0`` for zero (indirect effects)."""
    return dec(x, 2, "0")


def dec3(x: float) -> str:
    """:func:`dec` with three decimals, ``.000`` for zero (probe accuracies)."""
    return dec(x, 3, ".000")


def model_arg(model: Any) -> str:
    """How the CLI names the model: the embedded name for shipped checkpoints, else the path."""
    folder = Path(str(model.cfg.model_name))
    return folder.name if folder.parent == CHECKPOINTS else str(folder)
