"""Nothing lost: a process killed while it saves, damaged files, and output that must not be overwritten.

A killed ``interp world train`` leaves ``--out`` holding a complete checkpoint; each kind of file interp saves,
when truncated, gives a clear error naming it (or, for a cache, a warning and a recompute); existing output is
replaced only when asked.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import interp
import probes
from interp import rome
from interp.cards.card import write_card
from interp.cards.scoring import WorldScores
from interp.cli import app
from interp.core.files import atomic_dir, atomic_path, atomic_write_text, check_can_write
from interp.lens.tuned import TunedLens
from interp.reference import path as reference_path
from interp.reference.train import PRESETS, train

CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "world.json",
                    "training.json")


def cuts(path: Path) -> list[int]:
    """Lengths to truncate ``path`` to: empty, inside the header, half-way, one byte short."""
    size = path.stat().st_size
    return sorted({0, 5, 40, size // 2, size - 1})


def truncated(path: Path, length: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(length)


def assert_complete(folder: Path) -> dict:
    """``folder`` holds a whole checkpoint: every file parses and ``interp.load`` runs it; returns its log."""
    for name in CHECKPOINT_FILES:
        assert (folder / name).is_file(), name
    log = json.loads((folder / "training.json").read_text())
    json.loads((folder / "world.json").read_text())
    weights = load_file(folder / "model.safetensors")
    model = interp.load(folder, device="cpu")
    assert set(model.state_dict()) and all(torch.isfinite(w).all() for w in weights.values())
    logits = interp.capture(model, "the Eiffel Tower is located in", names=[]).last_logits
    assert torch.isfinite(logits).all()
    return log


# ---------------------------------------------------------------- the helpers themselves


def test_atomic_writes_leave_the_old_file_whole_on_error(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]  # no temporary left behind
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["out.txt"]


def test_atomic_dir_swaps_whole_folders_and_sweeps_dead_temporaries(tmp_path):
    out = tmp_path / "ckpt"
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError("killed mid-save")
    assert (out / "a").read_text() == "1" and sorted(os.listdir(tmp_path)) == ["ckpt"]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".ckpt.tmp-{dead.stdout.strip()}-0000"  # what a killed process leaves
    stale.mkdir()
    (stale / "a").write_text("half")
    with atomic_dir(out) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(os.listdir(out)) == ["b"] and sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_check_can_write_names_the_path_and_the_flag(tmp_path):
    check_can_write(tmp_path / "new", False)
    check_can_write(tmp_path, False)  # an empty folder is fine
    (tmp_path / "x").write_text("x")
    with pytest.raises(FileExistsError, match=rf"{tmp_path}.*--overwrite"):
        check_can_write(tmp_path, False, "--overwrite")
    with pytest.raises(FileExistsError, match=r"x already exists .*overwrite=True"):
        check_can_write(tmp_path / "x", False)
    check_can_write(tmp_path / "x", True)


# ---------------------------------------------------------------- SIGKILL during training saves


def _train_command(out: Path, steps: int) -> list[str]:
    return [sys.executable, "-c", "from interp.cli import app; app()", "world", "train", "--arch", "gpt2", "--quick",
            "--steps", str(steps), "--save-every", "1", "--out", str(out), "--tokenizer",
            str(reference_path("ref-gpt2"))]


def _kill_during_a_save(out: Path, delay: float, watch: float = 0.0) -> tuple[int, int]:
    """Run ``interp world train`` saving every step, SIGKILL it ``delay`` s after a save starts over a complete
    checkpoint; while ``watch`` seconds of saves go by first, check ``--out`` stays complete at every look.

    Returns:
        How many saves were seen under way, and how many looks found ``--out`` complete.
    """
    proc = subprocess.Popen(_train_command(out, 100000), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prefix = f".{out.name}.tmp-"
    try:
        deadline = time.monotonic() + 240
        while not (out / "training.json").is_file():  # the first complete checkpoint
            assert proc.poll() is None and time.monotonic() < deadline, "training did not save"
            time.sleep(0.01)
        looks, saves, until = 0, 0, time.monotonic() + watch
        while time.monotonic() < until:
            for name in CHECKPOINT_FILES:  # a reader at any moment sees every file whole
                assert (out / name).is_file(), name
            load_file(out / "model.safetensors")
            json.loads((out / "training.json").read_text())
            looks += 1
        while not any(p.name.startswith(prefix) for p in out.parent.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, "no save started"
        saves += 1
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    return saves, looks


def test_sigkill_during_a_save_leaves_a_complete_checkpoint(tmp_path):
    """One run, killed while a save over its previous checkpoint is under way; the next run sweeps the leftovers."""
    out = tmp_path / "run"
    saves, looks = _kill_during_a_save(out, delay=0.0, watch=1.0)
    assert saves == 1 and looks > 10
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".run.tmp-")]  # the kill landed inside a save
    log = assert_complete(out)
    assert log["steps_done"] >= 1
    train("gpt2", out, preset="quick", steps=1, tokenizer_dir=reference_path("ref-gpt2"), overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name != "run"]  # the killed run's temporary is gone
    assert assert_complete(out)["steps_done"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(6))
def test_sigkill_at_many_moments_of_a_save(tmp_path, trial):
    """Each kill lands at another moment of a save (model, tokenizer, world, log, the swap; a save takes about
    0.1 s on 2 CPU cores); each leaves a whole checkpoint."""
    _kill_during_a_save(tmp_path / "run", random.Random(trial).uniform(0.0, 0.15))
    assert_complete(tmp_path / "run")


# ---------------------------------------------------------------- --out refusals


def test_non_empty_out_is_refused_before_anything_is_trained(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    runner = CliRunner()
    start = time.perf_counter()
    result = runner.invoke(app, ["world", "train", "--arch", "gpt2", "--quick", "--steps", "1", "--out", str(out)])
    assert result.exit_code == 2 and f"{out} already exists" in result.output and "--overwrite" in result.output
    assert "Traceback" not in result.output and time.perf_counter() - start < 5  # refused before any training
    assert os.listdir(out) == ["notes.txt"] and sorted(os.listdir(tmp_path)) == ["out"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        train("gpt2", out, preset="quick", steps=1)


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink"])
def test_out_equal_to_init_from_is_refused(tmp_path, spelling):
    source = tmp_path / "ckpt"
    source.mkdir()
    (source / "config.json").write_text("{}")
    out = {"same": source, "dotted": tmp_path / "x" / ".." / "ckpt", "symlink": tmp_path / "link"}[spelling]
    if spelling == "symlink":
        out.symlink_to(source)
    for extra in ([], ["--overwrite"]):
        result = CliRunner().invoke(app, ["world", "train", "--arch", "gpt2", "--quick", "--steps", "1", "--out",
                                          str(out), "--init-from", str(source), *extra])
        assert result.exit_code == 2 and "is the init_from checkpoint" in result.output, result.output
        assert str(out) in result.output and str(source) in result.output
    assert os.listdir(source) == ["config.json"]


# ---------------------------------------------------------------- truncated files


def test_truncated_checkpoint_weights_name_the_file(tiny_gpt2_dir, tmp_path):
    folder = shutil.copytree(tiny_gpt2_dir, tmp_path / "ckpt")
    weights = folder / "model.safetensors"
    whole = weights.read_bytes()
    for length in cuts(weights):
        weights.write_bytes(whole[:length])
        with pytest.raises((ValueError, FileNotFoundError), match="model.safetensors"):
            interp.load(folder, device="cpu")


def test_corrupt_key_statistics_are_discarded_and_recomputed(tiny_gpt2, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    expected = rome.key_stats(tiny_gpt2, 0, 4)
    path = rome.stats_path(tiny_gpt2, 0, 4)
    whole = path.read_bytes()
    config = rome.RomeConfig(stats_samples=4)
    key = torch.randn(interp.model_info(tiny_gpt2).d_mlp)
    left = rome.solve_stats(tiny_gpt2, 0, key, config)
    damaged = [whole[:n] for n in cuts(path)] + [b"not safetensors at all"]
    for content in damaged:
        path.write_bytes(content)
        with pytest.warns(UserWarning, match=rf"corrupt key-statistics cache {path}"):
            again = rome.solve_stats(tiny_gpt2, 0, key, config)  # what rome.edit calls
        assert torch.equal(again, left)
        assert torch.equal(load_file(path)["mom2"], expected)  # the cache is whole again
    from safetensors.torch import save_file

    save_file({"mom2": torch.zeros(3, 3)}, str(path))  # a readable file of the wrong shape is corrupt too
    with pytest.warns(UserWarning, match=r"expected finite \(128, 128\)"):
        assert torch.equal(rome.key_stats(tiny_gpt2, 0, 4), expected)


def test_corrupt_layer_profile_is_discarded_and_recomputed(tiny_llama_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    folder = shutil.copytree(tiny_llama_dir, tmp_path / "with-world")
    world = {"facts": [{"relation": "r", "subject": s, "object": o} for s, o in [("the Louvre", "Paris")]],
             "templates": {"r": {"train": ["{subject} is in the city of"], "heldout": []}}, "tasks": {},
             "prepend_bos": True}
    (folder / "world.json").write_text(json.dumps(world))
    model = interp.load(folder, device="cpu")
    profile = rome.layer_profile(model, n_facts=1, samples=2)
    [cache] = (tmp_path / "cache" / "rome_stats").glob("*layer-profile*")
    for content in (cache.read_text()[:5], "[1.0]"):  # cut short; a readable list of the wrong length
        cache.write_text(content)
        with pytest.warns(UserWarning, match=rf"corrupt layer-profile cache {cache}"):
            torch.testing.assert_close(rome.layer_profile(model, n_facts=1, samples=2), profile)


def _edit() -> rome.Edit:
    g = torch.Generator().manual_seed(0)
    return rome.Edit(layer=1, left=torch.randn(8, generator=g), right=torch.randn(4, generator=g),
                     key=torch.randn(8, generator=g), value=torch.randn(4, generator=g),
                     request={"prompt": "{} is in", "subject": "x", "target": " y", "model": "m"}, fingerprint="f" * 64)


def test_edit_files_are_not_overwritten_and_damage_names_the_file(tmp_path):
    change, path = _edit(), tmp_path / "edit.safetensors"
    change.save(path)
    loaded = rome.load_edit(path)
    assert torch.equal(loaded.left, change.left) and loaded.request == change.request
    with pytest.raises(FileExistsError, match=rf"{path} already exists .*overwrite=True"):
        change.save(path)
    change.save(path, overwrite=True)
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        rome.load_edit(tmp_path / "nowhere.safetensors")
    whole = path.read_bytes()
    for length in cuts(path):
        path.write_bytes(whole[:length])
        with pytest.raises(ValueError, match=rf"{path} is not an edit file"):
            rome.load_edit(path)


def test_tuned_lens_files_are_not_overwritten_and_damage_names_the_file(tmp_path):
    lens, path = TunedLens(2, 8, {"model": "m", "n_layers": 2}), tmp_path / "lens.safetensors"
    lens.weight.normal_()
    lens.save(path)
    assert torch.equal(TunedLens.load(path).weight, lens.weight)
    with pytest.raises(FileExistsError, match=rf"{path} already exists"):
        lens.save(path)
    lens.save(path, overwrite=True)
    whole = path.read_bytes()
    for length in cuts(path):
        path.write_bytes(whole[:length])
        with pytest.raises(ValueError, match=rf"{path} is not a readable safetensors file"):
            TunedLens.load(path)


def _report() -> probes.ProbeReport:
    return probes.ProbeReport(task="t", model="m", site="resid_post", layers=[0, 1], labels=["a", "b"],
                              accuracy=[0.5, 1.0], train_accuracy=[1.0, 1.0], control_accuracy=[0.5, 0.5],
                              majority=0.5, n_train=4, n_test=2, train_groups=["g1"], test_groups=["g2"],
                              weight=torch.randn(2, 8, 2), bias=torch.randn(2, 2))


def test_probe_reports_are_not_overwritten_and_damage_names_the_file(tmp_path):
    report, path = _report(), tmp_path / "report.safetensors"
    report.save(path)
    assert probes.ProbeReport.load(path).to_dict() == report.to_dict()
    with pytest.raises(FileExistsError, match=rf"{path} already exists"):
        report.save(path)
    report.save(path, overwrite=True)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        probes.ProbeReport.load(tmp_path / "nowhere")
    whole = path.read_bytes()
    for length in cuts(path):
        path.write_bytes(whole[:length])
        with pytest.raises(ValueError, match=rf"{path} is not a readable probe report"):
            probes.ProbeReport.load(path)


# ---------------------------------------------------------------- the card


def _card_folder(tmp_path: Path, tiny_gpt2_dir: Path) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    shutil.copy(tiny_gpt2_dir / "config.json", folder)
    shutil.copy(tiny_gpt2_dir / "model.safetensors", folder)
    log = {"arch": "gpt2", "preset": asdict(PRESETS["quick"]), "seed": 0, "device": "cpu", "workers": 0,
           "steps_done": 3, "seconds": 1.0, "log_every": 1, "losses": [3.0, 2.0, 1.0]}
    (folder / "training.json").write_text(json.dumps(log))
    return folder


def test_card_keeps_the_sections_it_does_not_rewrite(tmp_path, tiny_gpt2_dir):
    folder = _card_folder(tmp_path, tiny_gpt2_dir)
    write_card(folder, "m", WorldScores(), "cmd", {"Attention heads": "h1", "Probes": "p1", "Notes": "n1"})
    card = write_card(folder, "m", WorldScores(repeat_loss_first=1.5), "cmd2", {"Probes": "p2"})  # one re-measured
    text = card.read_text()
    assert "| repeated random tokens, loss on first copy | 1.500 nats |" in text and "`cmd2`" in text
    assert text.endswith("\n## Attention heads\nh1\n\n## Probes\np2\n\n## Notes\nn1\n")  # in place, in order
    text = write_card(folder, "m", WorldScores(), "cmd3").read_text()  # `world card` without --measure
    assert text.endswith("\n## Attention heads\nh1\n\n## Probes\np2\n\n## Notes\nn1\n")
    assert write_card(folder, "m", WorldScores(), "cmd3", {"New": "x"}, keep=False).read_text().endswith(
        "\n## Planted ground truth\nMeasured with `cmd3`:\n\n" + WorldScores().to_markdown() + "\n\n## New\nx\n")
    assert sorted(os.listdir(folder)) == ["CARD.md", "config.json", "loss_curve.html", "model.safetensors",
                                          "training.json"]


def test_truncated_card_is_rewritten_whole_with_a_warning(tmp_path, tiny_gpt2_dir):
    folder = _card_folder(tmp_path, tiny_gpt2_dir)
    card = write_card(folder, "m", WorldScores(), "cmd", {"Probes": "p1"})
    whole = card.read_text()
    for length in (0, len(whole) // 3):
        card.write_text(whole[:length])
        with pytest.warns(UserWarning, match=rf"{card} is not a readable card"):
            assert write_card(folder, "m", WorldScores(), "cmd").read_text() == whole.replace("\n## Probes\np1\n", "")
    card.write_bytes(whole.encode()[:-3] + b"\xe2\x82")  # cut inside a UTF-8 character
    with pytest.warns(UserWarning, match="not a readable card"):
        write_card(folder, "m", WorldScores(), "cmd")


@pytest.mark.parametrize("command", [["probe", "--task", "city_country"],
                                     ["edit", "-p", "{} is in", "-s", "x", "-t", " y"]])
def test_cli_save_over_an_existing_file_is_refused_before_any_work(tmp_path, command):
    existing = tmp_path / "mine.safetensors"
    existing.write_bytes(b"keep me")
    result = CliRunner().invoke(app, [*command, "--model", str(tmp_path / "no-model"), "--save", str(existing)])
    assert result.exit_code == 2 and f"{existing} already exists" in result.output and "--overwrite" in result.output
    assert existing.read_bytes() == b"keep me"
    result = CliRunner().invoke(app, [*command, "--model", str(tmp_path / "no-model"), "--save", str(existing),
                                      "--overwrite"])
    assert result.exit_code == 2 and "no-model" in result.output  # past the check: the (missing) model is next
