"""Sampling pipeline, KV-cached generation and speculative decoding, on the tiny models.

Statistical checks use fixed seeds and a chi-square test against the exact distribution; the p-value
threshold (1e-3) only fails for a real mismatch, and the seeds make each run deterministic.
"""

from __future__ import annotations

import math

import pytest
import torch

import interp
from interp.core import kv_cache
from interp.generation import STEPS, pipeline, sampling_probs, verify
from interp.generation.decoding import Stopper

PROMPT = "The cat sat on the mat"


def chi_square_p(counts: dict[object, int], probs: dict[object, float]) -> float:
    """p-value of observed ``counts`` against ``probs``; cells expected below 5 are pooled into one."""
    n = sum(counts.values())
    assert set(counts) <= {k for k, p in probs.items() if p > 0}, "a sample fell outside the distribution's support"
    cells, pooled_obs, pooled_exp = [], 0, 0.0
    for key, p in probs.items():
        if n * p >= 5:
            cells.append((counts.get(key, 0), n * p))
        else:
            pooled_obs, pooled_exp = pooled_obs + counts.get(key, 0), pooled_exp + n * p
    if pooled_exp > 0:
        cells.append((pooled_obs, pooled_exp))
    stat = sum((o - e) ** 2 / e for o, e in cells)
    dof = len(cells) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                         torch.tensor(stat / 2, dtype=torch.float64))) if dof > 0 else 1.0


def hf_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.original_model(tokens).logits


# --- the pipeline -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, None, None), (0.7, 5, None), (1.3, None, 0.6),
                                                     (0.5, 8, 0.9), (2.0, 3, 0.2), (1.0, 100, 1.0)])
def test_pipeline_matches_an_independent_filter(temperature, top_k, top_p):
    logits = torch.randn(40, generator=torch.Generator().manual_seed(1)) * 2
    tempered = [math.exp(x / temperature) for x in logits.tolist()]
    tempered = [x / sum(tempered) for x in tempered]
    order = sorted(range(40), key=lambda i: -tempered[i])
    allowed = set(order[:top_k] if top_k else order)
    if top_p is not None:
        mass_k = sum(tempered[i] for i in allowed)
        kept, mass = set(), 0.0
        for i in (i for i in order if i in allowed):
            kept.add(i)
            mass += tempered[i] / mass_k
            if mass >= top_p:
                break
        allowed = kept
    expected = torch.tensor([tempered[i] if i in allowed else 0.0 for i in range(40)])
    expected = expected / expected.sum()
    steps = pipeline(logits, temperature, top_k, top_p)
    assert len(steps) == len(STEPS)
    torch.testing.assert_close(steps[0][0], logits.softmax(-1))
    torch.testing.assert_close(steps[-1][0], expected, atol=1e-6, rtol=1e-5)
    assert set(steps[-1][1].nonzero().flatten().tolist()) == allowed


def test_greedy_is_one_hot_at_the_argmax():
    logits = torch.tensor([0.1, 3.0, -2.0, 2.9])
    assert sampling_probs(logits, temperature=0).tolist() == [0.0, 1.0, 0.0, 0.0]
    assert sampling_probs(logits, top_k=1).tolist() == [0.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("kwargs,match", [
    ({"temperature": -0.1}, "temperature=-0.1"), ({"temperature": float("nan")}, "temperature=nan"),
    ({"top_p": 0.0}, r"top_p=0.0.*\(0, 1\]"), ({"top_p": 1.5}, r"top_p=1.5.*\(0, 1\]"),
    ({"top_k": 0}, "top_k=0.*>= 1"), ({"top_k": -3}, "top_k=-3"),
])
def test_bad_sampling_parameters_raise(tiny_gpt2, kwargs, match):
    with pytest.raises(ValueError, match=match):
        interp.next_token(tiny_gpt2, PROMPT, **kwargs)
    with pytest.raises(ValueError, match=match):
        interp.generate(tiny_gpt2, PROMPT, max_new_tokens=2, **kwargs)


def test_empty_prompt_and_bad_lengths_raise(tiny_gpt2, tiny_llama):
    with pytest.raises(ValueError, match="empty"):
        interp.next_token(tiny_gpt2, "")
    with pytest.raises(ValueError, match="empty"):
        interp.generate(tiny_gpt2, "")
    with pytest.raises(ValueError, match="max_new_tokens=0"):
        interp.generate(tiny_gpt2, PROMPT, max_new_tokens=0)
    with pytest.raises(ValueError, match="exactly one prompt"):
        interp.generate(tiny_gpt2, [PROMPT, PROMPT])
    with pytest.raises(ValueError, match="n_draft=0"):
        interp.speculative_generate(tiny_llama, tiny_gpt2, PROMPT, n_draft=0)


def test_next_token_reports_the_models_distribution(tiny_model):
    result = interp.next_token(tiny_model, PROMPT, temperature=0.5, top_k=5, top_p=0.5)
    tokens = interp.tokenize(tiny_model, PROMPT).tokens
    expected = hf_logits(tiny_model, tokens)[0, -1]
    torch.testing.assert_close(result.logits, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.probs_by_step["logits"], expected.softmax(-1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(result.probs, sampling_probs(expected, 0.5, 5, 0.5))
    assert int(result.kept_by_step["top_k"].sum()) == 5
    assert 1 <= int(result.kept_by_step["top_p"].sum()) <= 5
    assert len(result.figure().data) == len(STEPS)
    assert list(result.to_frame(4)["id"]) == expected.topk(4).indices.tolist()


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, None, None), (0.7, 5, None), (1.3, 8, 0.6),
                                                     (0, 3, 0.5), (2.0, None, 0.3)])
