"""Tests of the probes package: the optimiser, the split, task checks, collection, steering and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

import interp
import probes
from probes.logistic import LogisticConfig, fit_logistic, logits

SHORT = [
    ("The cat sat", -1, "a", "cat"),
    ("The dog sat", -1, "b", "dog"),
    ("The cat ran", 2, "a", "cat"),
    ("Paris is", 1, "b", "paris"),
    ("The mat", -2, "a", "mat"),
    ("One two three", 2, "b", "one"),
    ("The log sat on", -1, "a", "log"),
    ("Mary and John", 0, "b", "mary"),
]


def _reference_fit(z: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float) -> torch.Tensor:
    """One layer, plain autograd + L-BFGS on already standardised features: class probabilities."""
    w = torch.zeros(z.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w + b, y) + 0.5 * l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (z @ w + b).softmax(-1).detach()


def test_fit_logistic_matches_independent_autograd_fit():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 120, 6, generator=gen) * torch.tensor([1.0, 10.0, 0.1]).view(3, 1, 1) + 2.0
    y = torch.randint(0, 3, (120,), generator=gen)
    fit = fit_logistic(x, y, 3, LogisticConfig(l2=0.05, max_iter=500, tolerance=1e-9))
    for layer in range(3):
        xl = x[layer].double()
        z = (xl - xl.mean(0)) / xl.std(0)
        expected = _reference_fit(z, y, 3, l2=0.05)
        got = logits(fit, x)[layer].softmax(-1).double()
        torch.testing.assert_close(got, expected, atol=1e-3, rtol=0)  # float32 fit vs float64 reference


def _planted(n_groups=150, per_group=4, d=16, seed=0):
    """Three layers of Gaussian noise; layer 1 also carries 4 * u[label] for planted class directions u."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(d, 3, generator=gen)).Q.T  # orthonormal class directions
    group_label = torch.randint(0, 3, (n_groups,), generator=gen)
    labels = group_label.repeat_interleave(per_group)
    acts = torch.randn(3, len(labels), d, generator=gen)
    acts[1] += 4.0 * u[labels]
    examples = [(f"text {i}", 0, f"class{int(y)}", f"g{i // per_group}") for i, y in enumerate(labels)]
    return probes.ProbeTask.from_examples(examples, name="planted"), acts, u


def test_probe_recovers_planted_direction():
    task, acts, u = _planted()
    report = probes.fit_activations(acts, task, seed=0)
    assert report.best_layer == 1
    assert report.accuracy[1] >= 0.95
    assert max(report.accuracy[0], report.accuracy[2]) <= 0.5  # chance is 1/3
    probe = report.probe()
    for c in range(3):
        planted = u[c] - u.mean(0)
        cos = torch.nn.functional.cosine_similarity(probe.direction(f"class{c}"), planted, dim=0)
        assert cos > 0.9, (c, cos)
    # Types default to groups, which never cross the split: the control task is at chance.
    assert report.selectivity[1] >= 0.45


def test_split_keeps_groups_apart_and_memorisation_does_not_leak():
    # Each group has its own random vector and a random label: a probe can memorise groups but
    # nothing generalises, so only a split that leaks groups into test could score well there.
    gen = torch.Generator().manual_seed(1)
    # d exceeds the training groups, so they can be memorised (shattered) by a linear probe.
    n_groups, per_group, d = 200, 5, 256
    group_vec = torch.randn(n_groups, d, generator=gen) * 4
    group_label = torch.randint(0, 2, (n_groups,), generator=gen)
    gid = torch.arange(n_groups).repeat_interleave(per_group)
    acts = (group_vec[gid] + 0.1 * torch.randn(len(gid), d, generator=gen)).unsqueeze(0)
    task = probes.ProbeTask.from_examples(
        [(f"t{i}", 0, int(group_label[g]), f"g{int(g)}") for i, g in enumerate(gid)]
    )
    report = probes.fit_activations(acts, task, control=False)
    assert not set(report.train_groups) & set(report.test_groups)
    assert len(report.train_groups) + len(report.test_groups) == n_groups
    assert report.train_accuracy[0] > 0.95
    assert report.accuracy[0] < 0.7

    split = probes.split_by_group(task.groups, [ex.label for ex in task.examples], test_size=0.25, seed=3)
    train_groups = {task.groups[i] for i in split.train.tolist()}
    test_groups = {task.groups[i] for i in split.test.tolist()}
    assert not train_groups & test_groups
    assert sorted(split.train.tolist() + split.test.tolist()) == list(range(len(task)))


