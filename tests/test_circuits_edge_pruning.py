"""Edge Pruning: the float-masked run against exact edge patching, its gradient, and the planted wiring."""

from __future__ import annotations

import pytest
import torch
from test_circuits import planted_soft  # noqa: F401 (the planted wiring at finite temperature, a fixture)

from interp.circuits import CircuitTask, EdgeGraph, find_circuit, make_task
from interp.circuits.attribution import sender_outputs
from interp.circuits.edge_patching import masked_logits, patched_metrics
from interp.circuits.edge_pruning import edge_logits, edge_pruning_scores
from interp.circuits.reads import Reads


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Hundreds of small masked forward-and-backwards: threads only contend (10-30x slower on a loaded 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def setup(request, tiny_gpt2, tiny_llama):
    model = tiny_gpt2 if request.param == "gpt2" else tiny_llama
    graph = EdgeGraph.for_model(model)
    base = make_task(model, "induction", seq_len=5, n_prompts=3, seed=2)
    right = base.clean[:, -4:]

    def metric(logits: torch.Tensor) -> torch.Tensor:
        """The clean next tokens' summed logits on the second copy: the random model's induction loss barely moves."""
        return logits[:, -5:-1].float().gather(-1, right[..., None]).sum()

    task = CircuitTask("next-logit", base.clean, base.corrupted, metric)
    reads = Reads.of(model)
    corrupted = sender_outputs(model, reads, task.corrupted)[0].detach()
    return model, graph, task, reads, corrupted


def _masked_metric(setup, keep: torch.Tensor) -> torch.Tensor:
    model, graph, task, reads, corrupted = setup
    return task.metric(masked_logits(model, reads, graph, task.clean, corrupted, keep))


def test_float_mask_matches_boolean_patching(setup):
    """All ones is the clean run, all zeros the corrupted one, and a random 0/1 mask the same boolean patching."""
    model, graph, task, _, corrupted = setup
    kept = (torch.rand(graph.valid.shape, generator=torch.Generator().manual_seed(0)) < 0.5) & graph.valid
    removed = torch.stack([torch.zeros_like(graph.valid), graph.valid, graph.valid & ~kept])
    clean, corrupt, random = patched_metrics(model, graph, task, removed, corrupted=corrupted).tolist()
    with torch.no_grad():
        ones, zeros, mixed = (float(_masked_metric(setup, k)) for k in (
            torch.ones(graph.valid.shape), torch.zeros(graph.valid.shape), kept.float()))
    assert abs(clean - corrupt) > 1e-3
    assert ones == pytest.approx(clean, abs=1e-5) and zeros == pytest.approx(corrupt, abs=1e-5)
    assert mixed == pytest.approx(random, abs=1e-5)


def test_mask_gradient_matches_finite_difference(setup):
    """d metric / d keep[s, r] by autograd equals a central difference, for a few edges at a random float mask."""
    _, graph, _, _, _ = setup
    gen = torch.Generator().manual_seed(1)
    base = torch.rand(graph.valid.shape, generator=gen, dtype=torch.float64).float()
    keep = base.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_masked_metric(setup, keep), [keep])
    edges = graph.valid.nonzero()
    eps = 1e-2
    for s, r in edges[torch.randperm(len(edges), generator=gen)[:3]].tolist():
        plus, minus = base.clone(), base.clone()
        plus[s, r] += eps
        minus[s, r] -= eps
        with torch.no_grad():
            slope = (float(_masked_metric(setup, plus)) - float(_masked_metric(setup, minus))) / (2 * eps)
        assert float(grad[s, r]) == pytest.approx(slope, rel=0.02, abs=1e-4)
    assert bool((grad[~graph.valid] == 0).all())  # invalid entries are ignored


def test_edge_pruning_scores_are_keep_probabilities(setup):
    model, graph, task, _, _ = setup
    scores = edge_pruning_scores(model, graph, task, n_edges=10, steps=6)
    again = edge_pruning_scores(model, graph, task, n_edges=10, steps=6)
    assert torch.equal(scores, again)  # deterministic
    assert bool(torch.isfinite(scores).all()) and bool((scores[~graph.valid] == 0).all())
    assert bool(((scores[graph.valid] > 0) & (scores[graph.valid] < 1)).all())
    assert not any(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="n_edges"):
        edge_pruning_scores(model, graph, task, n_edges=0, steps=1)


def test_edge_logits_are_the_scores_before_the_sigmoid(setup):
    """The scores are sigmoid(theta) in float64 (distinct where float32 would round to 1); ``init`` is resumed."""
    model, graph, task, _, _ = setup
    theta = edge_logits(model, graph, task, n_edges=10, steps=3)
    scores = edge_pruning_scores(model, graph, task, n_edges=10, steps=3)
    assert scores.dtype == torch.float64
    assert torch.equal(scores[graph.valid], torch.sigmoid(theta.double())[graph.valid])
    init = torch.linspace(15.0, 30.0, graph.valid.numel()).view(graph.valid.shape)
    assert torch.equal(edge_logits(model, graph, task, steps=0, init=init), init)  # no step: the start itself
    assert torch.sigmoid(init[graph.valid].double()).unique().numel() == int(graph.valid.sum())
    with pytest.raises(ValueError, match="init has shape"):
        edge_logits(model, graph, task, steps=1, init=init[:1])


def test_planted_edges_come_first(planted_soft):  # noqa: F811 (the fixture imported above)
    """With a target of five edges and 100 steps, the learned mask's five strongest edges are the planted ones."""
    model, wiring, task, _ = planted_soft
    wiring = set(wiring)
    graph = EdgeGraph.for_model(model)
    scores = edge_pruning_scores(model, graph, task, n_edges=5, steps=100)
    top = scores.flatten().topk(len(wiring)).indices.tolist()
    assert {(graph.senders[i // scores.shape[1]], graph.receivers[i % scores.shape[1]]) for i in top} == wiring


@pytest.mark.slow
def test_find_circuit_edge_pruning_on_planted(planted_soft):  # noqa: F811
    """find_circuit's defaults (400 steps): a Circuit of every edge, finite scores, the planted edges first."""
    model, wiring, task, _ = planted_soft
    circuit = find_circuit(model, task, "edge-pruning", n_edges=5, progress=False)
    assert circuit.method == "edge-pruning" and circuit.n_edges == circuit.graph.n_edges
    assert bool(torch.isfinite(circuit.scores).all())
    assert {(s, r) for s, r, _ in circuit.edges()[:5]} == set(wiring)


def test_cli_edge_pruning_keeps_about_n_edges(tiny_gpt2_dir):
    """``interp circuit --method edge-pruning --n-edges 6``: keep-probabilities, about six of them above 1/2."""
    import json

    from typer.testing import CliRunner

    from interp.cli import app

    result = CliRunner().invoke(app, ["circuit", "-m", str(tiny_gpt2_dir), "--method", "edge-pruning", "--n-edges",
                                      "6", "--n-prompts", "2", "--top", "1000", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    scores = [e["score"] for e in data["edges"]]
    assert data["method"] == "edge-pruning" and len(scores) == data["n_edges"]
    assert all(0 < s < 1 for s in scores) and scores == sorted(scores, reverse=True)
    assert 1 <= sum(s > 0.5 for s in scores) <= 12  # the penalty pulled the kept edges down to about the target
