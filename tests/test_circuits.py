"""Circuits: the edge graph, exact edge patching, EAP/EAP-IG against it, a planted wiring, the API, CLI and page."""

from __future__ import annotations

import json
from pathlib import Path

import planted_heads
import pytest
import torch
from typer.testing import CliRunner

import interp
from interp.circuits import Circuit, CircuitTask, EdgeGraph, find_circuit, make_task, pairs_task
from interp.circuits.attribution import eap_scores, sender_outputs
from interp.circuits.edge_patching import patched_metrics
from interp.circuits.reads import Norm, Reads
from interp.cli import app
from interp.core.hooks import hook_name


def _expected_edges(n_layers: int, n_heads: int, n_kv: int) -> int:
    """Edges counted one receiver at a time, independently of EdgeGraph's layer arithmetic."""
    total = 0
    for layer in range(n_layers):
        before = 1 + layer * (n_heads + 1)  # input, and every head and MLP of earlier layers
        total += before * (n_heads + 2 * n_kv)  # each q, k, v receiver of this layer
        total += before + n_heads  # the MLP also reads this layer's heads
    return total + 1 + n_layers * (n_heads + 1)  # logits read every sender


def test_graph_names_and_edges_on_a_gqa_model(tiny_llama):
    graph = EdgeGraph.for_model(tiny_llama)
    assert graph.senders == ["input", "a0.h0", "a0.h1", "a0.h2", "a0.h3", "m0", "a1.h0", "a1.h1", "a1.h2", "a1.h3",
                             "m1"]
    assert graph.receivers[:9] == ["a0.h0<q>", "a0.h1<q>", "a0.h2<q>", "a0.h3<q>", "a0.kv0<k>", "a0.kv1<k>",
                                   "a0.kv0<v>", "a0.kv1<v>", "m0"]
    assert graph.receivers[-1] == "logits" and len(graph.receivers) == 2 * 9 + 1
    assert graph.n_edges == _expected_edges(2, 4, 2)
    assert graph.edge("a0.h3", "m0") == (4, 8)
    with pytest.raises(ValueError, match="reads before the sender writes"):
        graph.edge("m0", "a0.h0<q>")
    with pytest.raises(ValueError, match="receiver='a0.h0<k>'"):
        graph.edge("input", "a0.h0<k>")  # GQA: keys are per kv head


def test_graph_without_gqa_names_kv_inputs_per_head(tiny_gpt2):
    graph = EdgeGraph.for_model(tiny_gpt2)
    assert "a1.h3<k>" in graph.receivers and not any(".kv" in r for r in graph.receivers)
    assert graph.n_edges == _expected_edges(2, 4, 4)


@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm"])
def test_norm_backward_matches_autograd(kind):
    gen = torch.Generator().manual_seed(0)
    norm = Norm(kind, torch.rand(16, generator=gen) + 0.5, torch.randn(16, generator=gen) if kind == "layernorm"
                else None, 1e-5)
    x = torch.randn(3, 5, 16, generator=gen, dtype=torch.float64).requires_grad_(True)
    grad = torch.randn(3, 5, 2, 16, generator=gen, dtype=torch.float64)
    expected = torch.stack([torch.autograd.grad(norm(x), x, grad[:, :, i])[0] for i in range(2)], dim=2)
    torch.testing.assert_close(norm.vjp(x.detach(), grad), expected, rtol=1e-10, atol=1e-10)