def test_stratified_split_tests_only_trained_classes():
    groups = ["a1", "a2", "a3", "b1", "b2", "c1"]
    labels = ["A", "A", "A", "B", "B", "C"]
    split = probes.split_by_group(groups, labels, test_size=0.25, seed=0)
    test_labels = {labels[i] for i in split.test.tolist()}
    train_labels = {labels[i] for i in split.train.tolist()}
    assert test_labels <= train_labels
    assert "C" in train_labels and "C" not in test_labels  # one group: it can only be trained on


def test_control_labels_are_constant_per_type_and_seeded():
    types = [3, 1, 3, 2, 1, 3]
    labels = [0, 1, 1, 0, 2, 2]
    control = probes.control_labels(types, labels, n_classes=3, seed=5)
    assert control[0] == control[2] == control[5] and control[1] == control[4]
    assert control == probes.control_labels(types, labels, n_classes=3, seed=5)


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        ([("The cat", -1, "a"), ("The dog", -1, "a")], "single class"),
        ([], "no examples"),
        ([("The cat", "last", "a"), ("The dog", -1, "b")], "position='last'"),
        ([("", 0, "a"), ("The dog", -1, "b")], "non-empty string"),
        ([("The cat", 0), ("The dog", -1, "b")], "not a \\(text, position, label"),
        ([("The cat", 0, 1.5), ("The dog", -1, "b")], "label=1.5"),
    ],
)
def test_bad_task_definitions_are_rejected(examples, message):
    with pytest.raises(ValueError, match=message):
        probes.ProbeTask.from_examples(examples)


def test_position_out_of_range_names_the_example(tiny_gpt2):
    n = int(interp.tokenize(tiny_gpt2, "The dog").attention_mask.sum())
    task = probes.ProbeTask.from_examples([("The cat", 0, "a"), ("The dog", n, "b")])
    message = rf"example 1 \('The dog'\): position={n}, .*valid positions are -{n}..{n - 1}"
    with pytest.raises(ValueError, match=message):
        probes.fit(tiny_gpt2, task)
    with pytest.raises(ValueError, match="site='resid'"):
        probes.fit(tiny_gpt2, probes.ProbeTask.from_examples(SHORT), site="resid")
    with pytest.raises(ValueError, match="layer=5, model has layers 0..1"):
        probes.fit(tiny_gpt2, probes.ProbeTask.from_examples(SHORT), layers=[5])
    with pytest.raises(ValueError, match="task='colour'"):
        probes.fit(tiny_gpt2, "colour")


def test_collect_matches_unbatched_capture(tiny_model):
    task = probes.ProbeTask.from_examples(SHORT)
    got = probes.collect(tiny_model, task, layers=[0, 1], site="resid_post", batch_size=3)
    for i, ex in enumerate(task.examples):
        cap = interp.capture(tiny_model, ex.text, names="resid_post")
        n = cap.tokens.shape[1]
        assert got.positions[i] == ex.position % n
        assert got.token_ids[i] == cap.tokens[0, ex.position]
        for j, layer in enumerate([0, 1]):
            torch.testing.assert_close(got.acts[j, i], cap.resid(layer, "post")[0, ex.position], atol=1e-5, rtol=1e-5)


