"""Capture options: device/dtype as activations are produced, streaming to a callback or to a folder.

Every option is checked against the default in-memory capture of the same prompts (the reference), and
streaming is checked to keep nothing: the returned Capture holds no activations, and a layer's tensor is
released while the forward pass is still running.
"""

from __future__ import annotations

import json
import weakref

import pytest
import torch

import interp
from interp.core.capturing import load_capture
from interp.core.toy_models import ToyConfig, load_toy

PROMPTS = ["The cat sat on the mat", "Paris is"]


@pytest.fixture(scope="module")
def deep_gpt2():
    """A 6-layer toy GPT-2 (cached per config by load_toy; not modified here)."""
    return load_toy(ToyConfig(arch="gpt2", n_layers=6, n_heads=2, d_model=16, d_mlp=32, n_ctx=32, vocab_size=300))


def test_callback_sees_every_hook_and_the_capture_keeps_none(tiny_model):
    reference = interp.capture(tiny_model, PROMPTS)
    seen: dict[str, torch.Tensor] = {}
    streamed = interp.capture(tiny_model, PROMPTS, on_layer=lambda name, x: seen.__setitem__(name, x.clone()))
    assert streamed.activations == {} and streamed.hook_names == []
    assert list(seen) == reference.hook_names  # every hook, in the order the model fired them
    for name in reference.hook_names:
        assert torch.equal(seen[name], reference[name]), name
    assert torch.equal(streamed.logits, reference.logits) and torch.equal(streamed.tokens, reference.tokens)


def test_dtype_and_device_cast_as_they_are_produced(tiny_model):
    reference = interp.capture(tiny_model, PROMPTS, names=["resid", "pattern", "neurons"])
    half = interp.capture(tiny_model, PROMPTS, names=["resid", "pattern", "neurons"], dtype=torch.bfloat16,
                          device="cpu", progress=True)
    assert half.hook_names == reference.hook_names
    for name in reference.hook_names:
        got, want = half[name], reference[name]
        assert got.dtype == torch.bfloat16 and got.device.type == "cpu"
        assert torch.equal(got, want.to(torch.bfloat16))  # the same numbers, cast once
        torch.testing.assert_close(got.float(), want, rtol=2**-8, atol=1e-6)  # bfloat16 keeps 8 bits
    assert half.logits.dtype == torch.bfloat16 and torch.equal(half.logits, reference.logits.to(torch.bfloat16))
    assert half.tokens.dtype == torch.long
    with pytest.raises(ValueError, match="dtype=torch.int8"):
        interp.capture(tiny_model, PROMPTS, dtype=torch.int8)


def test_streaming_releases_each_layer_during_the_pass(deep_gpt2):
    """Weak references to the tensors handed out: by layer L, those of layers <= L-2 are gone."""
    refs: list[weakref.ref] = []
    alive_then: list[int] = []

    def on_layer(name, x):
        alive_then.append(sum(r() is not None for r in refs[:-1]))  # earlier layers still in memory
        refs.append(weakref.ref(x))

    cap = interp.capture(deep_gpt2, PROMPTS, names="neurons", on_layer=on_layer)
    assert len(refs) == 6 and cap.activations == {}
    assert max(alive_then) <= 1, alive_then  # at most one earlier layer alive, never all of them
    kept = interp.capture(deep_gpt2, PROMPTS, names="neurons")  # the default keeps them all
    assert len(kept.hook_names) == 6


def test_save_to_a_folder_and_read_it_back(tiny_gpt2, tiny_llama, tmp_path):
    reference = interp.capture(tiny_gpt2, PROMPTS, names=["resid", "z"])
    folder = tmp_path / "cap"
    streamed = interp.capture(tiny_gpt2, PROMPTS, names=["resid", "z"], save_to=folder)
    assert streamed.activations == {}
    manifest = json.loads((folder / "capture.json").read_text())
    assert manifest["hooks"] == reference.hook_names and manifest["format"] == "interp.capture/1"
    back = load_capture(folder, tiny_gpt2)
    assert back.hook_names == reference.hook_names
    for name in reference.hook_names:
        assert torch.equal(back[name], reference[name]), name
    assert torch.equal(back.logits, reference.logits) and torch.equal(back.attention_mask, reference.attention_mask)
    assert back.str_tokens == reference.str_tokens and back.resid(1, "post").shape == reference.resid(1, "post").shape
    only = load_capture(folder, names=[reference.hook_names[0]])
    assert only.hook_names == [reference.hook_names[0]] and only.info == reference.info
    with pytest.raises(ValueError, match="were not saved"):
        load_capture(folder, names=["blocks.0.attn.hook_pattern"])
    with pytest.raises(ValueError, match="arch"):
        load_capture(folder, tiny_llama)
    with pytest.raises(FileNotFoundError, match="no saved capture"):
        load_capture(tmp_path / "nothing")


def test_folder_writes_are_atomic_and_never_overwrite(tiny_gpt2, tmp_path):
    folder = tmp_path / "cap"
    interp.capture(tiny_gpt2, "The cat", names="neurons", save_to=folder)
    before = load_capture(folder)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        interp.capture(tiny_gpt2, "A dog", names="neurons", save_to=folder)

    def fail(name, x):
        if name.startswith("blocks.1"):
            raise RuntimeError("stop halfway")

    with pytest.raises(RuntimeError, match="stop halfway"):
        interp.capture(tiny_gpt2, "A dog", names="neurons", save_to=folder, overwrite=True, on_layer=fail)
    after = load_capture(folder)  # the old capture, whole: the half-written one never replaced it
    assert torch.equal(after.tokens, before.tokens) and torch.equal(after.neurons(1), before.neurons(1))
    assert [p.name for p in tmp_path.iterdir()] == ["cap"]  # no temporary left behind
    interp.capture(tiny_gpt2, "A dog", names="neurons", save_to=folder, overwrite=True)
    assert torch.equal(load_capture(folder).tokens, interp.tokenize(tiny_gpt2, "A dog").tokens)
