"""Induction-head report: scores against slow per-head reference code, a planted head, bad input, outputs."""

from __future__ import annotations

import json
import types

import planted_heads
import pytest
import torch

import interp
from interp.heads.induction import find_induction_heads, repeated_random_tokens


def _hf_final_norm_and_unembed(model):
    """Final-norm gain and unembedding read straight from the Hugging Face modules (not the bridge)."""
    hf = model.original_model
    norm = hf.transformer.ln_f if hasattr(hf, "transformer") else hf.model.norm
    return norm.weight.detach().double(), hf.lm_head.weight.detach().double().T, hf.config.model_type == "gpt2"


def slow_induction_scores(model, tokens, seq_len):
    """Per layer, head, sequence and query, in plain loops, from TransformerLens' own run_with_cache."""
    _, cache = model.run_with_cache(tokens)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    bos = tokens.shape[1] - 2 * seq_len
    out = torch.zeros(n_layers, n_heads)
    for layer in range(n_layers):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
        for head in range(n_heads):
            values = [float(pattern[b, head, bos + seq_len + j, bos + j + 1])
                      for b in range(tokens.shape[0]) for j in range(seq_len)]
            out[layer, head] = sum(values) / len(values)
    return out, cache


def slow_copying_scores(model, tokens, seq_len, cache):
    """Build each head's n x n OV matrix explicitly and take its full eigen-decomposition (float64)."""
    gain, w_u, centre = _hf_final_norm_and_unembed(model)
    u = gain[:, None] * w_u
    if centre:
        u = u - u.mean(0, keepdim=True)
    u = u - u.mean(1, keepdim=True)
    bos = tokens.shape[1] - 2 * seq_len
    src = tokens[:, bos:bos + seq_len].flatten()
    group = model.cfg.n_heads // (getattr(model.cfg, "n_key_value_heads", None) or model.cfg.n_heads)
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        v = cache[f"blocks.{layer}.attn.hook_v"][:, bos:bos + seq_len].double()
        for head in range(model.cfg.n_heads):
            vals = v[:, :, head // group].reshape(-1, v.shape[-1])  # [n d_head]
            w_o = model.W_O[layer, head].detach().double()
            m = torch.zeros(len(src), len(src), dtype=torch.float64)
            for i in range(len(src)):
                for j in range(len(src)):
                    m[i, j] = vals[i] @ w_o @ u[:, src[j]]
            eig = torch.linalg.eigvals(m)
            out[layer, head] = float(eig.real.sum() / eig.abs().sum())
    return out


def slow_ablation(model, tokens, seq_len, method):
    """One forward per head with that head's z replaced; loss on second-copy tokens 2..n."""
    bos = tokens.shape[1] - 2 * seq_len

    def loss(logits):
        lp = logits.log_softmax(-1)
        total, count = 0.0, 0
        for b in range(tokens.shape[0]):
            for p in range(bos + seq_len, bos + 2 * seq_len - 1):
                total -= float(lp[b, p, tokens[b, p + 1]])
                count += 1
        return total / count

    _, cache = model.run_with_cache(tokens)
    clean = loss(model(tokens))
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"]
        for head in range(model.cfg.n_heads):
            def hook(act, hook, head=head, z=z):
                act = act.clone()
                act[:, :, head] = 0.0 if method == "zero" else z[:, :, head].mean(0)
                return act

            with torch.no_grad():
                logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)])
                out[layer, head] = loss(logits) - clean
    return out, clean


@pytest.mark.parametrize("method", ["mean", "zero"])
def test_scores_equal_slow_reference(tiny_model, method):
    seq_len, batch = 5, 2
    report = find_induction_heads(tiny_model, seq_len=seq_len, batch=batch, seed=3, ablation=method)
    tokens = repeated_random_tokens(tiny_model, seq_len, batch, seed=3)
    with torch.no_grad():
        induction, cache = slow_induction_scores(tiny_model, tokens, seq_len)
        copying = slow_copying_scores(tiny_model, tokens, seq_len, cache)
        ablation, clean = slow_ablation(tiny_model, tokens, seq_len, method)
    torch.testing.assert_close(report.induction, induction, atol=1e-5, rtol=0)
    torch.testing.assert_close(report.copying, copying, atol=1e-5, rtol=0)
    torch.testing.assert_close(report.ablation, ablation, atol=1e-5, rtol=0)
    assert report.clean_loss == pytest.approx(clean, abs=1e-5)