def test_fit_report_roundtrip_and_display(tiny_gpt2, tmp_path):
    task = probes.ProbeTask.from_examples(SHORT, name="short")
    report = probes.fit(tiny_gpt2, task, seed=1)
    assert report.layers == [0, 1] and report.task == "short" and report.site == "resid_post"
    assert report.n_train + report.n_test == len(SHORT)
    frame = report.to_frame()
    assert list(frame.columns) == ["layer", "accuracy", "train_accuracy", "control_accuracy", "selectivity", "majority"]
    torch.testing.assert_close(
        torch.tensor(frame["selectivity"].tolist()),
        torch.tensor(report.accuracy) - torch.tensor(report.control_accuracy),
    )
    assert len(report.figure().data) == 4
    json.dumps(report.to_dict())
    path = tmp_path / "short.safetensors"
    report.save(path)
    loaded = probes.ProbeReport.load(path)
    assert loaded.to_dict() == report.to_dict()
    assert torch.equal(loaded.weight, report.weight) and torch.equal(loaded.bias, report.bias)
    # The folded probe on raw activations predicts what the report scored.
    acts = probes.collect(tiny_gpt2, task, layers=[1]).acts[0]
    probe = report.probe(1)
    train_rows = [i for i, g in enumerate(task.groups) if g in report.train_groups]
    predicted = probe.predict(acts[train_rows])
    hits = sum(p == str(task.examples[i].label) for p, i in zip(predicted, train_rows, strict=True))
    assert hits / len(train_rows) == pytest.approx(report.train_accuracy[1])
    with pytest.raises(ValueError, match="layer=3 was not probed"):
        report.probe(3)


def _n_hooks(model) -> int:
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


def test_steer_adds_the_direction_and_leaves_no_hook(tiny_model):
    task = probes.ProbeTask.from_examples(SHORT)
    probe = probes.fit(tiny_model, task, layers=[0], control=False).probe(0)
    before_hooks = _n_hooks(tiny_model)
    base = interp.capture(tiny_model, "The cat sat", names="resid_post")
    with probes.steer(tiny_model, probe, "a", alpha=2.5) as steering:
        inside = _n_hooks(tiny_model)
        assert inside > before_hooks
        steered = interp.capture(tiny_model, "The cat sat", names="resid_post")
        assert _n_hooks(tiny_model) == inside  # capture's own hooks come and go; ours stay
    assert _n_hooks(tiny_model) == before_hooks
    torch.testing.assert_close(steered.resid(0, "post"), base.resid(0, "post") + steering.vector, atol=1e-5, rtol=1e-5)
    assert steering.vector.norm().item() == pytest.approx(2.5, rel=1e-5)
    assert not torch.allclose(steered.logits, base.logits)
    with pytest.raises(RuntimeError, match="boom"), probes.steer(tiny_model, probe, "b", alpha=1.0):
        raise RuntimeError("boom")
    assert _n_hooks(tiny_model) == before_hooks
    after = interp.capture(tiny_model, "The cat sat", names="resid_post")
    torch.testing.assert_close(after.logits, base.logits)
    with pytest.raises(ValueError, match="label='z'"), probes.steer(tiny_model, probe, "z", 1.0):
        pass
    assert _n_hooks(tiny_model) == before_hooks


def test_steering_effect_reports_probability_changes(tiny_gpt2):
    probe = probes.fit(tiny_gpt2, probes.ProbeTask.from_examples(SHORT), layers=[1], control=False).probe()
    effect = probes.steering_effect(tiny_gpt2, probe, "b", 5.0, ["The cat", "The dog sat"], k=4)
    assert effect.before.shape == effect.after.shape == (2, interp.model_info(tiny_gpt2).d_vocab)
    torch.testing.assert_close(effect.before.sum(-1), torch.ones(2))
    frame = effect.to_frame()
    assert len(frame) == 4
    torch.testing.assert_close(
        torch.tensor(frame["change"].tolist()), torch.tensor((frame["after"] - frame["before"]).tolist())
    )
    assert frame["change"].abs().iloc[0] > 0
    assert len(effect.figure().data) == 2


