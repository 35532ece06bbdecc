"""The README's measured tables are the generators' output, not hand edits."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_concept_table_is_the_cards_summary():
    script = _script("concept_table")
    readme = (ROOT / "README.md").read_text()
    block = readme.split(script.START, 1)[1].split(script.END, 1)[0].strip()
    assert block == script.table()
    assert "| ref-gpt2 | all | 75 |" in block and "| ref-llama | all | 75 |" in block
