"""The ``interp`` command line, driven through typer's CliRunner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from interp import reference
from interp.cli import app

runner = CliRunner()


def test_models_lists_embedded_names():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for name in reference.names():
        assert name in result.stdout


def test_models_json():
    result = runner.invoke(app, ["models", "--json"])
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == reference.names()
    assert all(isinstance(r["present"], bool) for r in rows)


def test_capture_json(tiny_llama_dir):
    args = ["capture", "--model", str(tiny_llama_dir), "--prompt", "The cat sat", "--names", "resid_pre,pattern",
            "--names", "neurons", "--device", "cpu", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    n = len(data["tokens"])
    assert data["str_tokens"][0] == "<|endoftext|>" and len(data["str_tokens"]) == n
    assert data["hooks"]["blocks.0.hook_resid_pre"]["shape"] == [1, n, 32]
    assert len(data["hooks"]["blocks.0.hook_resid_pre"]["norm"]) == n
    assert len(data["hooks"]["blocks.1.attn.hook_pattern"]["norm"]) == n
    assert data["hooks"]["blocks.1.mlp.hook_post"]["shape"] == [1, n, 64]
    assert len(data["top_next"]) == 5


def test_capture_text(tiny_gpt2_dir):
    result = runner.invoke(app, ["capture", "-m", str(tiny_gpt2_dir), "-p", "The cat", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "blocks.1.hook_resid_post" in result.stdout and "next token:" in result.stdout


def test_capture_errors_are_short(tiny_gpt2_dir, tmp_path):
    result = runner.invoke(app, ["capture", "-m", str(tmp_path / "missing"), "--json"])
    assert result.exit_code == 2
    assert "error:" in result.output and "does not exist" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["capture", "-m", str(tiny_gpt2_dir), "--device", "cpu", "-n", "bogus"])
    assert result.exit_code == 2 and "names='bogus'" in result.output