def test_step_effects_match_an_independent_count(tiny_model, temperature, top_k, top_p):
    result = interp.next_token(tiny_model, PROMPT, temperature=temperature, top_k=top_k, top_p=top_p)
    logits = result.logits.double().tolist()
    vocab = range(len(logits))
    # Each step by hand, in plain Python: the distribution before it, what it kept, what it removed.
    soft = lambda xs: [math.exp(x - max(xs)) / sum(math.exp(y - max(xs)) for y in xs) for x in xs]  # noqa: E731
    dists = [soft(logits)]
    if temperature == 0:
        best = max(vocab, key=lambda i: logits[i])
        dists.append([1.0 if i == best else 0.0 for i in vocab])
    else:
        dists.append(soft([x / temperature for x in logits]))
    order = sorted(vocab, key=lambda i: -dists[1][i])
    allowed = [set(vocab), {i for i in vocab if dists[1][i] > 0} if temperature == 0 else set(vocab)]
    allowed.append(set(order[:top_k]) & allowed[1] if top_k else allowed[1])
    mass = sum(dists[1][i] for i in allowed[2])
    dists.append([dists[1][i] / mass if i in allowed[2] else 0.0 for i in vocab])
    if top_p is not None:
        kept, total = set(), 0.0
        for i in sorted(allowed[2], key=lambda i: -dists[2][i]):
            kept.add(i)
            total += dists[2][i]
            if total >= top_p:
                break
    else:
        kept = allowed[2]
    allowed.append(kept)
    effects = result.step_effects()
    assert [e.step for e in effects] == list(STEPS)
    for i, effect in enumerate(effects):
        removed = allowed[i - 1] - allowed[i] if i else set()
        assert effect.kept == len(allowed[i]) and effect.removed == len(removed)
        expected_mass = sum(dists[i - 1][j] for j in removed) if i else 0.0
        assert abs(effect.removed_mass - expected_mass) < 1e-5
        p = result.probs_by_step[STEPS[i]].double()
        assert abs(effect.entropy - float(-(p[p > 0] * p[p > 0].log()).sum())) < 1e-9
        assert abs(effect.top_prob - float(p.max())) < 1e-9
    frame = result.effects_frame()
    assert list(frame["tokens left"]) == [len(a) for a in allowed]
    assert list(frame["removed"]) == [e.removed for e in effects]


def test_next_token_figure_shows_the_tail_and_a_log_axis(tiny_model):
    result = interp.next_token(tiny_model, PROMPT, temperature=1.5, top_k=4)
    linear, log = result.figure(k=6), result.figure(k=6, log=True)
    assert linear.layout.yaxis.type == "linear" and log.layout.yaxis.type == "log"
    assert len(log.data) == len(STEPS)
    ids = result.top(6)
    for trace, name in zip(linear.data, STEPS, strict=True):
        probs = result.probs_by_step[name].double()
        assert len(trace.y) == 7 and trace.x[-1].startswith(f"all other {len(probs) - 6:,} tokens")
        assert abs(trace.y[-1] - (1 - float(probs[ids].sum()))) < 1e-6  # the tail: everything not drawn alone
    effect = result.step_effects()[2]
    assert f"cut {effect.removed:,} tokens" in linear.data[2].name and effect.removed == len(result.logits) - 4


# --- generation -----------------------------------------------------------------------------------------


