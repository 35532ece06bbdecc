"""Causal tracing on tiny random models: identities, batched vs one-at-a-time restorations, errors."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.tracing import KINDS, subject_span, trace_state

PROMPT = "{} is located in the city of"
SUBJECT = "The Eiffel Tower"


def test_subject_span_counts_bos(tiny_model):
    text = PROMPT.format(SUBJECT)
    start, end = subject_span(tiny_model, text, SUBJECT)
    pieces = interp.str_tokens(tiny_model, interp.tokenize(tiny_model, text).tokens[0])
    assert pieces[0] == "<|endoftext|>"
    assert "".join(pieces[start:end]) == SUBJECT


def test_unnoised_trace_equals_clean_probability(tiny_model):
    result = interp.causal_trace(tiny_model, PROMPT, SUBJECT, noise=0.0, samples=2)
    clean = interp.capture(tiny_model, PROMPT.format(SUBJECT), names=[]).last_logits[0].softmax(-1)
    assert result.clean == pytest.approx(float(clean.max()), rel=1e-6)
    assert result.corrupted == pytest.approx(result.clean, rel=1e-5)
    torch.testing.assert_close(result.scores, torch.full_like(result.scores, result.clean), rtol=1e-5, atol=0)


def test_restoring_the_last_state_gives_back_the_clean_run(tiny_model):
    result = interp.causal_trace(tiny_model, PROMPT, SUBJECT, kind="resid", samples=3)
    assert result.corrupted != pytest.approx(result.clean, rel=1e-4)  # the noise does something
    # The last block's output at the last token is all the unembedding reads.
    assert float(result.scores[-1, -1]) == pytest.approx(result.clean, rel=1e-5)


@pytest.mark.parametrize(("kind", "window"), [("resid", 1), ("mlp", 2), ("attn", 1)])
def test_batched_trace_equals_slow_loop(tiny_model, kind, window):
    result = interp.causal_trace(tiny_model, PROMPT, SUBJECT, kind=kind, window=window, samples=3, seed=5)
    n_tok, n_layers = result.scores.shape
    assert (n_tok, n_layers) == (len(result.tokens), interp.model_info(tiny_model).n_layers)
    slow = torch.empty_like(result.scores)
    for layer in range(n_layers):
        layers = range(max(0, layer - window // 2), min(n_layers, layer + (window + 1) // 2))
        for t in range(n_tok):
            restore = {KINDS[kind].format(L=L): [t] for L in layers}
            slow[t, layer] = trace_state(tiny_model, PROMPT, SUBJECT, restore, samples=3, seed=5)
    torch.testing.assert_close(result.scores, slow, rtol=1e-4, atol=1e-7)
    assert result.corrupted == pytest.approx(trace_state(tiny_model, PROMPT, SUBJECT, {}, samples=3, seed=5), rel=1e-5)


def test_result_shows_itself(tiny_gpt2):
    result = interp.causal_trace(tiny_gpt2, PROMPT, SUBJECT, kind="mlp", samples=2)
    frame = result.to_frame()
    assert len(frame) == result.scores.numel()
    assert frame["is_subject"].sum() == (result.subject[1] - result.subject[0]) * result.scores.shape[1]
    torch.testing.assert_close(result.indirect_effect, result.scores - result.corrupted)
    fig = result.figure()
    assert fig.data[0].type == "heatmap"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "The Eiffel Tower is in the city of", "subject": "the Louvre"}, "not in the prompt"),
        ({"kind": "embed"}, "kind='embed'"),
        ({"samples": 0}, "samples=0"),
        ({"kind": "mlp", "window": 5}, r"window=5; need an int in 1\.\.2"),
        ({"kind": "resid", "window": 2}, "window=2"),
    ],
)
def test_bad_input(tiny_gpt2, kwargs, message):
    with pytest.raises(ValueError, match=message):
        interp.causal_trace(tiny_gpt2, **{"prompt": PROMPT, "subject": SUBJECT, **kwargs})