def test_per_head_reads_reproduce_the_model(tiny_model):
    cap = interp.capture(tiny_model, ["The cat sat on the mat", "A dog"], ["resid_pre", "q", "k", "v"])
    reads = Reads.of(tiny_model)
    info = interp.model_info(tiny_model)
    for layer in range(info.n_layers):
        for which in "qkv":
            n = info.n_heads if which == "q" else info.n_kv_heads
            x = cap.resid(layer, "pre")[:, :, None].expand(-1, -1, n, -1)
            got = reads.project(which, layer, x)
            torch.testing.assert_close(got, cap.activations[hook_name(which, layer)], rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def tasks(tiny_gpt2, tiny_llama):
    return {m: make_task(m, "induction", seq_len=5, n_prompts=3, seed=1) for m in (tiny_gpt2, tiny_llama)}


def test_removing_no_edge_is_clean_and_every_edge_is_corrupted(tiny_model, tasks):
    task = tasks[tiny_model]
    graph = EdgeGraph.for_model(tiny_model)
    with torch.no_grad():
        clean, corrupted = task.metric(tiny_model(task.clean)), task.metric(tiny_model(task.corrupted))
    assert abs(float(clean - corrupted)) > 1e-4  # the check below could not fail otherwise
    values = patched_metrics(tiny_model, graph, task, torch.stack([torch.zeros_like(graph.valid), graph.valid]))
    torch.testing.assert_close(values, torch.stack([clean, corrupted]).float(), rtol=1e-5, atol=1e-5)


def test_eap_is_the_derivative_of_exact_edge_patching(tiny_model, tasks):
    """EAP's score is the first-order term: patch each edge by eps * (corrupted - clean) and divide by eps."""
    task = tasks[tiny_model]
    graph = EdgeGraph.for_model(tiny_model)
    reads = Reads.of(tiny_model)
    clean = sender_outputs(tiny_model, reads, task.clean)[0]
    corrupted = sender_outputs(tiny_model, reads, task.corrupted)[0]
    eap = eap_scores(tiny_model, graph, task)
    edges = graph.valid.nonzero().tolist()[::3]  # a third of the edges, every kind of sender and receiver
    removed = torch.zeros(len(edges) + 1, *graph.valid.shape, dtype=torch.bool)
    for i, (s, r) in enumerate(edges, start=1):
        removed[i, s, r] = True
    eps = 1e-2
    values = patched_metrics(tiny_model, graph, task, removed, corrupted=clean + eps * (corrupted - clean))
    slope = torch.tensor([(values[i] - values[0]) / eps for i in range(1, len(edges) + 1)])
    estimate = torch.tensor([eap[s, r] for s, r in edges])
    scale = estimate.abs().max()
    assert scale > 0
    torch.testing.assert_close(slope / scale, estimate / scale, rtol=0, atol=0.03)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    gen = torch.Generator().manual_seed(7)
    prev, ind = (int(i) for i in torch.randperm(planted_heads.N_HEADS, generator=gen)[:2])
    folder = planted_heads.build(tmp_path_factory.mktemp("planted-circuit"), prev, ind)
    wiring = {("input", f"a0.h{prev}<v>"), (f"a0.h{prev}", f"a1.h{ind}<k>"), ("input", f"a1.h{ind}<q>"),
              ("input", f"a1.h{ind}<v>"), (f"a1.h{ind}", "logits")}
    return interp.load(folder, device="cpu"), wiring


@pytest.mark.slow
@pytest.mark.parametrize(("method", "steps"), [("patching", 5), ("eap-ig", 20)])
def test_planted_edges_come_first(planted, method, steps):
    """Previous-token head -> induction head's keys (K-composition), the tokens it reads, and its write."""
    model, wiring = planted
    circuit = find_circuit(model, "induction", method, seq_len=8, n_prompts=6, steps=steps, progress=False)
    top = {(s, r) for s, r, _ in circuit.edges()[: len(wiring)]}
    assert top == wiring


def test_saturated_attention_hides_k_composition_from_eap(planted):
    """The known limit of linear attribution: the hand-wired heads' softmax is saturated (one-hot to float
    precision) and so is the output's on the predictable tokens, so EAP's gradient through the K-composition edge is
    ~0 although exact patching of that edge alone costs several nats."""
    model, _ = planted
    prev, ind = sorted({s for s, _ in planted[1]} - {"input"})
    task = make_task(model, "induction", seq_len=8, n_prompts=6)
    graph = EdgeGraph.for_model(model)
    edge = graph.edge(prev, ind + "<k>")
    eap = eap_scores(model, graph, task)
    removed = torch.zeros(2, *graph.valid.shape, dtype=torch.bool)
    removed[1][edge] = True
    exact = patched_metrics(model, graph, task, removed)
    assert float(exact[1] - exact[0]) > 1.0  # the edge matters: losing it costs more than a nat
    assert abs(float(eap[edge])) < 0.01 * float(eap.abs().max())


def _logit_diff_induction(model) -> CircuitTask:
    """The induction prompts scored by logit(clean next token) - logit(corrupted next token) on the second copy:
    a metric without the loss's saturation at p = 1."""
    base = make_task(model, "induction", seq_len=8, n_prompts=6, seed=3)
    start = base.clean.shape[1] - 8
    right, wrong = base.clean[:, start + 1 :], base.corrupted[:, start + 1 :]

    def metric(logits: torch.Tensor) -> torch.Tensor:
        pred = logits[:, start:-1].float()
        return (pred.gather(-1, right[..., None]) - pred.gather(-1, wrong[..., None])).mean()

    return CircuitTask("induction-logit-diff", base.clean, base.corrupted, metric)


@pytest.fixture(scope="module")
def planted_soft(tmp_path_factory):
    """The planted wiring at finite temperature: each head gives its strongest key about half its attention."""
    gen = torch.Generator().manual_seed(11)
    prev, ind = (int(i) for i in torch.randperm(planted_heads.N_HEADS, generator=gen)[:2])
    folder = planted_heads.build(tmp_path_factory.mktemp("planted-soft"), prev, ind, 0.3, sharpness=0.15)
    model = interp.load(folder, device="cpu")
    wiring = [(f"a0.h{prev}", f"a1.h{ind}<k>"), (f"a1.h{ind}", "logits"), ("input", f"a1.h{ind}<q>"),
              ("input", f"a1.h{ind}<v>"), ("input", f"a0.h{prev}<v>")]
    return model, wiring, _logit_diff_induction(model), (prev, ind)


@pytest.mark.parametrize("method", ["eap-ig", "patching", "eap"])
def test_planted_edges_come_first_at_finite_temperature(planted_soft, method):
    """Without saturation EAP-IG and exact patching rank the five planted edges first. Plain EAP ranks the
    K-composition edge first and four planted edges in its top four, but the previous-token head's value edge only
    about 11th, behind edges that a linearised LayerNorm sees and exact patching does not (swapping one one-hot
    token for another keeps the norm; the first-order term does not)."""
    model, wiring, task, (prev, ind) = planted_soft
    cap = interp.capture(model, task.clean, ["pattern"])
    for layer, head in ((0, prev), (1, ind)):
        top = cap.pattern(layer)[:, head, 4:].max(-1).values.mean()  # positions with a few keys to choose from
        assert 0.3 < float(top) < 0.95, (layer, float(top))  # sharp, not one-hot
    circuit = find_circuit(model, task, method, progress=False)
    order = [(s, r) for s, r, _ in circuit.edges()]
    if method == "eap":
        assert order[0] == wiring[0] and set(wiring[:4]) <= set(order[:4]) and order.index(wiring[4]) < 12
    else:
        assert set(order[: len(wiring)]) == set(wiring)


def test_circuit_api(tiny_gpt2, tasks):
    circuit = find_circuit(tiny_gpt2, tasks[tiny_gpt2], "eap", progress=False)
    assert isinstance(circuit, Circuit) and circuit.n_edges == circuit.graph.n_edges
    frame = circuit.to_frame()
    assert list(frame.columns) == ["sender", "receiver", "score"] and len(frame) == circuit.graph.n_edges
    assert (frame.score.abs().diff().dropna() <= 0).all() and (frame.score < 0).any() and (frame.score > 0).any()
    pruned = circuit.prune(n_edges=7)
    assert pruned.to_frame().equals(frame.head(7)) and circuit.n_edges == circuit.graph.n_edges
    cut = float(frame.score.abs().iloc[10])
    assert circuit.prune(threshold=cut).n_edges == int((frame.score.abs() >= cut).sum())
    for bad in ({}, {"n_edges": 3, "threshold": 0.1}, {"n_edges": -1}):
        with pytest.raises(ValueError):
            circuit.prune(**bad)
    curve = circuit.faithfulness([0, 7, circuit.n_edges])
    assert curve.recovered[0] == pytest.approx(0.0, abs=1e-5) and curve.recovered[-1] == pytest.approx(1.0, abs=1e-5)
    assert list(curve.to_frame().columns) == ["n_edges", "fraction", "metric", "recovered"]
    with pytest.raises(ValueError, match="counts"):
        circuit.faithfulness([circuit.n_edges + 1])
    small = pruned.faithfulness([pruned.n_edges])  # a pruned circuit alone: its other edges are patched
    assert small.metric[0] == pytest.approx(curve.metric[1], abs=1e-6)
    assert len(circuit.figure(max_edges=12).data) == 13 and curve.figure().data


def test_tasks(tiny_gpt2):
    task = make_task(tiny_gpt2, "induction", n_prompts=2)
    n = 15  # min(40, (32 - 1) // 2)
    assert task.clean.shape == task.corrupted.shape == (2, 1 + 2 * n)
    assert torch.equal(task.clean[:, 1 : n + 1], task.clean[:, n + 1 :])
    assert not torch.equal(task.corrupted[:, 1 : n + 1], task.corrupted[:, n + 1 :])
    with pytest.raises(ValueError, match="seq_len=16"):
        make_task(tiny_gpt2, "induction", seq_len=16)
    with pytest.raises(ValueError, match="task='nope'"):
        make_task(tiny_gpt2, "nope")
    with pytest.raises(ValueError, match="same number of tokens"):
        pairs_task(tiny_gpt2, "The cat sat", "A")
    same = [p for p in ("The dog sat", "The cat ran", "A cat sat", "The hat sat", "The cat sat")
            if len(interp.tokenize(tiny_gpt2, p).tokens[0]) == len(interp.tokenize(tiny_gpt2, "The cat sat").tokens[0])]
    pair = pairs_task(tiny_gpt2, "The cat sat", same[0])
    assert isinstance(pair, CircuitTask) and pair.clean.shape == pair.corrupted.shape
    with pytest.raises(ValueError, match="method='greedy'"):
        find_circuit(tiny_gpt2, "induction", "greedy")


def test_ioi_task_swaps_the_names():
    model = interp.load("ref-gpt2", device="cpu")
    task = make_task(model, "ioi", n_prompts=4)
    for clean, corrupted in zip(task.clean, task.corrupted, strict=True):
        changed = (clean != corrupted).nonzero().flatten().tolist()
        names = set(clean[changed].tolist())
        assert len(changed) >= 3 and len(names) == 2 and set(corrupted[changed].tolist()) == names
        assert all(int(corrupted[i]) == (names - {int(clean[i])}).pop() for i in changed)
    facts = make_task(model, "facts", n_prompts=4)
    assert facts.clean.shape == facts.corrupted.shape and not torch.equal(facts.clean, facts.corrupted)


def test_cli_circuit_json(tiny_gpt2_dir):
    result = CliRunner().invoke(app, ["circuit", "-m", str(tiny_gpt2_dir), "--task", "induction", "--method", "eap",
                                      "--n-prompts", "2", "--top", "4", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["method"] == "eap" and len(data["edges"]) == 4
    assert abs(data["edges"][0]["score"]) >= abs(data["edges"][-1]["score"])
    bad = CliRunner().invoke(app, ["circuit", "-m", str(tiny_gpt2_dir), "--task", "nope"])
    assert bad.exit_code != 0 and "task='nope'" in bad.output
    bad = CliRunner().invoke(app, ["circuit", "-m", str(tiny_gpt2_dir), "--method", "edge-pruning", "--n-edges", "0"])
    assert bad.exit_code != 0 and "n_edges=0" in bad.output  # passed through to Edge Pruning, checked there


def test_circuits_page(tiny_gpt2_dir, tmp_path_factory, monkeypatch):
    from streamlit.testing.v1 import AppTest

    apps = Path(__file__).resolve().parents[1] / "apps"
    monkeypatch.setenv("INTERP_DASHBOARD_ROOTS", str(tmp_path_factory.getbasetemp()))
    monkeypatch.delenv("INTERP_DASHBOARD_HUB", raising=False)
    monkeypatch.syspath_prepend(str(apps))
    at = AppTest.from_file(str(apps / "dashboard.py"), default_timeout=600)
    at.session_state["model_path"] = str(tiny_gpt2_dir)
    at.run()
    at.switch_page("app_pages/circuits.py").run()
    at.selectbox(key="circ_task").set_value("induction").run()
    at.slider(key="circ_n").set_value(2).run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert at.title[0].value == "Circuits"
    assert len(at.get("plotly_chart")) == 4
    at.slider(key="circ_edges").set_value(5).run()
    spec = json.loads(at.get("plotly_chart")[2].proto.spec)
    assert len(spec["data"]) == 6  # five edges and the nodes


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ranks = torch.stack([a.argsort().argsort().float(), b.argsort().argsort().float()])
    return float(torch.corrcoef(ranks)[0, 1])


@pytest.mark.slow
@pytest.mark.parametrize(("name", "task"), [
    ("ref-gpt2", "induction"), ("ref-gpt2", "ioi"), ("ref-llama", "ioi"),
    pytest.param("ref-llama", "induction", marks=pytest.mark.xfail(
        reason="measured: the top 5% of EAP-IG edges (65 of 1300) recover 20% of the loss gap, 20% of edges 93%. "
               "Not IG steps (20: 21%), RMSNorm/GQA gradients, edge accounting or the evaluation: the induction "
               "runs through all six layer-1 heads, each needing its q, k and v edges together, and exact "
               "patching's own top 5% recovers 16%; ACDC, deciding edges jointly, needs 134 edges (10%) for 84%, and "
               "no search (edge masks, exact swaps, annealing) found a 65-edge circuit above 43% "
               "(docs/circuits.md, 'Measured')", strict=True)),
])
def test_top_five_percent_of_edges_recovers_the_metric(name, task):
    circuit = find_circuit(interp.load(name, device="cpu"), task, "eap-ig", progress=False)
    curve = circuit.faithfulness([round(0.05 * circuit.n_edges)])
    assert curve.recovered[0] >= 0.8, curve.to_frame()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ref-gpt2", "ref-llama"])
def test_eap_ig_agrees_with_exact_patching(name):
    model = interp.load(name, device="cpu")
    exact = find_circuit(model, "induction", "patching", seq_len=5, n_prompts=4, progress=False)
    approx = find_circuit(model, "induction", "eap-ig", seq_len=5, n_prompts=4, progress=False)
    valid = exact.graph.valid
    a, b = approx.scores[valid], exact.scores[valid]
    assert _spearman(a.abs(), b.abs()) >= 0.5
    top = 20
    overlap = set(a.abs().topk(top).indices.tolist()) & set(b.abs().topk(top).indices.tolist())
    assert len(overlap) >= top // 2
