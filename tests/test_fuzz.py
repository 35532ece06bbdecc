"""Bad input, found by search: property tests (hypothesis) and the cases behind them.

Every entry point must either return a result that matches an independent computation or raise a
``ValueError``; any other exception (IndexError, RuntimeError, a NaN result...) fails. Inputs are
arbitrary unicode (control characters, surrogate-free), empty and whitespace strings, texts whose
token count lies around ``n_ctx``, and layer / position indices in and out of range. The tiny models of
``conftest.py`` (GPT-2 n_ctx 32, Llama n_ctx 64) keep each example to milliseconds.
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import interp
from interp import rome
from interp.rome.counterfact import score_targets

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
"""Small and deterministic enough for every `make test`; the fixtures are session-scoped and never modified."""

WORDS = ["the", " cat", " sat", " on", " mat", "\n", " ", "\t", "é", "日本", "\x00", "\x1b[0m", "🙂", "a"]
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),  # any unicode, control characters too
    st.text(st.sampled_from(" \t\n\r\x0b\x0c\u00a0\u2003\u3000"), max_size=4),  # empty and whitespace
    # Token counts around n_ctx (32 for the GPT-2, 64 for the Llama), so the limit is crossed both ways.
    st.builds(lambda w, n: w * n, st.sampled_from([" x", " the", "日"]), st.sampled_from([15, 29, 31, 32, 62, 63, 64])),
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map("".join),
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map("".join),
)


def expected_rows(model, texts: list[str]) -> list[list[int]] | None:
    """Token rows tokenize must give, computed independently; None when it must raise ValueError."""
    info = interp.model_info(model)
    rows = []
    for text in texts:
        if text == "" or text.isspace():
            return None
        ids = model.tokenizer.encode(text, add_special_tokens=False)
        row = [model.tokenizer.bos_token_id, *ids] if info.prepend_bos else ids
        if len(row) > info.n_ctx:
            return None
        rows.append(row)
    return rows


def unbatched_logits(model, row: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([row]), return_type="logits")[0].float()


@FUZZ
@given(texts=st.lists(TEXT, min_size=1, max_size=3))
def test_tokenize_gives_the_encoded_rows_or_a_value_error(tiny_model, texts):
    rows = expected_rows(tiny_model, texts)
    event("refused" if rows is None else "accepted")
    if rows is None:
        with pytest.raises(ValueError):
            interp.tokenize(tiny_model, texts)
        return
    tokens, mask = interp.tokenize(tiny_model, texts)
    assert tokens.shape == (len(rows), max(map(len, rows)))
    for i, row in enumerate(rows):
        assert tokens[i, : len(row)].tolist() == row
        assert mask[i].tolist() == [1] * len(row) + [0] * (tokens.shape[1] - len(row))


@FUZZ
@given(texts=st.lists(TEXT, min_size=1, max_size=2), layer=st.integers(-4, 4))
def test_capture_equals_an_unbatched_forward_or_a_value_error(tiny_model, texts, layer):
    rows = expected_rows(tiny_model, texts)
    n_layers = interp.model_info(tiny_model).n_layers
    if rows is None:
        with pytest.raises(ValueError):
            interp.capture(tiny_model, texts, names=["resid"])
        return
    cap = interp.capture(tiny_model, texts, names=["resid"])
    for i, row in enumerate(rows):
        torch.testing.assert_close(cap.logits[i, : len(row)].float(), unbatched_logits(tiny_model, row),
                                   rtol=1e-4, atol=1e-4)
    assert cap.last_positions.tolist() == [len(r) - 1 for r in rows]
    if 0 <= layer < n_layers:
        assert cap.resid(layer).shape == (len(rows), cap.tokens.shape[1], interp.model_info(tiny_model).d_model)
    else:
        with pytest.raises(ValueError, match=f"layer={layer}"):
            cap.resid(layer)
        with pytest.raises(ValueError):
            interp.capture(tiny_model, texts, names=[f"blocks.{layer % 7 + n_layers}.hook_resid_pre"])


@FUZZ
@given(text=TEXT, positions=st.lists(st.integers(-70, 70), min_size=1, max_size=3))
def test_logit_lens_final_layer_is_the_model_or_a_value_error(tiny_model, text, positions):
    rows = expected_rows(tiny_model, [text])
    if rows is None:
        with pytest.raises(ValueError):
            interp.logit_lens(tiny_model, text, positions=positions)
        return
    n = len(rows[0])
    if any(not -n <= p < n for p in positions):
        with pytest.raises(ValueError):
            interp.logit_lens(tiny_model, text, positions=positions)
        return
    lens = interp.logit_lens(tiny_model, text, positions=positions)
    assert lens.resid.shape[:3] == (interp.model_info(tiny_model).n_layers + 1, 1, len(positions))
    assert lens.positions[0].tolist() == [p % n for p in positions]
    final = unbatched_logits(tiny_model, rows[0])[[p % n for p in positions]].log_softmax(-1)
    torch.testing.assert_close(lens.logprobs[-1, 0].float(), final, rtol=1e-4, atol=1e-4)


@FUZZ
@given(text=TEXT, max_new_tokens=st.integers(1, 4))
def test_next_token_and_greedy_generate_follow_the_model_or_a_value_error(tiny_model, text, max_new_tokens):
    rows = expected_rows(tiny_model, [text])
    event("refused" if rows is None else "accepted")
    if rows is None:
        with pytest.raises(ValueError):
            interp.next_token(tiny_model, text)
        with pytest.raises(ValueError):
            interp.generate(tiny_model, text, max_new_tokens=max_new_tokens)
        return
    row, n_ctx = rows[0], interp.model_info(tiny_model).n_ctx
    logits = unbatched_logits(tiny_model, row)[-1]
    result = interp.next_token(tiny_model, text)
    torch.testing.assert_close(result.logits, logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(result.probs.sum(), torch.tensor(1.0), rtol=0, atol=1e-5)
    out = interp.generate(tiny_model, text, max_new_tokens=max_new_tokens, temperature=0, stop_at_eos=False)
    assert out.prompt_tokens.tolist() == row
    assert len(out.new_tokens) == min(max_new_tokens, n_ctx - len(row))
    assert out.stop_reason == ("n_ctx" if n_ctx - len(row) < max_new_tokens else "max_new_tokens")
    if len(out.new_tokens):
        assert int(out.new_tokens[0]) == int(logits.argmax())


WELL_FORMED = st.tuples(
    st.sampled_from(["{} is located in", "So {}", "日本 {} is"]),
    st.sampled_from(["The Eiffel Tower", "the cat", "日本", " x" * 30]),
    st.sampled_from([" the", " cat", " Rome", " mat on the", " x" * 20, " x" * 60]),
)
"""Requests that are mostly valid, drawn as often as arbitrary ones so both outcomes are exercised."""


@FUZZ
@given(request=st.one_of(WELL_FORMED, st.tuples(TEXT.map(lambda t: t + " {} is in"), TEXT, TEXT),
                         st.tuples(TEXT, TEXT, TEXT)))
def test_check_request_returns_the_target_ids_or_a_value_error(tiny_model, request):
    prompt, subject, target = request
    try:
        ids = rome.check_request(tiny_model, prompt, subject, target)
    except ValueError:
        event("refused with ValueError")
        return
    event("accepted")
    assert ids == tiny_model.tokenizer.encode(target, add_special_tokens=False) and ids
    filled = interp.tokenize(tiny_model, prompt.replace("{}", subject)).tokens.shape[1]
    assert filled + len(ids) <= interp.model_info(tiny_model).n_ctx


# The cases behind the properties, spelled out.


def test_whitespace_prompt_is_refused_naming_its_index(tiny_gpt2):
    with pytest.raises(ValueError, match=r"prompt 1 is only whitespace \(' \\t\\n'\)"):
        interp.tokenize(tiny_gpt2, ["fine", " \t\n"])
    with pytest.raises(ValueError, match="prompt 0 is only whitespace"):
        interp.capture(tiny_gpt2, "\u3000", names=[])
    # Whitespace inside or around text is kept, and a space token still goes through as an id.
    assert interp.tokenize(tiny_gpt2, " the ").tokens.shape[1] > 1
    space = tiny_gpt2.tokenizer.encode(" ", add_special_tokens=False)
    assert interp.generate(tiny_gpt2, torch.tensor(space), max_new_tokens=1, temperature=0).new_tokens.numel() == 1


def test_rome_request_past_n_ctx_is_refused_naming_both_counts(tiny_model):
    n_ctx = interp.model_info(tiny_model).n_ctx
    target = " the" * n_ctx
    n_target = len(tiny_model.tokenizer.encode(target, add_special_tokens=False))
    n_prompt = interp.tokenize(tiny_model, "The Eiffel Tower is in").tokens.shape[1]
    with pytest.raises(ValueError, match=f"{n_prompt + n_target} tokens .*n_ctx={n_ctx}"):
        rome.check_request(tiny_model, "{} is in", "The Eiffel Tower", target)
    # One token short of the limit is accepted (or refused only as the model's current answer).
    fits = " the" * (n_ctx - n_prompt)
    try:
        rome.check_request(tiny_model, "{} is in", "The Eiffel Tower", fits)
    except ValueError as err:
        assert "already the model's answer" in str(err)


@pytest.mark.parametrize("target", ["", "   "])
def test_empty_target_is_refused_by_the_request_and_the_scoring(tiny_gpt2, target):
    with pytest.raises(ValueError, match="target"):
        rome.check_request(tiny_gpt2, "{} is in", "The Eiffel Tower", target)
    if target == "":
        with pytest.raises(ValueError, match=r"pair 1: target='' encodes to no token"):
            score_targets(tiny_gpt2, [("The cat", " sat"), ("The cat", target)])


def test_scoring_a_target_past_n_ctx_is_refused(tiny_gpt2):
    with pytest.raises(ValueError, match="pair 0: prompt plus target is .* n_ctx=32"):
        score_targets(tiny_gpt2, [("The cat", " sat" * 40)])


@pytest.fixture(scope="module")
def nan_gpt2(tiny_gpt2):
    """A deep copy of the tiny GPT-2 whose final norm weights are NaN (the shared fixture is untouched)."""
    model = copy.deepcopy(tiny_gpt2)
    with torch.no_grad():
        for name, p in model.original_model.named_parameters():
            if name.startswith("transformer.ln_f"):
                p.fill_(float("nan"))
    return model


@pytest.fixture(scope="module")
def inf_gpt2(tiny_gpt2):
    """A deep copy of the tiny GPT-2 whose final norm bias is +inf."""
    model = copy.deepcopy(tiny_gpt2)
    with torch.no_grad():
        model.original_model.transformer.ln_f.bias.fill_(float("inf"))
    return model


@pytest.mark.parametrize("broken", ["nan_gpt2", "inf_gpt2"])
def test_non_finite_logits_stop_generation(request, tiny_gpt2, broken):
    model = request.getfixturevalue(broken)
    with pytest.raises(ValueError, match="non-finite logits at the last prompt position"):
        interp.next_token(model, "The cat")
    for use_cache in (True, False):
        with pytest.raises(ValueError, match=r"non-finite logits at generation step 0 \(position \d+\)"):
            interp.generate(model, "The cat", max_new_tokens=3, use_cache=use_cache)
    with pytest.raises(ValueError, match=r"non-finite logits at round 0, draft token 0 \(draft model\)"):
        interp.speculative_generate(tiny_gpt2, model, "The cat", max_new_tokens=4, n_draft=2)
    with pytest.raises(ValueError, match=r"non-finite logits at round 0 \(target model\)"):
        interp.speculative_generate(model, tiny_gpt2, "The cat", max_new_tokens=4, n_draft=2)
    # The shared model is untouched and still finite.
    assert torch.isfinite(interp.next_token(tiny_gpt2, "The cat").logits).all()
