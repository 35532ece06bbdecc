"""The card's measured sections on tiny random models: tables follow the model's shape, numbers match the tables.

Sections that prompt with world templates run on 64-position models: the toy tokenizer is nearly character-level,
so world prompts do not fit the 32-position ``tiny_gpt2``. A 3-layer GPT-2 next to the 2-layer Llama shows the
tables follow any number of layers.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from typer.testing import CliRunner

import interp
from interp import rome
from interp.cards import measure
from interp.cards.circuits import heads_section, lens_section, tracing_section
from interp.cards.representations import embeddings_section, probes_section, rome_section
from interp.cards.scoring import WorldScores
from interp.cards.tables import dec2, dec3, kl_cell, pct
from interp.cards.targets import targets_section
from interp.cli import app
from interp.core.toy_models import ToyConfig, save_toy_checkpoint
from interp.journey import analogy_accuracy
from interp.reference.world import World
from interp.reference.world_text import world_tokens

DEEPER_GPT2 = ToyConfig(arch="gpt2", n_layers=3, n_heads=2, d_model=32, d_mlp=64, n_ctx=64, vocab_size=300, seed=1)
"""GPT-2 with 3 layers, 2 heads and 64 positions (world prompts fit)."""
TOY_FACTS = [("the cat", "John"), ("the dog", "Mary"), ("the man", "John"), ("the girl", "Mary")]
"""A relation whose objects are single tokens of the toy vocabulary, so the lens' top-1 table has prompts."""


@pytest.fixture(scope="module")
def deeper_gpt2_dir(tmp_path_factory):
    return save_toy_checkpoint(tmp_path_factory.mktemp("deeper-gpt2"), DEEPER_GPT2)


@pytest.fixture(scope="module")
def deeper_gpt2(deeper_gpt2_dir):
    return interp.load(deeper_gpt2_dir, device="cpu")


