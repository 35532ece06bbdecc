"""Defaults sized for the model (issue #21): budgets, chunked passes equal to one pass, streamed ROME statistics,
the cached layer choice, and ROME's refusals on mixture-of-experts blocks.

The tiny models are far inside every budget, so the budgets are shrunk with ``monkeypatch`` to make the large-model
paths run; every chunked or sized result is checked against an independent computation over the same tokens.
"""

from __future__ import annotations

import pytest
import torch

import interp
from interp import rome
from interp.core.tokens import bos_offset
from interp.heads import ablation, census, induction, sizing
from interp.reference.world_text import world_tokens
from interp.rome import keys, layers

PROMPT, SUBJECT = "{} is located in the city of", "The Eiffel Tower"


@pytest.fixture(autouse=True)
def stats_cache(tmp_path, monkeypatch):
    """ROME's caches go to a temporary folder, never to the user's."""
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))


def test_sizing_estimates(tiny_gpt2):
    info = interp.model_info(tiny_gpt2)
    weights = sum(p.numel() for p in tiny_gpt2.blocks.parameters())
    assert sizing.token_flops(tiny_gpt2) == 2.0 * (weights + info.d_model * info.d_vocab)
    assert sizing.budget_tokens(tiny_gpt2, sizing.token_flops(tiny_gpt2) * 10, passes=2) == 5
    assert sizing.budget_tokens(tiny_gpt2, 1.0) == 1  # never zero
    per_token = 2 * info.d_vocab + 3 * info.n_heads * 16 + 4 * info.d_mlp + 8 * info.d_model
    assert sizing.rows_per_pass(tiny_gpt2, 16, budget=4 * 16 * per_token * 3) == 3
    assert sizing.rows_per_pass(tiny_gpt2, 16, budget=1) == 1


