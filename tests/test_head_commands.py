"""``interp induction``, ``interp heads`` and ``interp lens`` through typer's CliRunner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from interp.cli import app

runner = CliRunner()


def test_induction_json_is_ranked(tiny_gpt2_dir):
    result = runner.invoke(
        app, ["induction", "--model", str(tiny_gpt2_dir), "--seq-len", "6", "--batch", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    heads = json.loads(result.stdout)["heads"]
    assert len(heads) == 8 and set(heads[0]) == {"layer", "head", "induction", "copying", "ablation"}
    assert [h["induction"] for h in heads] == sorted((h["induction"] for h in heads), reverse=True)


def test_induction_bad_seq_len_is_a_clean_error(tiny_gpt2_dir):
    result = runner.invoke(app, ["induction", "--model", str(tiny_gpt2_dir), "--seq-len", "40"])
    assert result.exit_code == 2 and "seq_len=40" in result.output and "Traceback" not in result.output


def test_heads_json_has_a_label_per_head(tiny_llama_dir):
    result = runner.invoke(app, ["heads", "--model", str(tiny_llama_dir), "-p", "The cat sat on the mat", "--json"])
    assert result.exit_code == 0, result.output
    heads = json.loads(result.stdout)["heads"]
    assert len(heads) == 8 and all(isinstance(h["label"], str) for h in heads)


def test_lens_readable_and_json(tiny_gpt2_dir):
    args = ["lens", "--model", str(tiny_gpt2_dir), "--prompt", "The cat sat on", "--target", " the"]
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    assert "embed" in text.stdout and "top-1 from layer" in text.stdout
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert [row["layer"] for row in data["layers"]] == ["embed", "0", "1"]
    assert data["final_norm_applied"] and {"target_prob", "target_rank", "kl_to_final", "top"} <= set(data["layers"][0])
    missing = runner.invoke(app, [*args, "--tuned"])
    assert missing.exit_code == 2 and "no tuned lens" in missing.output