@pytest.fixture(params=["tiny_llama", "deeper_gpt2"])
def world_model(request):
    """The 64-position models (shared: do not modify)."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def world() -> dict:
    """The reference world cut down, plus a toy relation with one-token objects.

    Per relation: 3 objects with 2 subjects each (ROME needs other objects), 3 for city_country (the city
    probe keeps countries with 3 cities), and the shortest templates.
    """
    full = World().to_json()
    facts = []
    for relation in sorted({f["relation"] for f in full["facts"]}):
        count: Counter = Counter()
        for fact in (f for f in full["facts"] if f["relation"] == relation):
            if (fact["object"] in count or len(count) < 3) and count[fact["object"]] < 2 + (relation == "city_country"):
                count[fact["object"]] += 1
                facts.append(fact)
    facts += [{"relation": "toy", "subject": s, "object": o} for s, o in TOY_FACTS]
    templates = {rel: {"train": sorted(t["train"], key=len)[:2], "heldout": sorted(t["heldout"], key=len)[:1]}
                 for rel, t in full["templates"].items()}
    templates["toy"] = {"train": ["{subject} sat with", "{subject} and"], "heldout": ["Then {subject} sat with"]}
    agreement = full["tasks"]["agreement"]
    short = sorted(range(len(agreement["prompts"])), key=lambda i: len(agreement["prompts"][i]))[:40]
    tasks = dict(full["tasks"], agreement={k: [v[i] for i in short] if k in ("prompts", "answers", "wrong") else v
                                           for k, v in agreement.items()},
                 nouns=dict(full["tasks"]["nouns"], pairs=full["tasks"]["nouns"]["pairs"][:4]))
    return dict(full, facts=facts, templates=templates, tasks=tasks)


def tables(body: str) -> list[list[list[str]]]:
    """Every Markdown table of ``body``: rows of cells, header first, separator dropped."""
    found, current = [], []
    for line in body.splitlines() + [""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                current.append([cell.strip() for cell in line.strip("|").split("|")])
        elif current:
            found.append(current)
            current = []
    return found


def test_heads_section_ranks_heads_and_names_the_previous_token_head(tiny_model):
    body, numbers = heads_section(tiny_model, batch=4)
    (table,) = tables(body)
    report = interp.find_induction_heads(tiny_model, batch=4)
    census = interp.head_census(tiny_model)
    assert table[0] == ["head", "induction score", "copying score", "ablation alone (nats)", "census label"]
    assert len(table) - 1 == len(numbers["heads"]) == max(3, len(report.heads(0.5)) + 1)
    for row, head, (layer, index, score) in zip(table[1:], numbers["heads"], report.ranked(), strict=False):
        assert row[0] == head["head"] == f"L{layer}H{index}"
        assert row[1] == f"{score:.3f}" == f"{head['induction']:.3f}"
        assert row[3] == f"{float(report.ablation[layer, index]):+.3f}"
        assert row[4] == census.labels[(layer, index)]
    prev = census.score("previous_token")
    layer, head = divmod(int(prev.argmax()), prev.shape[1])
    assert numbers["previous_token"]["head"] == f"L{layer}H{head}"
    assert f"**L{layer}H{head}**" in body and f"{float(prev[layer, head]):.3f}" in body
    assert numbers["clean_loss"] == pytest.approx(report.clean_loss)


def test_lens_section_has_a_column_per_layer(world_model, world):
    tuned = interp.TunedLens.train(world_model, steps=2, n_seqs=4, progress=False)
    body, numbers = lens_section(world_model, world, n_seqs=4, tuned=tuned)
    kl, top1 = tables(body)
    n_layers = world_model.cfg.n_layers
    assert kl[0] == ["lens", "embed", *[f"after block {layer}" for layer in range(n_layers)]]
    held = world_tokens(world_model, 4, seed=12345)
    torch.testing.assert_close(torch.tensor(numbers["kl_logit"]), interp.logit_lens(world_model, held).kl_to_final(),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(numbers["kl_tuned"]), tuned.apply(world_model, held).kl_to_final(),
                               rtol=1e-5, atol=1e-6)
    assert [row[0] for row in kl[1:]] == ["logit", "tuned"]
    assert kl[1][1:] == [kl_cell(x) for x in numbers["kl_logit"]] and kl[1][-1] == "0"
    assert top1[0][3:] == kl[0][1:] and len(top1) == 5
    one_token = sum(len(world_model.tokenizer.encode(" " + f["object"], add_special_tokens=False)) == 1
                    for f in world["facts"])
    for row in top1[1:]:
        split = "train" if "training" in row[0] else "heldout"
        counts = numbers["first_top1"][split]
        assert row[2] == f"{counts['recalled']}/{counts['prompts']}" and counts["prompts"] == one_token >= 4
        assert [int(x) for x in row[3:]] == counts[row[1]] and sum(counts[row[1]]) == counts["recalled"]


def test_lens_section_without_a_tuned_lens_says_so(tiny_llama, world):
    body, numbers = lens_section(tiny_llama, world, n_seqs=2)
    assert numbers["kl_tuned"] is None and "No tuned lens" in body
    assert [row[1] for row in tables(body)[1][1:]] == ["logit", "logit"]


def test_tracing_section_averages_the_traces(world_model, world):
    body, numbers = tracing_section(world_model, world, n_facts=3, samples=2)
    (table,) = tables(body)
    n_layers = world_model.cfg.n_layers
    assert table[0] == ["restored state", *[f"L{layer}" for layer in range(n_layers)]] and len(table) == 5
    for row, key in zip(table[1:], ("resid_subject", "mlp_subject", "resid_last", "mlp_last"), strict=True):
        assert row[1:] == [dec2(x) for x in numbers[key]]
    assert len(numbers["facts"]) == 3
    for kind in ("resid", "mlp"):
        expected = interp.tracing.average_indirect_effect(world_model, numbers["facts"], kind=kind, samples=2)
        torch.testing.assert_close(torch.tensor(numbers[f"{kind}_subject"]), expected, rtol=1e-4, atol=1e-6)
    assert f"clean p = {numbers['clean']:.3f}" in body


def test_rome_section_matches_edit_eval_and_restores_the_model(deeper_gpt2_dir, world, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    model = interp.load(deeper_gpt2_dir, device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = rome.RomeConfig(n_prefixes=2, prefix_tokens=4, steps=5, stats_samples=8)
    body, numbers = rome_section(model, world, layer=0, n=3, fluency_tokens=4, rome_config=config, layer_n=2,
                                 progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    table, by_relation, by_layer = tables(body)
    assert [row[0] for row in table[1:]] == ["unedited", "ROME (layer 0)", "constrained fine-tuning"]
    assert sum(int(row[1]) for row in by_relation[1:]) == 3
    assert set(numbers["per_relation"]) == {row[0] for row in by_relation[1:]}
    n_layers = interp.model_info(model).n_layers
    layers = [str(k) for k in range(n_layers - 1)]
    assert [row[0] for row in by_layer[1:]] == layers == [str(k) for k in numbers["per_layer"]]
    # Layer 0 on the first 2 cases is what the first 2 cases of the main run did there.
    first_two = rome.evaluate(model, rome.make_cases(world, 2, seed=0, split="test"), layer=0, config=config,
                              fluency_tokens=0, progress=False).summary().iloc[0]
    assert numbers["per_layer"][0]["paraphrase"] == pytest.approx(float(first_two["post_paraphrase"]))
    assert numbers["n"] == 3 and numbers["layers_used"] == {0: 3}
    for row, method in zip(table[1:], ("unedited", "rome", "ft"), strict=True):
        assert row[1] == pct(numbers[method]["efficacy"], 1)
        assert row[4] == pct(numbers[method]["neighbourhood"], 1)
    cases = rome.make_cases(world, 3, seed=0, split="test")
    unedited = rome.evaluate(model, cases, method="none", fluency_tokens=4, progress=False).summary().iloc[0]
    for metric in ("efficacy", "efficacy_magnitude", "paraphrase", "neighbourhood", "rewrite_acc"):
        assert numbers["unedited"][metric] == pytest.approx(float(unedited[f"post_{metric}"]))
    assert "--n 3 --split test --layer 0 --seed 0" in body


def test_probes_section_reports_every_layer(tiny_llama, world):
    body, numbers = probes_section(tiny_llama, world, tasks=["city_country"])
    (table,) = tables(body)
    assert table[0] == ["task", "L0", "L1", "peak"]
    probe = numbers["city_country"]
    cells = [f"{dec3(a)}/{dec3(c)}/{dec3(s)}"
             for a, c, s in zip(probe["accuracy"], probe["control"], probe["selectivity"], strict=True)]
    assert table[1][1:] == [*cells, str(probe["peak"])]
    assert probe["peak"] == max(probe["layers"], key=lambda layer: probe["accuracy"][layer])
    assert table[1][0].startswith(f"city_country ({probe['classes']} classes")


def test_probes_section_all_tasks(world_model, world):
    body, numbers = probes_section(world_model, world)
    (table,) = tables(body)
    assert len(table[0]) == world_model.cfg.n_layers + 2
    assert [row[0].split(" (")[0] for row in table[1:]] == list(numbers) == [
        "city_country", "city_country, min_subjects=2", "in_subject", "number", "relation"]


def test_embeddings_section_scores_one_token_pairs(tiny_gpt2, world):
    pairs = [["Mary", "John"], ["and", "the"], ["sat", "on"], ["king", "queen"]]
    body, numbers = embeddings_section(tiny_gpt2, dict(world, tasks={"gender_pairs": {"pairs": pairs}}))
    expected = analogy_accuracy(tiny_gpt2, [tuple(p) for p in pairs], k=5)
    assert numbers["questions"] == expected.n == 6
    assert numbers["top1"] == expected.top1 and numbers["topk"] == expected.topk
    (table,) = tables(body)
    assert table[1:] == [["top-1", pct(expected.top1, 1)], ["top-5", pct(expected.topk, 1)]]
    assert "king" in body and numbers["king_man_woman"] is None and "not measurable" in body


def test_targets_section_marks_met_missed_and_unmeasured():
    scores = WorldScores(recall_train={"a": 1.0, "b": 0.5}, recall_heldout={"a": 0.85, "b": 0.2},
                         repeat_loss_first=4.0, repeat_loss_second=0.05, agreement=0.95, ioi=0.5, ioi_top1=0.3)
    probes = {"city_country": {"layers": [0, 1], "accuracy": [0.95, 0.5], "selectivity": [0.2, 0.4], "peak": 0}}
    body, numbers = targets_section(scores, {"probes": probes})
    status = {row["target"]: row["status"] for row in numbers["targets"]}
    assert status["fact recall, a, training templates"] == "met"
    assert status["fact recall, b, training templates"] == "missed"
    assert status["fact recall, a, held-out templates"] == "met"
    assert status["indirect object, P(IO) > P(S) (held-out names)"] == "missed"
    assert status["ROME efficacy"] == "not measured"
    assert status["city_country probe accuracy (peak layer)"] == "met"
    assert status["city_country probe selectivity (peak layer)"] == "missed"
    (table,) = tables(body)
    assert [row[3] for row in table[1:]] == [row["status"] for row in numbers["targets"]]
    assert numbers["measured"] == 10 and numbers["met"] == 6 and "6 of 10 measured targets are met" in body


def test_measure_all_in_card_order(tiny_gpt2, world):
    scores = WorldScores(recall_train={"a": 1.0}, recall_heldout={"a": 1.0}, repeat_loss_first=math.nan)
    bodies = measure.measure_all(tiny_gpt2, world, sections=["targets", "heads"], progress=False, scores=scores)
    assert list(bodies) == ["Attention heads", "Targets"]
    with pytest.raises(ValueError, match="'bogus'"):
        measure.measure_all(tiny_gpt2, world, sections=["heads", "bogus"])


def test_card_command_rejects_unknown_sections_before_loading():
    result = CliRunner().invoke(app, ["world", "card", "--model", "ref-gpt2", "--measure", "--sections", "bogus"])
    assert result.exit_code == 2 and "bogus" in result.output
