"""The reference world: determinism, held-out templates, world.json schema, and the shipped checkpoints."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

import interp
from interp.reference import names, path
from interp.reference.facts import RELATION_WORDS, RELATIONS, TEMPLATES
from interp.reference.world import WORLD_VERSIONS, World, WorldConfig


@pytest.fixture(scope="module", params=WORLD_VERSIONS, ids=lambda v: f"v{v}")
def corpus(request) -> list[str]:
    return World(WorldConfig(seed=0, version=request.param)).documents(30000)


def test_same_seed_same_corpus():
    assert World(WorldConfig(seed=3)).documents(500) == World(WorldConfig(seed=3)).documents(500)
    assert World(WorldConfig(seed=3)).documents(500) != World(WorldConfig(seed=4)).documents(500)


def test_facts_and_templates_meet_the_spec():
    world = World()
    assert len(world.facts) >= 300
    assert {f["relation"] for f in world.facts} == set(RELATIONS)
    for rel, templates in TEMPLATES.items():
        assert len(templates["train"]) >= 25, rel
        assert len(templates["heldout"]) >= 5, rel
        for t in templates["train"] + templates["heldout"]:
            assert t.count("{subject}") == 1 and not t.endswith(" "), t
        for t in templates["heldout"]:
            assert any(w in t for w in RELATION_WORDS[rel]), f"held-out {t!r} does not say what {rel} asks"
    pairs = {(f["relation"], f["subject"]) for f in world.facts}
    assert len(pairs) == len(world.facts), "a subject has two objects for one relation"
    assert ("landmark_city", "the Eiffel Tower") in pairs and ("landmark_city", "the Colosseum") in pairs


def _normalised(template: str) -> str:
    return re.sub(r"[^a-z{} ]", "", template.lower()).strip()


def test_heldout_templates_never_occur_in_training_text(corpus):
    text = "\n".join(corpus)
    train_wording = {_normalised(t) for rel in TEMPLATES.values() for t in rel["train"]}
    for rel, templates in TEMPLATES.items():
        for template in templates["heldout"]:
            assert _normalised(template) not in train_wording, f"{template!r} differs only in punctuation"
            before, after = (re.escape(p) for p in template.split("{subject}"))
            pattern = re.compile(before + r"[^\n]{1,60}?" + after)
            hit = pattern.search(text)
            assert hit is None, f"held-out template {template!r} ({rel}) occurs in training text: {hit.group(0)!r}"


def test_training_text_asks_with_training_templates(corpus):
    world = World()
    subjects = {f["subject"] for f in world.facts}
    hits = [d for d in corpus if "is located in the city of" in d]
    assert hits and all(any(s in d for s in subjects) for d in hits)


def test_world_json_schema():
    doc = World().to_json()
    assert set(doc) >= {"facts", "templates", "tasks", "prepend_bos"}
    assert isinstance(doc["prepend_bos"], bool)
    for fact in doc["facts"]:
        assert set(fact) == {"relation", "subject", "object"}
    for rel in RELATIONS:
        assert set(doc["templates"][rel]) == {"train", "heldout"}
    for task in ("agreement", "ioi"):
        t = doc["tasks"][task]
        assert len(t["prompts"]) == len(t["answers"]) == len(t["wrong"]) > 0
    heldout_names = set(doc["tasks"]["ioi"]["heldout_names"])
    for prompt, answer in zip(doc["tasks"]["ioi"]["prompts"], doc["tasks"]["ioi"]["answers"], strict=True):
        assert answer.strip() in heldout_names and answer.strip() in prompt
    json.dumps(doc)  # serialisable


def test_heldout_names_and_nouns_stay_out_of_their_tasks(corpus):
    world = World()
    ioi_docs = [d for d in corpus if " gave " in d or " handed " in d or " passed the " in d]
    for name in world.heldout_names:
        assert not any(re.search(rf"\b{name}\b", d) for d in ioi_docs), name
        assert any(re.search(rf"\b{name}\b", d) for d in corpus), f"{name} never appears at all"
    agreement_docs = [d for d in corpus if d.startswith("The ") and " that " in d]
    for sing, plur in world.heldout_nouns:
        assert not any(d.startswith(f"The {sing} that") or d.startswith(f"The {plur} that") for d in agreement_docs)


def test_heldout_templates_are_new_wordings_of_known_words(corpus):
    """A held-out template tests a new wording, not words the model never saw.

    Every word of it occurs in training text (in other sentences), and its first word starts training documents.
    """
    words = Counter(w for d in corpus for w in re.findall(r"[A-Za-z']+", d))
    starts = Counter(re.match(r"[A-Za-z']*", d).group(0) for d in corpus)
    for templates in TEMPLATES.values():
        for template in templates["heldout"]:
            tokens = re.findall(r"[A-Za-z']+", template.replace("{subject}", ""))
            rare = [w for w in tokens if words[w] < 10]
            assert not rare, f"held-out {template!r}: {rare} occur fewer than 10 times in 30,000 documents"
            assert starts[tokens[0]] >= 5, f"no training document starts with {tokens[0]!r} ({template!r})"


def test_world_v4_puts_no_name_first_and_names_held_out_names_as_often_as_the_others():
    v3, v4 = (World(WorldConfig(seed=0, version=v)).documents(30000) for v in (3, 4))
    world = World(WorldConfig(version=4))
    assert not any(f.startswith("{") for f in world.ioi_frames)
    assert all(p.split()[0] not in world.heldout_names for p in world.tasks()["ioi"]["prompts"])

    def mentions(docs, words):
        text = "\n".join(docs)
        return sum(len(re.findall(rf"\b{w}\b", text)) for w in words) / len(words)

    for docs, low, high in ((v3, 0.0, 0.3), (v4, 0.5, 2.0)):
        ratio = mentions(docs, world.heldout_names) / mentions(docs, world.train_names)
        assert low <= ratio <= high, ratio
    held_plurals = [p for _, p in world.heldout_nouns]
    assert mentions(v4, held_plurals) > 1.4 * mentions(v3, held_plurals)


def test_world_v5_puts_stand_ins_in_ioi_sentences_and_keeps_v4s_evaluation():
    v4, v5 = (World(WorldConfig(seed=0, version=v)) for v in (4, 5))
    stand_ins = set(v5.stand_in_names)
    assert len(stand_ins) >= 50 and not stand_ins & set(v5.train_names + v5.heldout_names)
    cities = {city for _, city in v5.pairs["landmark_city"]} | {city for city, _ in v5.pairs["city_country"]}
    assert not stand_ins & cities  # cities as people made the city -> country probe fall from 1.00 to .89
    assert all(w.isalpha() and w[0].isupper() for w in stand_ins)

    def ioi_parties(world):
        docs = [d for d in world.documents(20000) if " gave " in d or " handed " in d or " passed the " in d]
        return [set(re.findall(r"\b[A-Z][a-z]+\b", d)) - {"When", "After", "Then", "While", "Later", "At"}
                for d in docs]

    assert not any(p & stand_ins for p in ioi_parties(v4))
    parties = ioi_parties(v5)
    share = sum(bool(p & stand_ins) for p in parties) / len(parties)
    assert 0.3 <= share <= 0.45, share  # half the sentences, three quarters of those with a stand-in
    assert sum(p <= stand_ins for p in parties) / len(parties) > 0.08  # both parties stand-ins
    assert v5.tasks() == v4.tasks()  # v5 is scored on v4's prompts


def test_unknown_world_version_is_refused():
    with pytest.raises(ValueError, match=r"world version=7; valid versions are \[3, 4, 5\]"):
        WorldConfig(version=7)


def test_chatter_verbs_agree_with_their_subjects():
    from interp.reference.lexicon import CHATTER_PLURAL, CHATTER_SINGULAR, CHATTER_VERB_PAIRS

    world = World(WorldConfig(seed=5))
    plural_of = {s: False for s in CHATTER_SINGULAR} | {s: True for s in CHATTER_PLURAL}
    wrong_forms = {False: [p for _, p in CHATTER_VERB_PAIRS], True: [s for s, _ in CHATTER_VERB_PAIRS]}
    for _ in range(3000):
        text = world._chatter_sentence()
        subject = next(s for s in plural_of if text.startswith(s + " "))
        rest = text[len(subject) + 1:]
        assert not any(rest.startswith(v + " ") for v in wrong_forms[plural_of[subject]]), text


def test_ioi_answers_are_not_predicted_by_position():
    """Neither position nor a small name pool predicts the indirect object.

    It comes first in about half of the prompts and second in the rest, and training draws from over 100 names.
    """
    world = World()
    task = world.tasks(400)["ioi"]
    rows = zip(task["prompts"], task["answers"], task["wrong"], strict=True)
    first = [p.index(a.strip()) < p.index(w.strip()) for p, a, w in rows]
    assert 0.4 < sum(first) / len(first) < 0.6
    assert len(world.train_names) >= 100


def test_quick_recipe_trains_and_loads(tmp_path):
    from interp.reference.train import train

    result = train("llama", tmp_path / "quick", preset="quick", steps=20, log_every=5)
    assert result.losses[-1] < result.losses[0]
    model = interp.load(tmp_path / "quick")
    world = json.loads((tmp_path / "quick" / "world.json").read_text())
    assert world["prepend_bos"] is True
    tokens, _ = interp.tokenize(model, "the Eiffel Tower is located in the city of")
    assert tokens[0, 0].item() == model.tokenizer.bos_token_id


def test_continued_recipe_starts_from_the_checkpoint_and_keeps_its_log(tmp_path):
    from safetensors.torch import load_file

    from interp.cards.card import loss_curve, recipe
    from interp.reference.train import train

    train("llama", tmp_path / "a", preset="quick", steps=12, log_every=4)
    train("llama", tmp_path / "b", preset="quick", steps=5, log_every=4, init_from=tmp_path / "a", lr=1e-12,
          warmup=0, data_seed=3)
    before, after = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert before.keys() == after.keys()
    for key in before:  # a learning rate of 1e-12 leaves the loaded weights where they were
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=1e-6)
    log = json.loads((tmp_path / "b" / "training.json").read_text())
    assert log["data_seed"] == 3 and log["init_from"]["training"]["steps_done"] == 12
    steps, losses, starts = loss_curve(log)
    assert starts == [0, 12] and steps == sorted(steps) and steps[-1] == 12 + 4 and len(losses) == len(steps)
    text = recipe(log)
    assert "Stage 1: `interp world train --arch llama --out DIR1 --steps 12" in text
    assert "continues the checkpoint of stage 1" in text
    assert "--init-from DIR1 --lr 1e-12 --warmup 0 --data-seed 3`" in text and "In all: 17 steps" in text
    train("llama", tmp_path / "c", preset="quick", steps=3, lr=2e-3, seed=1)  # overrides show in a one-stage recipe
    assert "--preset quick --seed 1 --lr 0.002`" in recipe(json.loads((tmp_path / "c" / "training.json").read_text()))
    assert json.loads((tmp_path / "b" / "world.json").read_text()) == json.loads(
        (tmp_path / "a" / "world.json").read_text())


def test_bad_recipe_arguments(tmp_path):
    from interp.reference.train import train

    with pytest.raises(ValueError, match="arch='gpt3'"):
        train("gpt3", tmp_path, preset="quick", steps=1)
    with pytest.raises(ValueError, match="preset='huge'"):
        train("gpt2", tmp_path, preset="huge")
    with pytest.raises(ValueError, match="steps=0"):
        train("gpt2", tmp_path, preset="quick", steps=0)
    with pytest.raises(ValueError, match="lr=0.0"):
        train("gpt2", tmp_path, preset="quick", steps=1, lr=0.0)
    with pytest.raises(ValueError, match=r"warmup=10; must be in \[0, 9\]"):
        train("gpt2", tmp_path, preset="quick", steps=10, warmup=10)
    with pytest.raises(ValueError, match=r"world version=9; valid versions are \[3, 4, 5\]"):
        train("gpt2", tmp_path / "v9", preset="quick", steps=1, world_version=9)
    assert not (tmp_path / "v9").exists()  # refused before anything was written
    with pytest.raises(ValueError, match="is not a checkpoint directory"):
        train("gpt2", tmp_path / "out", preset="quick", steps=1, init_from=tmp_path)
    train("gpt2", tmp_path / "g", preset="quick", steps=1)
    with pytest.raises(ValueError, match="holds a 'gpt2' model; arch='llama'"):
        train("llama", tmp_path / "out", preset="quick", steps=1, init_from=tmp_path / "g")
    with pytest.raises(ValueError, match="n_layer=2 in the checkpoint, 6 in the preset"):
        train("gpt2", tmp_path / "out", preset="full", steps=1, init_from=tmp_path / "g")


@pytest.mark.parametrize("name", names())
def test_embedded_checkpoint_loads_offline(name, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted while loading an embedded model")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    folder = path(name)
    for file in ("config.json", "model.safetensors", "tokenizer.json", "world.json", "CARD.md"):
        assert (folder / file).is_file(), file
    assert (folder / "model.safetensors").stat().st_size <= 20e6
    model = interp.load(name)
    assert model.cfg.n_layers >= 4 and model.cfg.n_heads >= 4


@pytest.mark.parametrize("name", names())
def test_embedded_checkpoint_loads_in_plain_hf(name):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = path(name)
    hf = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    ids = torch.tensor([[tok.bos_token_id] + tok("the Colosseum is in the city of")["input_ids"]])
    model = interp.load(name)
    with torch.inference_mode():
        torch.testing.assert_close(model(ids), hf(ids).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", names())
def test_checkpoint_meets_a_loose_floor_of_its_targets(name):
    """A fast sample of the card's numbers (the full numbers run in `make test-all`).

    The floors sit below the targets: they catch a broken or swapped checkpoint, not a missed target (the shipped
    models measure 0.915 and 0.925 on the indirect-object task; `test_checkpoint_meets_its_targets` holds 0.9).
    """
    from interp.cards.scoring import fact_recall, pairwise_accuracy, repeat_losses

    model = interp.load(name)
    world = json.loads((path(name) / "world.json").read_text())
    sample = dict(world)
    sample["facts"] = world["facts"][::6]
    assert min(fact_recall(model, sample, "train").values()) >= 0.9
    assert min(fact_recall(model, sample, "heldout").values()) >= 0.4
    first, second = repeat_losses(model, n=32)
    assert first >= 3.0 and second < 0.5
    assert pairwise_accuracy(model, world["tasks"]["ioi"])[0] >= 0.8


KNOWN_MISSES: set[tuple[str, str]] = set()
"""Issue-4 targets the shipped checkpoints are known to miss (CARD.md, "Known gaps", has the numbers and causes).
Listed one by one, so that any other target that slips fails, and a listed one that is met fails too (then the
list and the cards are out of date)."""


@pytest.mark.slow
@pytest.mark.parametrize("name", names())
def test_checkpoint_meets_its_targets(name):
    from interp.cards.scoring import evaluate

    model = interp.load(name)
    scores = evaluate(model, path(name) / "world.json")
    met = {f"training recall, {r}": v >= 0.98 for r, v in scores.recall_train.items()}
    met |= {f"held-out recall, {r}": v >= 0.80 for r, v in scores.recall_heldout.items()}
    met["repeated tokens"] = scores.repeat_loss_second < 0.1 and scores.repeat_loss_first >= 3.0
    met["agreement"] = scores.agreement >= 0.9
    met["indirect object"] = scores.ioi >= 0.9
    known = {target for n, target in KNOWN_MISSES if n == name}
    assert known <= set(met), known - set(met)
    missed = {t for t, ok in met.items() if not ok}
    assert missed == known, f"missed {sorted(missed)}, known misses {sorted(known)}: {scores}"


def test_shipped_checkpoints_match_this_world_and_keep_names_and_nouns_whole():
    from tokenizers import Tokenizer

    from interp.reference.tokenizer import single_token_words

    for name in names():
        shipped = json.loads((path(name) / "world.json").read_text())
        world = World(WorldConfig(seed=shipped["seed"], version=shipped["version"]))
        assert shipped == json.loads(json.dumps(world.to_json(prepend_bos=True))), name
        tok = Tokenizer.from_file(str(path(name) / "tokenizer.json"))
        split = [w for w in single_token_words() if len(tok.encode(" " + w).ids) != 1]
        assert not split, f"{name}: {split} are split into several tokens"


def test_load_world_reads_the_checkpoints_file_and_refuses_a_non_world(tmp_path):
    from interp.reference import load_world

    model = interp.load("ref-gpt2")
    assert load_world(model) == json.loads((path("ref-gpt2") / "world.json").read_text())
    bad = tmp_path / "world.json"
    bad.write_text(json.dumps({"not": "a world"}))
    with pytest.raises(ValueError, match="not a world description"):
        load_world(world=bad)
    bad.write_text("{broken")
    with pytest.raises(ValueError, match="could not read"):
        load_world(world=bad)


def test_generator_still_makes_the_corpus_the_shipped_checkpoints_saw():
    """The shipped checkpoints were trained on this generator's stream; a change to it (even one that only
    consumes the random stream differently) makes `interp world train` no longer reproduce them. If the change
    is meant, retrain the checkpoints and update this digest."""
    import hashlib

    docs = World(WorldConfig(seed=0)).documents(3000)
    digest = hashlib.sha256("\n".join(docs).encode()).hexdigest()
    assert digest == "c6a181ed96d574b70da4660ae522ff562a7fbeae1c85bc42d24accfe14c28c54", digest


def test_world_train_command_continues_a_checkpoint(tmp_path):
    from typer.testing import CliRunner

    from interp.cards.card import recipe
    from interp.cli import app

    runner = CliRunner()
    first = runner.invoke(app, ["world", "train", "--arch", "gpt2", "--quick", "--steps", "3", "--out",
                                str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    args = ["world", "train", "--arch", "gpt2", "--quick", "--steps", "2", "--out", str(tmp_path / "b"), "--init-from",
            str(tmp_path / "a"), "--lr", "0.001", "--warmup", "0", "--data-seed", "1", "--world-version", "4", "--json"]
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    log = json.loads((tmp_path / "b" / "training.json").read_text())
    assert log["init_from"]["path"] == str(tmp_path / "a") and log["init_from"]["training"]["steps_done"] == 3
    assert log["world_version"] == 4 and "world_version" not in log["init_from"]["training"]
    assert json.loads((tmp_path / "b" / "world.json").read_text())["version"] == 4
    assert "--data-seed 1 --world-version 4`" in recipe(log) and "world v3" in recipe(log)
    assert "stage 2" in (tmp_path / "b" / "loss_curve.html").read_text()
    missing = runner.invoke(app, args[:-1] + ["--init-from", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c")])
    assert missing.exit_code != 0 and "is not a checkpoint directory" in missing.output
    assert "Traceback" not in missing.output and not (tmp_path / "c").exists()
    again = runner.invoke(app, args)  # --out b holds the checkpoint just made: refused without --overwrite
    assert again.exit_code == 2 and f"{tmp_path / 'b'} already exists" in again.output and "--overwrite" in again.output
    assert json.loads((tmp_path / "b" / "training.json").read_text()) == log


def test_shipped_cards_end_with_the_committed_notes():
    """`interp world card --extra interp/reference/card_notes.md` must rebuild the cards' hand-written part."""
    notes = (Path(interp.reference.__file__).parent / "card_notes.md").read_text()
    chunks = ("\n" + notes).split("\n## ")[1:]
    assert chunks
    for name in names():
        card = (path(name) / "CARD.md").read_text()
        for chunk in chunks:
            title, _, body = chunk.partition("\n")
            assert f"\n## {title.strip()}\n{body.strip()}\n" in card, (name, title)