def test_kv_cache_logits_equal_a_full_forward(tiny_model):
    tokens = interp.tokenize(tiny_model, PROMPT).tokens
    full = hf_logits(tiny_model, tokens)
    first, cache = kv_cache.prefill(tiny_model, tokens[:, :3])
    rest = kv_cache.extend(tiny_model, tokens[:, 3:], cache)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, atol=1e-5, rtol=1e-5)
    kv_cache.crop(cache, 4)
    again = kv_cache.extend(tiny_model, tokens[:, 4:], cache)
    torch.testing.assert_close(again, full[:, 4:], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="length=99"):
        kv_cache.crop(cache, 99)


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 0.8, "top_k": 20, "seed": 3},
                                      {"temperature": 1.0, "top_p": 0.9, "seed": 11}])
def test_cached_and_uncached_generation_give_identical_tokens(tiny_model, sampling):
    cached = interp.generate(tiny_model, PROMPT, max_new_tokens=10, stop_at_eos=False, **sampling)
    plain = interp.generate(tiny_model, PROMPT, max_new_tokens=10, stop_at_eos=False, use_cache=False, **sampling)
    assert cached.new_tokens.tolist() == plain.new_tokens.tolist()
    assert len(cached.new_tokens) == 10 and cached.stop_reason == "max_new_tokens"


def test_greedy_generation_follows_the_argmax(tiny_llama):
    out = interp.generate(tiny_llama, PROMPT, max_new_tokens=6, temperature=0, stop_at_eos=False)
    tokens = interp.tokenize(tiny_llama, PROMPT).tokens
    for _ in range(6):
        tokens = torch.cat([tokens, hf_logits(tiny_llama, tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert out.new_tokens.tolist() == tokens[0, -6:].tolist()
    top1 = interp.generate(tiny_llama, PROMPT, max_new_tokens=6, top_k=1, seed=5, stop_at_eos=False)
    assert top1.new_tokens.tolist() == out.new_tokens.tolist()


def test_seeded_generation_is_reproducible(tiny_gpt2):
    a = interp.generate(tiny_gpt2, PROMPT, max_new_tokens=8, seed=42, stop_at_eos=False)
    b = interp.generate(tiny_gpt2, PROMPT, max_new_tokens=8, seed=42, stop_at_eos=False)
    c = interp.generate(tiny_gpt2, PROMPT, max_new_tokens=8, seed=43, stop_at_eos=False)
    assert a.new_tokens.tolist() == b.new_tokens.tolist() != c.new_tokens.tolist()
    unseeded = interp.generate(tiny_gpt2, PROMPT, max_new_tokens=8, stop_at_eos=False)
    replay = interp.generate(tiny_gpt2, PROMPT, max_new_tokens=8, seed=unseeded.seed, stop_at_eos=False)
    assert unseeded.new_tokens.tolist() == replay.new_tokens.tolist()


def test_sampling_frequencies_match_the_filtered_distribution(tiny_gpt2):
    settings = {"temperature": 0.05, "top_k": 4}
    probs = interp.next_token(tiny_gpt2, PROMPT, **settings).probs
    counts: dict[int, int] = {}
    for seed in range(300):
        token = int(interp.generate(tiny_gpt2, PROMPT, max_new_tokens=1, seed=seed, **settings).new_tokens[0])
        counts[token] = counts.get(token, 0) + 1
    exact = {i: float(probs[i]) for i in probs.nonzero().flatten().tolist()}
    assert len(exact) == 4
    assert chi_square_p(counts, exact) > 1e-3


def test_stop_strings_and_end_of_text(tiny_gpt2):
    full = interp.generate(tiny_gpt2, PROMPT, max_new_tokens=6, temperature=0, stop_at_eos=False)
    stop = tiny_gpt2.tokenizer.decode(full.new_tokens[:1])
    assert stop.strip() and "\ufffd" not in stop, "the greedy first token should decode to clean text"
    stopped = interp.generate(tiny_gpt2, PROMPT, max_new_tokens=6, temperature=0, stop=[stop], stop_at_eos=False)
    assert stopped.stop_reason == "stop" and stopped.new_tokens.tolist() == full.new_tokens[:1].tolist()
    assert stopped.text == ""
    never = interp.generate(tiny_gpt2, PROMPT, max_new_tokens=6, temperature=0, stop="#never#", stop_at_eos=False)
    assert never.stop_reason == "max_new_tokens" and never.text == full.text
    stopper = Stopper(tiny_gpt2.tokenizer, None, stop_at_eos=True)
    eos = tiny_gpt2.tokenizer.eos_token_id
    assert stopper.check([5, eos]) == "eos" and stopper.text([5, eos]) == tiny_gpt2.tokenizer.decode([5])
    with pytest.raises(ValueError, match="stop strings"):
        interp.generate(tiny_gpt2, PROMPT, stop=[""])


# --- speculative decoding --------------------------------------------------------------------------------


def test_verify_keeps_the_target_distribution():
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.1, 0.1, 0.4, 0.4], [0.25, 0.25, 0.25, 0.25]])
    q = torch.tensor([[0.2, 0.2, 0.2, 0.4], [0.7, 0.1, 0.1, 0.1]])
    first: dict[int, int] = {}
    second: dict[int, int] = {}
    bonus: dict[int, int] = {}
    for _ in range(6000):
        drafted = [int(torch.multinomial(q[i], 1, generator=gen)) for i in range(2)]
        accepted, token = verify(p, q, drafted, gen)
        out = drafted[:accepted] + [token]
        first[out[0]] = first.get(out[0], 0) + 1
        if len(out) > 1:
            second[out[1]] = second.get(out[1], 0) + 1
        if accepted == 2:
            bonus[token] = bonus.get(token, 0) + 1
    for counts, row in ((first, p[0]), (second, p[1]), (bonus, p[2])):
        assert chi_square_p(counts, dict(enumerate(row.tolist()))) > 1e-3