def test_world_tasks_point_at_the_right_tokens(tiny_gpt2):
    world = probes.load_world(tiny_gpt2)
    countries_by_city = {f["subject"]: f["object"] for f in world["facts"] if f["relation"] == "city_country"}
    bos = int(interp.model_info(tiny_gpt2).prepend_bos)  # positions count BOS when there is one
    task = probes.world_task("city_country", tiny_gpt2, per_subject=2)
    for ex in task.examples[:40]:
        ids = tiny_gpt2.tokenizer.encode(ex.text, add_special_tokens=False)
        upto = tiny_gpt2.tokenizer.decode(ids[: ex.position + 1 - bos])
        assert upto.endswith(ex.group), (ex, upto)
        assert countries_by_city[ex.group] == ex.label
    assert all(sum(1 for c in set(task.groups) if countries_by_city[c] == label) >= 3 for label in task.labels)
    looser = probes.world_task("city_country", tiny_gpt2, per_subject=2, min_subjects=2)
    assert set(looser.labels) > set(task.labels)
    assert all(sum(1 for c in set(looser.groups) if countries_by_city[c] == label) >= 2 for label in looser.labels)
    with pytest.raises(ValueError, match="min_subjects=1"):
        probes.world_task("city_country", tiny_gpt2, min_subjects=1)
    with pytest.raises(ValueError, match="min_subjects=99: no country"):
        probes.world_task("city_country", tiny_gpt2, min_subjects=99)

    subject = probes.world_task("in_subject", tiny_gpt2, per_subject=4)
    text = subject.examples[0].text
    rows = [ex for ex in subject.examples if ex.text == text]
    ids = tiny_gpt2.tokenizer.encode(text, add_special_tokens=False)
    inside = tiny_gpt2.tokenizer.decode([ids[ex.position - bos] for ex in rows if ex.label == "subject"])
    assert inside.strip() == rows[0].group
    assert [ex.position - bos for ex in rows] == list(range(len(ids)))

    number = probes.world_task("number", tiny_gpt2, per_subject=2)
    assert number.labels == ["plural", "singular"]
    assert all(ex.text.startswith("The ") and ex.position == -1 for ex in number.examples)
    relation = probes.world_task("relation", tiny_gpt2, per_subject=1)
    assert len(relation.labels) == 5 and len(relation) == len(world["facts"])
    with pytest.raises(ValueError, match="per_subject=0"):
        probes.world_task("relation", tiny_gpt2, per_subject=0)


def test_cli_probe_json_and_errors(tiny_llama_dir):
    from typer.testing import CliRunner

    from interp.cli import app

    runner = CliRunner()
    result = runner.invoke(
        app, ["probe", "--model", str(tiny_llama_dir), "--task", "number", "--layers", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["task"] == "number" and data["layers"] == [1] and data["labels"] == ["plural", "singular"]
    assert set(data) >= {"accuracy", "control_accuracy", "selectivity", "best_layer", "train_groups", "test_groups"}
    text = runner.invoke(app, ["probe", "--model", str(tiny_llama_dir), "--task", "number", "--layers", "1"])
    assert text.exit_code == 0 and "best layer 1" in text.stdout
    bad = runner.invoke(app, ["probe", "--model", str(tiny_llama_dir), "--task", "colour"])
    assert bad.exit_code == 2 and "task='colour'" in bad.stderr
    args = ["probe", "--model", str(tiny_llama_dir), "--task", "city_country", "--min-subjects", "1"]
    bad = runner.invoke(app, args)
    assert bad.exit_code == 2 and "min_subjects=1" in bad.stderr


@pytest.fixture(scope="module", params=["ref-gpt2", "ref-llama"])
def city_country_report(request):
    return probes.fit(interp.load(request.param, device="cpu"), "city_country")


@pytest.mark.slow
def test_reference_models_encode_the_country_of_unseen_cities(city_country_report):
    # 11 countries, tested on cities the probe never saw; chance (majority) is about 0.15.
    report = city_country_report
    best = report.layers.index(report.best_layer)
    assert report.accuracy[best] >= 4 * report.majority, report.to_frame()
    assert max(report.control_accuracy) <= 0.25, report.to_frame()  # city tokens never cross the split


@pytest.mark.slow
def test_reference_models_meet_the_issue_target_for_city_country(city_country_report):
    report = city_country_report
    best = report.layers.index(report.best_layer)
    assert report.accuracy[best] >= 0.9 and report.selectivity[best] >= 0.3, report.to_frame()