def test_probe_is_bos_plus_repeated_random_tokens(tiny_model):
    tokens = repeated_random_tokens(tiny_model, 7, 3, seed=0)
    assert tokens.shape == (3, 15)
    assert (tokens[:, 0] == tiny_model.tokenizer.bos_token_id).all()
    assert torch.equal(tokens[:, 1:8], tokens[:, 8:])
    assert not torch.isin(tokens[:, 1:], torch.tensor(tiny_model.tokenizer.all_special_ids)).any()
    assert torch.equal(tokens, repeated_random_tokens(tiny_model, 7, 3, seed=0))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Planted heads at indices drawn here, never written in any code path of the detector."""
    gen = torch.Generator().manual_seed(20240611)
    prev_head, induction_head = (int(i) for i in torch.randint(planted_heads.N_HEADS, (2,), generator=gen))
    folder = planted_heads.build(tmp_path_factory.mktemp("planted"), prev_head, induction_head)
    anti = planted_heads.build(tmp_path_factory.mktemp("planted-anti"), prev_head, induction_head, copy_sign=-1.0)
    return interp.load(folder, device="cpu"), interp.load(anti, device="cpu"), prev_head, induction_head


def test_finds_planted_induction_head(planted):
    model, anti, prev_head, induction_head = planted
    report = find_induction_heads(model, batch=8, seed=1)
    layer, head, score = report.ranked()[0]
    assert (layer, head) == (1, induction_head)
    assert score > 0.7  # repeats inside r split some attention, hence not 1
    assert report.heads(0.5) == [(1, induction_head)]
    assert report.copying[1, induction_head] > 0.5
    assert report.ablation[1, induction_head] > 1.0
    # One strong head, so the joint ablation is that head's own ablation.
    assert report.joint_ablation == pytest.approx(float(report.ablation[1, induction_head]), abs=1e-5)
    # Only the two planted heads write anything; ablating any other head changes nothing.
    assert report.ablation[0, prev_head] > 1.0  # the induction head needs its previous-token input
    others = torch.ones_like(report.ablation, dtype=torch.bool)
    others[1, induction_head] = others[0, prev_head] = False
    assert report.ablation[others].abs().max() < 1e-4
    # The same circuit writing the attended token's *negative*: still an induction pattern, now anti-copying.
    flipped = find_induction_heads(anti, batch=8, seed=1, ablate=False)
    assert flipped.ranked()[0][:2] == (1, induction_head)
    assert flipped.copying[1, induction_head] < -0.5


@pytest.mark.parametrize("kwargs, match", [
    ({"seq_len": 16}, "seq_len=16"),  # BOS + 2 * 16 = 33 > n_ctx 32
    ({"seq_len": 1}, "seq_len=1"),
    ({"batch": 0}, "batch=0"),
    ({"ablation": "resample"}, "ablation='resample'"),
])
def test_bad_input(tiny_gpt2, kwargs, match):
    with pytest.raises(ValueError, match=match):
        find_induction_heads(tiny_gpt2, **kwargs)


def test_model_without_attention_patterns(tiny_gpt2):
    no_attention = types.SimpleNamespace(cfg=tiny_gpt2.cfg, tokenizer=tiny_gpt2.tokenizer, hook_dict={},
                                         original_model=tiny_gpt2.original_model)
    with pytest.raises(ValueError, match="no attention patterns"):
        find_induction_heads(no_attention)


def test_outputs(tiny_llama):
    report = find_induction_heads(tiny_llama, seq_len=6, batch=2)
    ranked = report.ranked()
    assert len(ranked) == 2 * 4 and [s for *_, s in ranked] == sorted((s for *_, s in ranked), reverse=True)
    data = json.loads(json.dumps(report.to_json()))
    assert [(h["layer"], h["head"]) for h in data["heads"]] == [(layer, head) for layer, head, _ in ranked]
    assert set(data["heads"][0]) == {"layer", "head", "induction", "copying", "ablation"}
    frame = report.to_frame()
    assert list(frame.columns) == ["layer", "head", "induction", "copying", "ablation"] and len(frame) == 8
    assert len(report.figure().data) == 3
    assert str(report).count("\n") == 8 + 1
    with pytest.raises(ValueError, match="by='nope'"):
        report.ranked("nope")
