"""ACDC: find a circuit by removing edges one at a time, keeping only those whose removal costs too much.

Single-edge scores (EAP, EAP-IG, exact single-edge patching) measure each edge with every other edge clean. A
mechanism that runs through several parallel paths, each needing all of its edges (several induction heads, each
needing its query, key AND value inputs), defeats them: removing one piece of one path costs little while the
others carry on, so the pieces of many paths rank before any one path is complete.

ACDC (Conmy et al., 2023, "Towards automated circuit discovery") decides each edge in the circuit that is left:

1. Start from the whole graph. Visit receivers from the logits backwards (reverse forward order), and each
   receiver's senders from the latest to the earliest.
2. Remove the edge (its receiver reads the sender's corrupted-run output, as in
   :mod:`interp.circuits.edge_patching`) and run the clean prompts. If the task's metric moves towards the
   corrupted run by less than ``threshold`` times the clean-corrupted gap, the edge stays removed; otherwise it is
   put back.
3. A node none of whose outputs is left (a head whose outgoing edges were all removed) is dead: its inputs are
   removed without a run, since nothing reads it.

Each edge's score is the change of the metric measured when its removal was tried (the sign kept, as in exact
patching), in the circuit as it was then; dead nodes' inputs score 0. Cost: one patched forward per live edge,
run one after another. Use it on small graphs (the reference models: about a thousand runs).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float
from tqdm.auto import tqdm

from interp.circuits.attribution import sender_outputs
from interp.circuits.edge_patching import patched_metrics
from interp.circuits.graph import EdgeGraph
from interp.circuits.reads import Reads
from interp.circuits.tasks import CircuitTask

DEFAULT_THRESHOLD = 0.003
"""Default share of the clean-corrupted gap one edge's removal may cost."""


def receiver_owners(graph: EdgeGraph) -> list[list[int]]:
    """For each receiver, the senders it is an input of: a head's q input feeds that head, a shared k/v input all
    heads of its group, an MLP input that MLP; the logits none."""
    info = graph.info
    per_group = info.n_heads // info.n_kv_heads
    owners: list[list[int]] = []
    for layer in range(info.n_layers):
        first = 1 + layer * (info.n_heads + 1)
        owners += [[first + h] for h in range(info.n_heads)]
        groups = [[first + h for h in range(g * per_group, (g + 1) * per_group)] for g in range(info.n_kv_heads)]
        owners += groups + groups + [[first + info.n_heads]]
    return owners + [[]]


def acdc_scores(
    model: Any, graph: EdgeGraph, task: CircuitTask, *, threshold: float = DEFAULT_THRESHOLD, progress: bool = False
) -> tuple[Float[torch.Tensor, "sender receiver"], Bool[torch.Tensor, "sender receiver"]]:
    """Run ACDC on ``task`` (see the module's docstring).

    Returns:
        ``(scores, kept)``: each edge's measured metric change when its removal was tried, and the edges kept.

    Raises:
        ValueError: ``threshold`` outside [0, 1), or a task whose clean and corrupted runs have the same metric.
    """
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold={threshold}; must be in [0, 1) (a share of the clean-corrupted gap)")
    corrupted = sender_outputs(model, Reads.of(model), task.corrupted)[0]
    removed = torch.zeros_like(graph.valid)
    current, floor = patched_metrics(model, graph, task, torch.stack([removed, graph.valid]), corrupted=corrupted)
    current, gap = float(current), float(current - floor)
    if gap == 0:
        raise ValueError(f"{task.name}: the clean and corrupted runs give the same metric ({current:.4g}); "
                         "no edge can matter")
    scores = torch.zeros(graph.valid.shape)
    owners = receiver_owners(graph)
    bar = tqdm(total=graph.n_edges, desc="ACDC edges", disable=not progress)
    for receiver in reversed(range(len(graph.receivers))):
        senders = graph.valid[:, receiver].nonzero()[:, 0].flip(0).tolist()
        mine = owners[receiver]
        if mine and not (graph.valid & ~removed)[mine].any():
            removed[senders, receiver] = True
            bar.update(len(senders))
            continue
        for sender in senders:
            removed[sender, receiver] = True
            value = float(patched_metrics(model, graph, task, removed[None], corrupted=corrupted)[0])
            scores[sender, receiver] = value - current
            if (current - value) / gap < threshold:
                current = value
            else:
                removed[sender, receiver] = False
            bar.update()
    bar.close()
    return scores, graph.valid & ~removed
