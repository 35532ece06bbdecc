"""interp.load: embedded names, local directories, hub names, errors and device_map."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
import torch

import interp
from interp import reference
from interp.core import embedded


@pytest.fixture
def no_network(monkeypatch):
    """Fail any socket connection and put the HF hub client in offline mode."""
    import huggingface_hub.constants

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return attempts


def test_local_dir_loads_without_network(tiny_model_dir, no_network):
    model = interp.load(tiny_model_dir, device="cpu")
    assert not model.training
    assert interp.model_info(model).n_layers == 2
    assert no_network == []


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_bridge_keeps_hf_weights_unprocessed(arch, request):
    folder, model = request.getfixturevalue(f"tiny_{arch}_dir"), request.getfixturevalue(f"tiny_{arch}")
    from safetensors.torch import load_file

    # The bridge renames submodules (GPT-2's c_attn becomes attn.qkv), so match by value:
    # every saved tensor must still be present, bit-exact (no LayerNorm folding or centring).
    live = list(model.original_model.state_dict().values())
    for name, saved in load_file(folder / "model.safetensors").items():
        assert any(t.shape == saved.shape and torch.equal(t, saved) for t in live), name


def test_embedded_name_reads_registry_checkpoint(tiny_gpt2_dir, tmp_path, monkeypatch, no_network):
    folder = tmp_path / "ref-gpt2"
    shutil.copytree(tiny_gpt2_dir, folder)
    (folder / "world.json").write_text(json.dumps({"prepend_bos": False}))
    monkeypatch.setattr(embedded, "CHECKPOINTS", tmp_path)
    model = interp.load("ref-gpt2", device="cpu")
    assert interp.model_info(model).prepend_bos is False
    assert interp.tokenize(model, "The cat").tokens[0, 0] != model.tokenizer.bos_token_id
    assert no_network == []


def test_embedded_name_without_checkpoint_names_the_path(tmp_path, monkeypatch, no_network):
    monkeypatch.setattr(embedded, "CHECKPOINTS", tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "ref-llama")):
        interp.load("ref-llama")


def test_default_prepend_bos_when_no_world_json(tiny_gpt2):
    info = interp.model_info(tiny_gpt2)
    assert info.prepend_bos is True
    assert interp.tokenize(tiny_gpt2, "The cat").tokens[0, 0] == tiny_gpt2.tokenizer.bos_token_id


def test_unknown_name_lists_embedded_models_without_network(no_network):
    with pytest.raises(FileNotFoundError) as err:
        interp.load("no-such-org/no-such-model")
    message = str(err.value)
    assert "no-such-org/no-such-model" in message
    for name in reference.names():
        assert name in message
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert len(message.splitlines()) == 1
    assert no_network == []


def test_unknown_name_fails_fast_and_quietly_when_the_hub_is_unreachable(monkeypatch, caplog, capfd):
    """No HF_HUB_OFFLINE, but no network: one quick probe, then one line (not transformers' retries)."""
    import time

    import huggingface_hub.constants

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="could not be reached within 2 s") as err:
        interp.load("no-such-org/no-such-model")
    assert time.perf_counter() - start < 3.0
    assert len(str(err.value).splitlines()) == 1 and "ref-gpt2" in str(err.value)
    out, errors = capfd.readouterr()
    assert "Retry" not in out + errors + caplog.text


def test_pickled_weights_are_refused_naming_the_folder(tiny_gpt2_dir, tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_gpt2_dir, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=f"{folder} holds only pickled weights \\(pytorch_model.bin\\)"):
        interp.load(folder, device="cpu")


