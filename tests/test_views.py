"""Tests for interp.activation_view and interp.attention_view against Hugging Face's own outputs."""

import pytest
import torch

import interp

PROMPT = "the cat sat on the mat and the cat"


def _hf(model, prompt):
    # Independent path: the wrapped HF model's hidden states, without TransformerLens hooks.
    tokens = interp.tokenize(model, prompt).tokens
    with torch.no_grad():
        return model.original_model(tokens, output_hidden_states=True)


def test_resid_pre_matches_hf_hidden_states(tiny_model):
    out = _hf(tiny_model, PROMPT)
    for layer in range(interp.model_info(tiny_model).n_layers):
        view = interp.activation_view(tiny_model, PROMPT, layer, "resid_pre")
        torch.testing.assert_close(view.values, out.hidden_states[layer][0], atol=1e-5, rtol=1e-5)
        assert len(view.tokens) == view.values.shape[0]


def test_norms_summary_and_top_dims(tiny_gpt2):
    view = interp.activation_view(tiny_gpt2, PROMPT, 1, "neurons")
    assert view.values.shape[1] == interp.model_info(tiny_gpt2).d_mlp
    torch.testing.assert_close(view.norms, torch.sqrt((view.values**2).sum(-1)))
    summary = view.position_summary(-1, k=5)
    vec = view.values[-1].tolist()
    expected = sorted(range(len(vec)), key=lambda d: -abs(vec[d]))[:5]
    assert [d for d, _ in summary.top_dims] == expected
    assert summary.position == len(view.tokens) - 1
    assert summary.norm == pytest.approx(sum(v * v for v in vec) ** 0.5, rel=1e-5)
    peak = view.values.abs().max(0).values.tolist()
    assert set(view.top_dims(3)) == set(sorted(range(len(peak)), key=lambda d: -peak[d])[:3])
    fig = view.figure(top=7)
    assert len(fig.data[0].x) == 7 and len(fig.data[0].y) == len(view.tokens)
    assert list(summary.to_frame().columns) == ["dim", "value"]


def _gpt2_pattern(model, prompt, layer):
    # softmax(q k^T / sqrt(d_head)) with a causal mask, from HF's ln_1 and c_attn weights.
    block = model.original_model.transformer.h[layer]
    info = interp.model_info(model)
    with torch.no_grad():
        x = block.ln_1(_hf(model, prompt).hidden_states[layer][0])
        q, k, _ = block.attn.c_attn(x).split(info.d_model, dim=-1)
        q, k = (t.reshape(-1, info.n_heads, info.d_head).transpose(0, 1) for t in (q, k))
        scores = q @ k.transpose(-1, -2) / info.d_head**0.5
        n = scores.shape[-1]
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        return scores.softmax(-1)


def test_attention_pattern_matches_manual_gpt2(tiny_gpt2):
    view = interp.attention_view(tiny_gpt2, PROMPT, 1)
    torch.testing.assert_close(view.patterns, _gpt2_pattern(tiny_gpt2, PROMPT, 1), atol=1e-5, rtol=1e-5)


def test_attention_view_figures_and_table(tiny_model):
    info = interp.model_info(tiny_model)
    view = interp.attention_view(tiny_model, PROMPT, 1)
    torch.testing.assert_close(view.patterns.sum(-1), torch.ones(info.n_heads, len(view.tokens)))
    assert view.n_heads == info.n_heads and view.n_kv_heads == info.n_kv_heads
    grid = view.grid_figure()
    assert len(grid.data) == info.n_heads
    assert all(t.zmin == 0 and t.zmax == 1 for t in grid.data)  # one shared colour scale
    z = view.head_figure(2, query=-1).data[0].z
    n = len(view.tokens)
    assert all((z[q][k] is None) == (k > q) for q in range(n) for k in range(n))
    table = view.attends_to(2, -1)
    assert len(table) == n and table.weight.is_monotonic_decreasing
    assert table.weight.sum() == pytest.approx(1.0, abs=1e-5)
    if info.is_gqa:
        group = info.n_heads // info.n_kv_heads
        assert [view.kv_head(h) for h in range(info.n_heads)] == [h // group for h in range(info.n_heads)]


def test_bad_input_names_the_value(tiny_gpt2):
    with pytest.raises(ValueError, match=r"layer=5, model has layers 0\.\.1"):
        interp.activation_view(tiny_gpt2, PROMPT, 5)
    with pytest.raises(ValueError, match="site='resid'"):
        interp.activation_view(tiny_gpt2, PROMPT, 0, "resid")
    with pytest.raises(ValueError, match="empty string"):
        interp.attention_view(tiny_gpt2, "", 0)
    with pytest.raises(ValueError, match="not a batch"):
        interp.attention_view(tiny_gpt2, ["a", "b"], 0)
    view = interp.attention_view(tiny_gpt2, PROMPT, 0)
    with pytest.raises(ValueError, match=r"head=4, layer has heads 0\.\.3"):
        view.head_figure(4)
    with pytest.raises(ValueError, match="query=99"):
        view.attends_to(0, 99)
