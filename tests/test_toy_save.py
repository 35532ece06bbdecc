"""Toy checkpoints are saved all or nothing, and never over an existing one unless asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers

from interp.core.toy_families import save_family
from interp.core.toy_models import ToyConfig, save_toy_checkpoint

SMALL = ToyConfig(n_layers=1, d_model=16, n_heads=2, n_ctx=16, vocab_size=260)


@pytest.mark.parametrize("save", [lambda folder: save_toy_checkpoint(folder, SMALL),
                                  lambda folder: save_family("gpt2", folder)], ids=["toy", "family"])
def test_an_interrupted_save_leaves_no_folder(save, tmp_path, monkeypatch):
    real, wrote = transformers.PreTrainedModel.save_pretrained, []

    def save_then_fail(self, folder, *args, **kwargs):
        """Write ``config.json``, then fail as a crash while writing the weights would."""
        wrote.append(Path(folder))
        self.config.to_json_file(Path(folder) / "config.json")
        raise KeyboardInterrupt("interrupted while saving the weights")

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", save_then_fail)
    target = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        save(target)
    assert len(wrote) == 1 and wrote[0].parent == tmp_path and wrote[0] != target  # a temporary beside it
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [], "the temporary folder was left behind"
    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", real)
    assert json.loads((save(target) / "config.json").read_text())["model_type"] == "gpt2"


def test_a_second_save_needs_overwrite(tmp_path):
    target = save_toy_checkpoint(tmp_path / "ckpt", SMALL)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    for save in (lambda: save_toy_checkpoint(target, SMALL), lambda: save_family("gpt2", target)):
        with pytest.raises(FileExistsError, match=str(target)) as err:
            save()
        assert "overwrite=True" in str(err.value)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    # Asked to, it replaces the folder whole: a file of the old checkpoint that the new one lacks is gone.
    (target / "stale.txt").write_text("from the old checkpoint")
    save_toy_checkpoint(target, ToyConfig(n_layers=2, d_model=16, n_heads=2, n_ctx=16, vocab_size=260), overwrite=True)
    assert json.loads((target / "config.json").read_text())["n_layer"] == 2
    assert not (target / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_an_empty_folder_is_filled(tmp_path):
    """``tmp_path_factory.mktemp`` and ``TemporaryDirectory`` hand out empty folders: those are written."""
    (tmp_path / "empty").mkdir()
    assert (save_toy_checkpoint(tmp_path / "empty", SMALL) / "model.safetensors").is_file()