def test_loading_asks_for_safetensors_and_never_trusts_remote_code(tiny_gpt2_dir, monkeypatch):
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    seen = []
    for cls in (AutoModelForCausalLM, AutoTokenizer):
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _original=original, **kwargs):
            seen.append((klass.__name__, kwargs))
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    interp.load(tiny_gpt2_dir, device="cpu")
    model_kwargs = [k for name, k in seen if name == "AutoModelForCausalLM"]
    assert model_kwargs and all(k["use_safetensors"] is True for k in model_kwargs)
    # interp's own calls say so explicitly; TransformerLens re-reads the tokenizer with the default (False).
    assert [k["trust_remote_code"] for _, k in seen[:2]] == [False, False]
    assert all(k.get("trust_remote_code", False) is False for _, k in seen)
    root = Path(interp.__file__).parents[1]
    sources = [p for d in ("interp", "probes", "apps") for p in (root / d).rglob("*.py")]
    assert not [p for p in sources if "trust_remote_code=True" in p.read_text()]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_half_precision_works_on_cpu(request, arch, dtype):
    """float16/bfloat16 on the CPU: finite logits close to float32, and sampling runs."""
    tiny_model = request.getfixturevalue(f"tiny_{arch}")
    model = interp.load(request.getfixturevalue(f"tiny_{arch}_dir"), device="cpu", dtype=dtype)
    prompts = ["The cat sat on the mat", "a"]
    logits = interp.capture(model, prompts, names=["resid"]).last_logits
    assert logits.dtype == getattr(torch, dtype) and torch.isfinite(logits).all()
    reference = interp.capture(tiny_model, prompts, names=[]).last_logits
    torch.testing.assert_close(logits.float(), reference, rtol=0, atol=0.05)
    step = interp.next_token(model, "The cat", temperature=0.8, top_k=5)
    assert torch.isfinite(step.logits).all() and abs(float(step.probs.sum()) - 1) < 1e-3
    out = interp.generate(model, "The cat", max_new_tokens=3, temperature=0, stop_at_eos=False)
    assert len(out.new_tokens) == 3


def test_missing_directory_is_named(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        interp.load(missing)


def test_dir_without_config_is_named(tiny_gpt2_dir, tmp_path):
    folder = tmp_path / "no-config"
    shutil.copytree(tiny_gpt2_dir, folder)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=f"{folder}.*config.json"):
        interp.load(folder)


def test_dir_without_weights_is_named(tiny_gpt2_dir, tmp_path):
    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_gpt2_dir, folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="safetensors"):
        interp.load(folder)


def test_dir_without_tokenizer_is_named(tiny_gpt2_dir, tmp_path):
    folder = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_gpt2_dir, folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        interp.load(folder)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_safetensors_is_named(tiny_gpt2_dir, tmp_path, damage):
    folder = tmp_path / f"corrupt-{damage}"
    shutil.copytree(tiny_gpt2_dir, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(b"\x00garbage" * 100 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ValueError, match=str(weights)):
        interp.load(folder)


def test_bad_dtype_and_device_conflict():
    with pytest.raises(ValueError, match="dtype='float8'"):
        interp.load("ref-gpt2", dtype="float8")
    with pytest.raises(ValueError, match="device='cpu'.*device_map='auto'"):
        interp.load("ref-gpt2", device="cpu", device_map="auto")


@pytest.mark.parametrize("device_map", ["cpu", {"": "cpu"}])
def test_device_map_passes_through(tiny_llama_dir, tiny_llama, device_map, monkeypatch):
    from transformers import AutoModelForCausalLM

    # transformers only records hf_device_map when a map spans several devices, which a
    # CPU-only machine cannot show, so spy on the call that receives the map instead.
    seen = []
    original = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs.get("device_map"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    model = interp.load(tiny_llama_dir, device_map=device_map)
    assert seen == [device_map]
    assert interp.model_info(model).device == "cpu"
    tokens = interp.tokenize(model, "The cat sat").tokens
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), tiny_llama(tokens))


def test_dtype_is_applied(tiny_gpt2_dir):
    model = interp.load(tiny_gpt2_dir, device="cpu", dtype="bfloat16")
    assert next(model.original_model.parameters()).dtype == torch.bfloat16


def test_transformerlens_generate_uses_the_kv_cache_correctly(tiny_model):
    """interp.load repairs the bridge's KV cache (see interp.core.kv_cache): TL's own generate agrees with itself."""
    tokens = interp.tokenize(tiny_model, "the cat sat").tokens
    kwargs = dict(max_new_tokens=6, do_sample=False, verbose=False)
    cached = tiny_model.generate(tokens, use_past_kv_cache=True, **kwargs)
    uncached = tiny_model.generate(tokens, use_past_kv_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
