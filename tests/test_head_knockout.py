"""Tests for interp.knock_out_head against a weight-level knock-out in the plain HF model."""

import pytest
import torch
import torch.nn.functional as F

import interp

PROMPT = "the cat sat on the mat and the cat sat"


def _hf_losses(hf_model, tokens):
    with torch.no_grad():
        logits = hf_model(tokens).logits[0, :-1]
    return F.cross_entropy(logits, tokens[0, 1:], reduction="none")


def test_zero_knockout_equals_zeroed_output_projection(tiny_gpt2_dir):
    model = interp.load(tiny_gpt2_dir, device="cpu")  # a private copy: its weights get edited below
    info = interp.model_info(model)
    layer, head = 1, 2
    result = interp.knock_out_head(model, PROMPT, layer, head, method="zero")
    tokens = interp.tokenize(model, PROMPT).tokens
    hf = model.original_model
    torch.testing.assert_close(result.clean, _hf_losses(hf, tokens), atol=1e-5, rtol=1e-5)
    # Zeroing head h's z is the same as zeroing the rows of c_proj that read it (Conv1D weight is [in, out]).
    rows = slice(head * info.d_head, (head + 1) * info.d_head)
    with torch.no_grad():
        hf.transformer.h[layer].attn.c_proj.weight[rows] = 0
    torch.testing.assert_close(result.ablated, _hf_losses(hf, tokens), atol=1e-5, rtol=1e-5)
    assert result.delta == pytest.approx(float(result.ablated.mean() - result.clean.mean()), abs=1e-6)
    frame = result.to_frame()
    assert list(frame.next) == interp.str_tokens(model, tokens[0])[1:]
    assert len(result.figure().data[0].y) == len(tokens[0]) - 1


def test_mean_knockout_differs_and_bad_input(tiny_llama):
    zero = interp.knock_out_head(tiny_llama, PROMPT, 0, 1, method="zero")
    mean = interp.knock_out_head(tiny_llama, PROMPT, 0, 1, method="mean")
    torch.testing.assert_close(zero.clean, mean.clean)
    assert not torch.allclose(zero.ablated, mean.ablated)
    with pytest.raises(ValueError, match=r"head=4, model has heads 0\.\.3"):
        interp.knock_out_head(tiny_llama, PROMPT, 0, 4)
    with pytest.raises(ValueError, match="ablation='half'"):
        interp.knock_out_head(tiny_llama, PROMPT, 0, 0, method="half")
    with pytest.raises(ValueError, match="at least 2"):
        interp.knock_out_head(tiny_llama, torch.tensor([5]), 0, 0)
