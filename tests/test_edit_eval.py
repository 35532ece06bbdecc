"""CounterFact-style cases from world.json, the metrics, and the evaluation loop on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

import interp
from interp import rome
from interp.rome import counterfact as edit_eval
from interp.rome.counterfact import EditCase, make_cases, ngram_entropy, split_facts


@pytest.fixture(scope="module")
def world():
    return edit_eval.load_world()


def test_cases_follow_the_world(world):
    cases = make_cases(world, n=20, seed=3)
    facts = {(f["relation"], f["subject"]): f["object"] for f in world["facts"]}
    assert {c.relation for c in cases} == {f["relation"] for f in world["facts"]}
    for case in cases:
        assert facts[(case.relation, case.subject)] == case.target_true.strip()
        objects = {f["object"] for f in world["facts"] if f["relation"] == case.relation}
        assert case.target_new.strip() in objects and case.target_new != case.target_true
        assert case.prompt.replace("{}", "{subject}") in world["templates"][case.relation]["train"]
        held_out = {t.replace("{subject}", case.subject) for t in world["templates"][case.relation]["heldout"]}
        assert set(case.paraphrases) == held_out
        for prompt, own in case.neighbours:
            subject = next(s for (r, s), o in facts.items() if r == case.relation and prompt == case.prompt.format(s))
            assert subject != case.subject and facts[(case.relation, subject)] == own.strip() != case.target_new.strip()
    assert make_cases(world, n=20, seed=3) == cases


def test_dev_and_test_splits_are_disjoint(world):
    dev = {(f["relation"], f["subject"]) for f in split_facts(world, "dev")}
    test = {(f["relation"], f["subject"]) for f in split_facts(world, "test")}
    assert dev and test and not dev & test
    assert len(dev) + len(test) == len(world["facts"])
    assert {c.subject for c in make_cases(world, n=30, split="dev")} <= {s for _, s in dev}


def test_ngram_entropy_by_hand():
    text = "a b a b"
    bigrams = [1 / 3 * math.log2(3), 2 / 3 * math.log2(3 / 2)]  # (a b) twice, (b a) once
    trigrams = [math.log2(2)]  # (a b a), (b a b)
    expected = (2 / 3 * sum(bigrams) + 4 / 3 * sum(trigrams)) / 2
    assert ngram_entropy(text) == pytest.approx(expected)


def test_score_targets_matches_direct_computation(tiny_gpt2):
    (nll, acc), = edit_eval.score_targets(tiny_gpt2, [("The cat sat on the", " mat")])
    tokens = interp.tokenize(tiny_gpt2, "The cat sat on the mat").tokens
    n_prompt = interp.tokenize(tiny_gpt2, "The cat sat on the").tokens.shape[1]
    logp = interp.capture(tiny_gpt2, tokens, names=[]).logits[0].log_softmax(-1)
    target = tokens[0, n_prompt:]
    expected = -logp[torch.arange(n_prompt - 1, tokens.shape[1] - 1), target].mean()
    assert nll == pytest.approx(float(expected), rel=1e-5)
    top = logp[n_prompt - 1 : tokens.shape[1] - 1].argmax(-1)
    assert acc == pytest.approx(float((top == target).float().mean()))


def test_evaluate_reports_before_after_and_restores(tiny_gpt2_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    model = interp.load(tiny_gpt2_dir, device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    case = EditCase(relation="toy", subject="The Eiffel Tower", prompt="{} is located in the city of",
                    target_true=" Paris", target_new=" Rome",
                    paraphrases=["The Eiffel Tower is in the city of"],
                    neighbours=[("The cat is in the city of", " Paris")],
                    generation_prompts=["The Eiffel Tower is"])
    config = rome.RomeConfig(n_prefixes=2, prefix_tokens=4, steps=20, stats_samples=32)
    result = rome.evaluate(model, [case, case], layer=0, config=config, fluency_tokens=6, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    frame = result.to_frame()
    assert len(frame) == 2 and set(frame["layer"]) == {0}
    for metric in edit_eval.METRICS:
        assert f"pre_{metric}" in frame and f"post_{metric}" in frame
    assert frame["post_efficacy_magnitude"].iloc[0] > frame["pre_efficacy_magnitude"].iloc[0]
    summary = result.summary()
    assert summary["n"].iloc[0] == 2 and "fluency_drop" in summary
    assert result.to_dict()["by_relation"]["toy"]["n"] == 2
    assert len(result.figure().data) == 6

    baseline = rome.evaluate(model, [case], method="none", fluency_tokens=6, progress=False).to_frame()
    for metric in edit_eval.METRICS:
        assert baseline[f"pre_{metric}"].iloc[0] == baseline[f"post_{metric}"].iloc[0]
    ft = rome.evaluate(model, [case], method="ft", layer=0, fluency_tokens=0, progress=False).to_frame()
    assert ft["post_efficacy_magnitude"].iloc[0] > ft["pre_efficacy_magnitude"].iloc[0]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
