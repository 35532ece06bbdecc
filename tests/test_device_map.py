"""``interp.load(..., device_map=...)``: a model split by accelerate gives the single-device numbers.

The map keeps the embeddings, block 0, block 2, the final norm and the unembedding on the CPU and
offloads block 1 to disk, so every forward goes through the same accelerate dispatch hooks
(``AlignDevicesHook``: weights loaded onto the execution device per call, activations moved
between devices) that a split over several GPUs uses. Each analysis is run on the offloaded
model and on the same checkpoint loaded whole onto the CPU, and the results are compared.
"""

from __future__ import annotations

import pytest
import torch

import interp
from interp.core.toy_models import ToyConfig, save_toy_checkpoint

CONFIGS = {
    "gpt2": ToyConfig(arch="gpt2", n_layers=3, n_heads=4, d_model=32, n_ctx=32),
    "llama": ToyConfig(arch="llama", n_layers=3, n_heads=4, n_kv_heads=2, d_model=32, n_ctx=32),
}
BODY = {"gpt2": "transformer", "llama": "model"}
OFFLOADED_LAYER = 1
PROMPT, SUBJECT = "{} is located in the city of", "The Eiffel Tower"


def split_map(arch: str) -> dict[str, str]:
    """Everything on the CPU except block 1, which goes to disk (tied embeddings stay together)."""
    body = BODY[arch]
    blocks = "h" if arch == "gpt2" else "layers"
    extra = ["wte", "wpe", "ln_f"] if arch == "gpt2" else ["embed_tokens", "norm", "rotary_emb"]
    placement = {f"{body}.{name}": "cpu" for name in extra}
    placement |= {f"{body}.{blocks}.{layer}": "cpu" for layer in range(3)}
    placement[f"{body}.{blocks}.{OFFLOADED_LAYER}"] = "disk"
    placement["lm_head"] = "cpu"
    return placement


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    """(whole model on the CPU, the same checkpoint split CPU/disk) for one architecture."""
    arch = request.param
    folder = save_toy_checkpoint(tmp_path_factory.mktemp(f"dm-{arch}"), CONFIGS[arch])
    whole = interp.load(folder, device="cpu")
    split = interp.load(folder, device_map=split_map(arch), offload_folder=tmp_path_factory.mktemp("offload"))
    return whole, split


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(1, 300, (2, 12), generator=torch.Generator().manual_seed(0))


def test_the_map_really_offloads(pair):
    """Block 1's weights are not in memory (meta tensors) and accelerate reports it on disk."""
    _, split = pair
    placement = split.original_model.hf_device_map
    assert sorted(set(placement.values())) == ["cpu", "disk"]
    meta = [name for name, p in split.named_parameters() if p.device.type == "meta"]
    assert meta and all(f".{OFFLOADED_LAYER}." in name for name in meta), meta


def test_capture_matches_the_whole_model(pair, tokens):
    whole, split = pair
    a, b = interp.capture(whole, tokens, names="all"), interp.capture(split, tokens, names="all")
    names = sorted(a.activations)
    assert names == sorted(b.activations) and len(names) > 10
    for name in names:
        assert b[name].device.type == "cpu", name
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(b.logits, a.logits, rtol=1e-5, atol=1e-6)


def test_logit_lens_matches_the_whole_model(pair, tokens):
    whole, split = pair
    a, b = interp.logit_lens(whole, tokens), interp.logit_lens(split, tokens)
    (ids_a, probs_a), (ids_b, probs_b) = a.top1(), b.top1()
    assert torch.equal(ids_a, ids_b)
    torch.testing.assert_close(probs_b, probs_a, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(b.kl_to_final(reduce=False), a.kl_to_final(reduce=False), rtol=1e-4, atol=1e-6)
    # The lens's last layer is the model's own prediction, here from a plain forward of the split model.
    with torch.no_grad():
        final = split(tokens).softmax(-1).max(-1)
    assert torch.equal(ids_b[-1], final.indices)
    torch.testing.assert_close(probs_b[-1], final.values, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_matches_the_whole_model(pair, use_cache):
    whole, split = pair
    a = interp.generate(whole, "The cat", max_new_tokens=6, temperature=0, use_cache=use_cache, stop_at_eos=False)
    b = interp.generate(split, "The cat", max_new_tokens=6, temperature=0, use_cache=use_cache, stop_at_eos=False)
    assert torch.equal(a.new_tokens, b.new_tokens)
    assert b.token_probs == pytest.approx(a.token_probs, rel=1e-5, abs=1e-7)


def test_causal_trace_matches_the_whole_model(pair):
    whole, split = pair
    a = interp.causal_trace(whole, PROMPT, SUBJECT, samples=1)
    b = interp.causal_trace(split, PROMPT, SUBJECT, samples=1)
    assert b.answer == a.answer
    torch.testing.assert_close(b.scores, a.scores, rtol=1e-4, atol=1e-6)
    assert b.clean == pytest.approx(a.clean, rel=1e-5) and b.corrupted == pytest.approx(a.corrupted, rel=1e-5)


def test_rome_refuses_an_offloaded_weight(pair):
    """Writing into accelerate's offload would write into the checkpoint's own safetensors file."""
    _, split = pair
    with pytest.raises(NotImplementedError, match="offloaded"):
        interp.rome.edit(split, prompt=PROMPT, subject=SUBJECT, target=" Rome", layer=OFFLOADED_LAYER)


def test_offload_folder_needs_a_device_map(tmp_path):
    with pytest.raises(ValueError, match="offload_folder=.*needs a device_map"):
        interp.load(tmp_path, offload_folder=tmp_path)


@pytest.mark.slow
def test_rome_edits_a_weight_kept_in_memory(pair):
    """Block 0 stays on the CPU: the edit there equals the whole model's, and undo restores it bit for bit."""
    whole, split = pair
    request = {"prompt": PROMPT, "subject": SUBJECT, "target": " Rome", "layer": 0}
    weight = interp.rome.projection(split, 0).weight
    before = weight.detach().clone()
    a = interp.rome.edit(whole, **request)
    a.undo()
    b = interp.rome.edit(split, **request)
    try:
        torch.testing.assert_close(b.delta(), a.delta(), rtol=1e-3, atol=1e-6)
        assert not torch.equal(weight, before)
    finally:
        b.undo()
    assert torch.equal(weight, before)
