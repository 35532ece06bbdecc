"""Logit lens and tuned lens: the last-layer identity, HF-independent decoding, bounded memory, bad input, files."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.lens.logit import logit_lens
from interp.lens.tuned import FILENAME, TunedLens

PROMPTS = ["The cat sat on the mat", "Paris is the capital of France and"]


def _hf_decode(model, tokens, mask):
    """Every layer decoded with the Hugging Face modules directly: hidden states -> final norm -> lm_head."""
    hf = model.original_model
    norm = hf.transformer.ln_f if hasattr(hf, "transformer") else hf.model.norm
    with torch.no_grad():
        out = hf(tokens, attention_mask=mask, output_hidden_states=True)
        # HF's last hidden state already went through the final norm; the others are raw residuals.
        layers = [hf.lm_head(norm(h)) for h in out.hidden_states[:-1]] + [out.logits]
    return torch.stack(layers).log_softmax(-1)


def test_last_layer_is_the_models_own_logprobs(tiny_model):
    lens = logit_lens(tiny_model, PROMPTS)
    batch = interp.tokenize(tiny_model, PROMPTS)
    with torch.no_grad():
        hf_logits = tiny_model.original_model(batch.tokens, attention_mask=batch.attention_mask).logits
    torch.testing.assert_close(lens.logprobs[-1], hf_logits.log_softmax(-1), atol=1e-4, rtol=0)
    torch.testing.assert_close(lens.kl_to_final()[-1], torch.tensor(0.0), atol=1e-5, rtol=0)
    assert lens.final_norm_applied and lens.layer_names == ["embed", "0", "1"]


def test_every_layer_matches_hf_decoding(tiny_model):
    lens = logit_lens(tiny_model, PROMPTS)
    batch = interp.tokenize(tiny_model, PROMPTS)
    torch.testing.assert_close(lens.logprobs, _hf_decode(tiny_model, batch.tokens, batch.attention_mask),
                               atol=1e-4, rtol=0)


def test_queries_agree_with_logprobs_and_bounded_mode(tiny_gpt2):
    full = logit_lens(tiny_gpt2, PROMPTS, target=" the")
    bounded = logit_lens(tiny_gpt2, PROMPTS, target=" the", max_elements=1000)
    with pytest.raises(ValueError, match="memory budget"):
        bounded.logprobs
    target = interp.to_single_token(tiny_gpt2, " the")
    lp = full.logprobs
    torch.testing.assert_close(full.prob(), lp[..., target].exp())
    torch.testing.assert_close(full.rank(), (lp > lp[..., target : target + 1]).sum(-1))
    kl = (lp[-1].exp() * (lp[-1] - lp)).sum(-1).mean((1, 2))
    torch.testing.assert_close(full.kl_to_final(), kl)
    assert (full.kl_to_final()[:-1] >= 0).all()
    for name in ("prob", "rank", "kl_to_final"):
        torch.testing.assert_close(getattr(bounded, name)(), getattr(full, name)(), atol=1e-5, rtol=0)
    for got, want in zip(bounded.top_tokens(3, pos=2), full.top_tokens(3, pos=2), strict=True):
        assert [t for t, _ in got] == [t for t, _ in want]
        assert [p for _, p in got] == pytest.approx([p for _, p in want], abs=1e-6)
    best = lp[:, 0, -1].topk(2)
    got = torch.tensor([[p for _, p in layer] for layer in full.top_tokens(2)])
    torch.testing.assert_close(got, best.values.exp(), atol=1e-6, rtol=0)


def test_negative_positions_follow_each_prompts_last_token(tiny_llama):
    lens = logit_lens(tiny_llama, PROMPTS, positions=[-1, 0])
    batch = interp.tokenize(tiny_llama, PROMPTS)
    last = batch.attention_mask.sum(-1) - 1
    assert lens.positions[:, 0].tolist() == last.tolist() and lens.positions[:, 1].tolist() == [0, 0]
    full = logit_lens(tiny_llama, PROMPTS)
    for b in range(2):
        torch.testing.assert_close(lens.logprobs[:, b, 0], full.logprobs[:, b, int(last[b])])


def test_without_final_norm(tiny_gpt2):
    lens = logit_lens(tiny_gpt2, "The cat", apply_final_norm=False)
    cap = interp.capture(tiny_gpt2, "The cat", names=["resid_post"])
    raw = (cap.resid(1, "post") @ tiny_gpt2.W_U + tiny_gpt2.b_U).log_softmax(-1)
    assert not lens.final_norm_applied
    torch.testing.assert_close(lens.logprobs[-1], raw, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"target": " cat sat on"}, "exactly one token"),
    ({"target": 10**6}, "target=1000000"),
    ({"target": [" the"] * 3}, "3 targets for 2 prompts"),
    ({"positions": [7]}, "position 7 is out of range"),
    ({"positions": [-8]}, "position -8 is out of range"),
])
def test_bad_input(tiny_gpt2, kwargs, match):
    with pytest.raises(ValueError, match=match):
        logit_lens(tiny_gpt2, ["The cat sat", "A dog ran"], **kwargs)


def test_outputs(tiny_gpt2):
    lens = logit_lens(tiny_gpt2, "The cat sat on", target=" the")
    frame = lens.to_frame()
    assert len(frame) == 3 * lens.tokens.shape[1]
    assert {"layer", "position", "token", "top_token", "top_prob", "kl_to_final", "target_prob", "target_rank"} <= set(frame.columns)
    assert len(lens.figure().data) == 3
    first = lens.first_top1_layer()[0]
    ranks = lens.rank()[:, 0, -1]
    assert (first is None and ranks[-1] != 0) or (ranks[first:] == 0).all()


def test_identity_tuned_lens_is_the_logit_lens(tiny_model):
    from interp.lens.tuned import _identity

    info = interp.model_info(tiny_model)
    lens = TunedLens(info.n_layers, info.d_model, _identity(tiny_model, info))
    torch.testing.assert_close(lens.apply(tiny_model, PROMPTS).logprobs, logit_lens(tiny_model, PROMPTS).logprobs)


def test_tuned_lens_trains_saves_and_refuses_other_models(tiny_gpt2, tiny_llama, tmp_path):
    from interp.reference.world_text import world_tokens

    lens = TunedLens.train(tiny_gpt2, steps=40, n_seqs=8, lr=3e-3, progress=False)
    held_out = world_tokens(tiny_gpt2, 8, seed=99)
    tuned_kl = lens.apply(tiny_gpt2, held_out).kl_to_final()
    logit_kl = logit_lens(tiny_gpt2, held_out).kl_to_final()
    assert (tuned_kl[:-1] < logit_kl[:-1]).all()
    path = lens.save(tmp_path / "lens.safetensors")
    again = TunedLens.load(path, tiny_gpt2)
    assert torch.equal(again.weight, lens.weight) and torch.equal(again.bias, lens.bias)
    # Same shapes (2 layers, d_model 32, vocab 300), different weights: the fingerprint tells them apart.
    with pytest.raises(ValueError, match="trained for"):
        TunedLens.load(path, tiny_llama)
    with pytest.raises(ValueError, match="trained for"):
        again.apply(tiny_llama, "The cat")


def test_load_for_and_bad_files(tiny_gpt2, tiny_gpt2_dir, tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(FileNotFoundError, match="TunedLens.train"):
        TunedLens.load_for(tiny_gpt2)
    lens = TunedLens.train(tiny_gpt2, steps=2, n_seqs=2, progress=False)
    shipped = lens.save(tiny_gpt2_dir / FILENAME)
    try:
        assert torch.equal(TunedLens.load_for(tiny_gpt2).weight, lens.weight)
    finally:
        shipped.unlink()
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a tuned lens"):
        TunedLens.load(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a readable"):
        TunedLens.load(tmp_path / "junk.safetensors")
