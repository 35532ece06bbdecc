"""Print the architecture matrix recorded by tests/test_architectures.py as a markdown table.

Usage::

    python scripts/architecture_table.py [--matrix tests/artifacts/architectures.json] [--write README.md]

Rows are model families, columns analyses: ✓ (passed its check against an independent computation),
"refused: why" (a clear ValueError/NotImplementedError naming the architecture), ✗ (failed), or · (not run).
The dashboard's pages are one column (✓ when every page rendered). With ``--write FILE`` the table replaces
what lies between the ``<!-- architecture-table:start -->`` and ``<!-- architecture-table:end -->`` lines of
FILE (written atomically); without it the table is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from interp.core.files import atomic_write_text

START, END = "<!-- architecture-table:start -->", "<!-- architecture-table:end -->"
COLUMNS = {
    "load": "load", "logits_vs_hf": "logits = HF", "capture_all": "capture all", "head_census": "census",
    "induction": "induction", "logit_lens": "logit lens", "tuned_lens": "tuned lens", "causal_trace": "trace",
    "rome": "ROME", "generation_kv_cache": "KV cache", "speculative": "speculative", "journey": "journey",
    "probes": "probes", "dashboard": "dashboard",
}
"""Recorded analysis name -> column heading, in table order."""
FAMILY_NAMES = {
    "gpt2": "GPT-2", "gpt_neox": "GPT-NeoX (Pythia)", "gptj": "GPT-J", "opt": "OPT", "llama": "Llama 3",
    "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3", "gemma2": "Gemma 2", "gemma3": "Gemma 3",
    "phi3": "Phi-3", "mixtral": "Mixtral (MoE)", "qwen2_moe": "Qwen2-MoE", "qwen3_moe": "Qwen3-MoE",
}
DEFAULT_MATRIX = Path(__file__).resolve().parents[1] / "tests" / "artifacts" / "architectures.json"


def mark(outcome: dict | None) -> str:
    """One cell's text: ✓, ✗, refused (short reason) or · for not run."""
    if outcome is None:
        return "·"
    if outcome["status"] == "pass":
        return "✓"
    if outcome["status"] == "refused":
        return f"refused ({_short(outcome['message'])})"
    return "✗"


def _short(message: str, limit: int = 48) -> str:
    """The reason of a refusal: its first clause after the last colon, cut at a word."""
    text = message.split(";")[0].split(":")[-1].strip().replace("|", "/").removeprefix("its ")
    return text if len(text) <= limit else text[: limit].rsplit(" ", 1)[0] + "…"


def dashboard(row: dict) -> dict | None:
    """The pages' outcomes folded into one: pass when every recorded page passed."""
    pages = {k: v for k, v in row.items() if k.startswith("dashboard:")}
    if not pages:
        return None
    failed = sorted(k.split(":", 1)[1] for k, v in pages.items() if v["status"] == "fail")
    return {"status": "fail" if failed else "pass", "message": ", ".join(failed)}


def table(data: dict) -> str:
    """The markdown table of a recorded matrix, and the failures listed under it."""
    cells = data.get("cells", {})
    lines = ["| architecture | " + " | ".join(COLUMNS.values()) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    failures = []
    for family in data.get("families", list(cells)):
        row = cells.get(family, {})
        marks = []
        for key in COLUMNS:
            outcome = dashboard(row) if key == "dashboard" else row.get(key)
            marks.append(mark(outcome))
            if outcome is not None and outcome["status"] == "fail":
                failures.append(f"- {FAMILY_NAMES.get(family, family)}, {COLUMNS[key]}: {outcome['message']}")
        lines.append(f"| {FAMILY_NAMES.get(family, family)} (`{family}`) | " + " | ".join(marks) + " |")
    versions = data.get("versions", {})
    if versions:
        lines += ["", "Recorded with " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + "."]
    if failures:
        lines += ["", "Failures:", "", *failures]
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """``text`` with the lines between the start and end markers replaced by ``block``.

    Raises:
        ValueError: the markers are missing, repeated, or out of order.
    """
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"expected one {START!r} line followed by one {END!r} line")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", type=Path, default=DEFAULT_MATRIX, help="JSON written by the test run")
    parser.add_argument("--write", type=Path, help="file whose marked block to replace (e.g. README.md)")
    args = parser.parse_args(argv)
    if not args.matrix.is_file():
        print(f"{args.matrix} does not exist: run pytest tests/test_architectures.py first", file=sys.stderr)
        return 1
    block = table(json.loads(args.matrix.read_text()))
    if args.write is None:
        print(block)
        return 0
    atomic_write_text(args.write, replace_block(args.write.read_text(), block))
    print(f"wrote the architecture table into {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
