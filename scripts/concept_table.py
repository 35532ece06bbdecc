"""Copy the concept-recovery summary of each reference model's CARD.md into the README.

Usage::

    python scripts/concept_table.py [--write README.md]

The cards' "Concept recovery" sections are measured by ``interp world card --measure --sections concepts``; this
script only gathers their summary tables (share of planted concepts whose best detector keeps held-out F1 >= 0.8:
SAE feature, MLP neuron, random direction) into one table, so the README never holds a number typed by hand. With
``--write FILE`` the table replaces what lies between the ``<!-- concept-table:start -->`` and
``<!-- concept-table:end -->`` lines of FILE (written atomically); without it the table is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interp import reference
from interp.core.files import atomic_write_text

START, END = "<!-- concept-table:start -->", "<!-- concept-table:end -->"
HEADER = "| concepts | n | SAE feature | MLP neuron | random direction | mean SAE F1 |"


def summary_rows(card: str) -> list[str]:
    """The rows of a card's concept-recovery summary table (after its header and rule)."""
    section = card.split("\n## Concept recovery\n", 1)
    if len(section) < 2:
        raise ValueError("the card has no '## Concept recovery' section; run interp world card --measure")
    lines = section[1].split("\n## ", 1)[0].splitlines()
    start = lines.index(HEADER) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def table() -> str:
    """One markdown table: the summary rows of every reference model, the model named in the first column."""
    out = ["| model " + HEADER, "|---" + "|---" * 6 + "|"]
    for name in reference.names():
        card = (Path(reference.path(name)) / "CARD.md").read_text()
        out += [f"| {name} {row}" for row in summary_rows(card)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Print the table, or write it into ``--write FILE`` between the markers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="file whose marked block to replace")
    args = parser.parse_args(argv)
    block = table()
    if args.write is None:
        print(block)
        return 0
    text = args.write.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{args.write} has no {START} ... {END} block")
    head, rest = text.split(START, 1)
    atomic_write_text(args.write, head + START + "\n" + block + "\n" + END + rest.split(END, 1)[1])
    print(f"wrote the concept table into {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