def test_small_models_keep_the_old_defaults(tiny_model):
    """Inside the budgets the defaults are what they always were: 16 rows filling the context, 16 x span 32."""
    info = interp.model_info(tiny_model)
    assert census.census_lengths(tiny_model) == (info.n_ctx, None)
    assert census.default_census_tokens(tiny_model).shape[0] == 16
    bos = bos_offset(tiny_model)
    assert induction.probe_size(tiny_model, None, None) == (min(32, (info.n_ctx - bos) // 2), 16)
    assert induction.probe_size(tiny_model, 5, 3) == (5, 3)


def test_large_model_defaults_shrink_to_the_budget(tiny_gpt2, monkeypatch):
    info = interp.model_info(tiny_gpt2)
    passes = info.n_layers * info.n_heads
    flops = sizing.token_flops(tiny_gpt2)
    monkeypatch.setattr(census, "ABLATION_FLOPS", flops * passes * 80.5)  # 80 tokens of ablations
    monkeypatch.setattr(census, "PATTERN_FLOPS", flops * 16 * 20.5)  # 16 rows of 20 tokens
    assert census.census_lengths(tiny_gpt2) == (20, 10)
    monkeypatch.setattr(induction, "ABLATION_FLOPS", flops * passes * 88.5)  # 8 rows of 11 tokens
    assert induction.probe_size(tiny_gpt2, None, None) == (5, 8)  # BOS + 2 * 5
    assert induction.probe_size(tiny_gpt2, 5, None) == (5, 8)
    assert induction.probe_size(tiny_gpt2, None, 4) == (10, 4)  # 22 tokens a row: span 10
    report = interp.find_induction_heads(tiny_gpt2, progress=False)
    assert (report.seq_len, report.batch) == (5, 8)


def test_census_default_ablates_its_own_short_batch(tiny_gpt2, monkeypatch):
    """With a small ablation budget, importance is measured on 8 short rows, exactly as an ablation of them."""
    info = interp.model_info(tiny_gpt2)
    monkeypatch.setattr(census, "ABLATION_FLOPS", sizing.token_flops(tiny_gpt2) * info.n_layers * info.n_heads * 80.5)
    result = interp.head_census(tiny_gpt2, seed=3, progress=False)
    short = census.default_census_tokens(tiny_gpt2, seed=3, seq_len=10, n_rows=8)
    assert short.shape == (8, 9)  # BOS + 4 + 4
    cap = interp.capture(tiny_gpt2, short, names=["z"])
    loss_mask = torch.ones_like(short, dtype=torch.bool)
    loss_mask[:, -1] = False
    losses = ablation.next_token_losses(cap.logits, short)
    clean = float(losses[loss_mask].mean())
    z_mean = [z.mean(0) for z in (cap.z(layer) for layer in range(info.n_layers))]
    expected = ablation.head_ablation_losses(tiny_gpt2, short, loss_mask, z_mean) - clean
    assert result.clean_loss == pytest.approx(clean, rel=1e-5)
    torch.testing.assert_close(result.importance, expected, atol=1e-5, rtol=0)
    # The patterns still come from the 16 full-length rows.
    full = census.default_census_tokens(tiny_gpt2, seed=3)
    torch.testing.assert_close(result.scores, interp.head_census(tiny_gpt2, full, importance=False).scores)


def test_chunked_passes_equal_one_pass(tiny_gpt2, monkeypatch):
    """Scores, clean loss, z means and ablation losses summed over one-row chunks equal the whole batch's."""
    prompts = ["The cat sat on the mat and the cat sat", "One two three one two three", "Paris is in France"]
    whole = interp.head_census(tiny_gpt2, prompts, progress=False)
    joint = ablation.joint_ablation_loss(tiny_gpt2, *_batch_and_mask(tiny_gpt2, prompts), [(0, 1), (1, 2)], None,
                                         method="zero")
    for module in (census, ablation):
        monkeypatch.setattr(module, "rows_per_pass", lambda model, pos, budget=0: 1)
    chunked = interp.head_census(tiny_gpt2, prompts, progress=False)
    torch.testing.assert_close(chunked.scores, whole.scores, atol=1e-6, rtol=0, equal_nan=True)
    torch.testing.assert_close(chunked.importance, whole.importance, atol=1e-5, rtol=0)
    assert chunked.clean_loss == pytest.approx(whole.clean_loss, rel=1e-6)
    assert ablation.joint_ablation_loss(tiny_gpt2, *_batch_and_mask(tiny_gpt2, prompts), [(0, 1), (1, 2)], None,
                                        method="zero") == pytest.approx(joint, rel=1e-6)


def _batch_and_mask(model, prompts):
    batch = interp.tokenize(model, prompts)
    loss_mask = torch.zeros_like(batch.attention_mask, dtype=torch.bool)
    loss_mask[:, :-1] = batch.attention_mask[:, 1:].bool()
    return batch.tokens[:, :], loss_mask


def test_key_stats_stream_in_chunks_and_cap_tokens(tiny_gpt2, monkeypatch):
    info = interp.model_info(tiny_gpt2)
    monkeypatch.setattr(keys, "rows_per_pass", lambda model, pos, budget=0: 2)  # 3 sequences: chunks of 2 and 1
    mom2 = rome.key_stats(tiny_gpt2, 1, 64, max_tokens=3 * info.n_ctx - 5, progress=False)  # rounds up to 3
    assert rome.stats_path(tiny_gpt2, 1, 3).is_file()
    tokens = world_tokens(tiny_gpt2, 3, seed=1)
    neurons = interp.capture(tiny_gpt2, tokens, names=["neurons"]).neurons(1).reshape(-1, info.d_mlp).double()
    torch.testing.assert_close(mom2, (neurons.T @ neurons / neurons.shape[0]).float(), rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(keys, "STATS_FLOPS", sizing.token_flops(tiny_gpt2) * 2 * info.n_ctx)  # default cap: 2
    rome.key_stats(tiny_gpt2, 1, 64, progress=False)
    assert rome.stats_path(tiny_gpt2, 1, 2).is_file() and not rome.stats_path(tiny_gpt2, 1, 64).is_file()


def test_traced_layer_choice_is_cached(tiny_gpt2, monkeypatch):
    trace = interp.causal_trace(tiny_gpt2, PROMPT, SUBJECT, kind="mlp", window=1, samples=2)
    first = rome.traced_scores(tiny_gpt2, PROMPT, SUBJECT, samples=2)
    torch.testing.assert_close(first, trace.scores[trace.subject_last])

    def no_trace(*args, **kwargs):
        raise AssertionError("the causal trace ran again")

    monkeypatch.setattr(layers, "trace_state", no_trace)
    assert torch.equal(rome.traced_scores(tiny_gpt2, PROMPT, SUBJECT, samples=2), first)
    assert rome.choose_layer(tiny_gpt2, PROMPT, SUBJECT, samples=2) == int(first[:-1].argmax())
    with pytest.raises(AssertionError, match="ran again"):  # another request is another trace
        rome.traced_scores(tiny_gpt2, "{} sat on the mat", "The cat", samples=2)


@pytest.fixture(scope="module")
def tiny_mixtral(tmp_path_factory):
    from interp.core.toy_families import save_family

    return interp.load(save_family("mixtral", tmp_path_factory.mktemp("mixtral")), device="cpu")


def test_rome_refuses_mixture_of_experts(tiny_mixtral):
    before = {k: v.clone() for k, v in tiny_mixtral.state_dict().items()}
    for layer in (0, None):
        with pytest.raises(NotImplementedError, match="mixtral.*mixture of experts"):
            rome.edit(tiny_mixtral, prompt=PROMPT, subject=SUBJECT, target=" Rome", layer=layer)
    after = tiny_mixtral.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len(rome.fingerprint(tiny_mixtral)) == 64  # the fingerprint still works without dense projections