def test_speculative_greedy_equals_target_greedy(tiny_gpt2, tiny_llama):
    plain = interp.generate(tiny_llama, PROMPT, max_new_tokens=10, temperature=0, stop_at_eos=False)
    spec = interp.speculative_generate(tiny_llama, tiny_gpt2, PROMPT, max_new_tokens=10, n_draft=3, temperature=0,
                                       stop_at_eos=False, baseline=True)
    assert spec.new_tokens.tolist() == plain.new_tokens.tolist()
    assert spec.baseline_seconds is not None and spec.speedup > 0
    same = interp.speculative_generate(tiny_llama, tiny_llama, PROMPT, max_new_tokens=9, n_draft=4, seed=1,
                                       stop_at_eos=False)
    # A draft identical to the target is always accepted: rounds of 4 drafted + 1 bonus token.
    assert same.acceptance_rate == 1.0 and same.target_calls == 2 and len(same.new_tokens) == 9
    assert len(same.figure().data) == 2 and len(same.to_frame()) == same.target_calls


def test_speculative_sampling_keeps_the_target_distribution(tiny_llama):
    settings = {"temperature": 0.15, "top_k": 3}
    tokens = interp.tokenize(tiny_llama, PROMPT).tokens
    p1 = sampling_probs(hf_logits(tiny_llama, tokens)[0, -1], **settings)
    exact = {}
    for x1 in p1.nonzero().flatten().tolist():
        longer = torch.cat([tokens, tokens.new_tensor([[x1]])], dim=1)
        p2 = sampling_probs(hf_logits(tiny_llama, longer)[0, -1], **settings)
        exact.update({(x1, x2): float(p1[x1] * p2[x2]) for x2 in p2.nonzero().flatten().tolist()})
    counts: dict[tuple[int, int], int] = {}
    accepted = drafted = 0
    for seed in range(200):
        # The draft is the same model at a higher temperature: it overlaps the target without matching it,
        # so both acceptances and rejections happen.
        out = interp.speculative_generate(tiny_llama, tiny_llama, PROMPT, max_new_tokens=3, n_draft=2, seed=seed,
                                          draft_temperature=1.0, stop_at_eos=False, **settings)
        pair = tuple(out.new_tokens[:2].tolist())
        counts[pair] = counts.get(pair, 0) + 1
        accepted += sum(r.accepted for r in out.rounds)
        drafted += out.drafted
    assert 0.1 < accepted / drafted < 0.95
    assert chi_square_p(counts, exact) > 1e-3


def test_speculative_rejects_models_with_different_vocabularies(tiny_gpt2):
    with pytest.raises(ValueError, match="do not share a tokenizer"):
        interp.speculative_generate(tiny_gpt2, _ShiftedVocab(tiny_gpt2), PROMPT)


class _ShiftedVocab:
    """A stand-in draft whose tokenizer maps one token to a different id."""

    def __init__(self, model):
        self.cfg, self.original_model = model.cfg, model.original_model
        vocab = dict(model.tokenizer.get_vocab())
        first = next(iter(vocab))
        vocab[first] = vocab[first] + 1
        self.tokenizer = type("Tok", (), {"get_vocab": lambda _self: vocab})()
