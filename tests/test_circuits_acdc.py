"""ACDC: each decision checked against exact patching, dead nodes, the planted wiring, and bad input."""

from __future__ import annotations

import planted_heads
import pytest
import torch

import interp
from interp.circuits import EdgeGraph, find_circuit, make_task
from interp.circuits.acdc import receiver_owners
from interp.circuits.edge_patching import patched_metrics


@pytest.fixture(scope="module")
def found(tiny_llama):
    task = make_task(tiny_llama, "induction", seq_len=5, n_prompts=3, seed=1)
    return find_circuit(tiny_llama, task, "acdc", threshold=0.01, progress=False)


def test_owners_name_the_node_each_receiver_feeds(tiny_llama):
    graph = EdgeGraph.for_model(tiny_llama)  # 4 query heads, 2 kv heads
    owners = receiver_owners(graph)
    assert len(owners) == len(graph.receivers)
    named = {r: [graph.senders[s] for s in o] for r, o in zip(graph.receivers, owners, strict=True)}
    assert named["a0.h1<q>"] == ["a0.h1"] and named["a1.kv1<k>"] == ["a1.h2", "a1.h3"]
    assert named["a1.kv0<v>"] == ["a1.h0", "a1.h1"] and named["m1"] == ["m1"] and named["logits"] == []


def test_acdc_circuit_keeps_what_it_measured(found, tiny_llama):
    """Kept edges cost at least the threshold when their removal was tried; the circuit alone loses at most the
    threshold per removed edge; removing no edge is the clean run."""
    circuit, graph = found, found.graph
    assert 0 < circuit.n_edges < graph.n_edges and not (circuit.kept & ~graph.valid).any()
    values = patched_metrics(tiny_llama, graph, circuit.task,
                             torch.stack([torch.zeros_like(graph.valid), graph.valid, graph.valid & ~circuit.kept]))
    clean, corrupted, alone = values.tolist()
    gap = clean - corrupted
    harm = -circuit.scores / gap  # share of the gap lost when the edge's removal was tried
    assert bool((harm[circuit.kept] >= 0.01).all())
    removed = graph.n_edges - circuit.n_edges
    assert (clean - alone) / gap < 0.01 * removed + 1e-6
    curve = circuit.faithfulness([circuit.n_edges])
    assert curve.metric[0] == pytest.approx(alone, abs=1e-6)


def test_dead_nodes_inputs_change_nothing(found, tiny_llama):
    """A node with no kept output is not read: putting back every input edge of such nodes leaves the metric
    exactly where it was, and ACDC scored those edges 0 without a run."""
    circuit, graph = found, found.graph
    owners = receiver_owners(graph)
    dead = [r for r, o in enumerate(owners) if o and not circuit.kept[o].any()]
    assert dead, "the tiny model's circuit should leave some node dead"
    restored = circuit.kept.clone()
    restored[:, dead] = graph.valid[:, dead]
    values = patched_metrics(tiny_llama, graph, circuit.task,
                             torch.stack([graph.valid & ~circuit.kept, graph.valid & ~restored]))
    assert float(values[0]) == pytest.approx(float(values[1]), abs=1e-5)
    assert bool((circuit.scores[:, dead] == 0).all())


def test_bad_threshold(tiny_gpt2):
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="threshold"):
            find_circuit(tiny_gpt2, "induction", "acdc", seq_len=4, n_prompts=2, threshold=bad, progress=False)


@pytest.mark.slow
def test_acdc_finds_the_planted_wiring(tmp_path_factory):
    """A hand-wired previous-token head feeding an induction head's keys: ACDC keeps exactly the five planted
    edges (heads chosen at random, never seen by the search)."""
    gen = torch.Generator().manual_seed(5)
    prev, ind = (int(i) for i in torch.randperm(planted_heads.N_HEADS, generator=gen)[:2])
    model = interp.load(planted_heads.build(tmp_path_factory.mktemp("planted-acdc"), prev, ind), device="cpu")
    wiring = {("input", f"a0.h{prev}<v>"), (f"a0.h{prev}", f"a1.h{ind}<k>"), ("input", f"a1.h{ind}<q>"),
              ("input", f"a1.h{ind}<v>"), (f"a1.h{ind}", "logits")}
    circuit = find_circuit(model, "induction", "acdc", seq_len=8, n_prompts=6, progress=False)
    assert {(s, r) for s, r, _ in circuit.edges()} == wiring
