"""Edge Pruning: learn which edges to keep by gradient descent on a continuous mask over all of them at once.

Single-edge scores (EAP, EAP-IG, exact patching) measure each edge with the others clean, and ACDC decides one edge
at a time. Edge Pruning (Bhaskar et al., 2024, "Finding Transformer Circuits with Edge Pruning") relaxes the choice
of the circuit itself: every valid edge ``s -> r`` gets a logit ``theta[s, r]`` and a mask ``m = sigmoid(theta / T)``,
and receiver ``r`` reads ``in_r + sum_s (1 - m[s, r]) (out_s(corrupted) - out_s(this run))``
(:func:`interp.circuits.edge_patching.masked_logits`: ``m = 1`` is the clean edge, ``m = 0`` the corrupted one, as
in exact patching). Adam minimises

    loss = (metric(masked run) - metric(clean)) / |metric(corrupted) - metric(clean)|     (0 clean, 1 corrupted)
           + lam * ramp * relu(sum(m) - n_edges) / n_edges

where ``ramp`` grows 0 -> 1 over the first half of the steps and the temperature ``T`` is annealed geometrically
from 1 to 0.05, so the mask hardens towards 0/1 as the penalty pushes it down to ``n_edges`` kept edges. (The paper
samples hard-concrete masks under a Lagrangian; this deterministic sigmoid form did better on the reference models
in ``scripts/edge_mask_experiment.py``.) Every logit starts at 3 (all edges kept); nothing is sampled, so the
result is deterministic.

Defaults: ``n_edges`` 5% of the graph's edges, 400 steps, ``lr`` 0.1, ``lam`` 1. Cost: one corrupted forward, one
clean forward, one fully patched run, then ``steps`` masked forward-and-backwards on the clean prompts (every
receiver recomputed, about 2-3x a plain forward each): ~2 min for ref-llama induction with 8 prompts on CPU.

Scores returned: ``sigmoid(theta)`` on valid edges (0 elsewhere, float64), a positive keep-probability at
temperature 1; higher = keep, so :class:`~interp.circuits.circuit.Circuit`'s |score| order is the learned order.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from interp.circuits.attribution import sender_outputs
from interp.circuits.edge_patching import masked_logits, patched_metrics
from interp.circuits.graph import EdgeGraph
from interp.circuits.reads import Reads
from interp.circuits.tasks import CircuitTask

DEFAULT_SHARE = 0.05
"""Default target circuit size, as a share of the graph's edges."""
INIT_LOGIT = 3.0
"""Every edge's starting logit: ``sigmoid(3) = 0.95``, all edges (nearly) kept."""
T_START, T_END = 1.0, 0.05
"""The mask's temperature, annealed geometrically over the steps."""
WARMUP = 0.5
"""Share of the steps over which the sparsity penalty ramps up from 0 to ``lam``."""


def edge_pruning_scores(
    model: Any, graph: EdgeGraph, task: CircuitTask, *, n_edges: int | None = None, steps: int = 400,
    lam: float = 1.0, lr: float = 0.1, progress: bool = False,
) -> Float[torch.Tensor, "sender receiver"]:
    """Learn a mask over ``graph``'s edges on ``task`` (see the module's docstring); return ``sigmoid(theta)``.

    Args:
        model: A ``TransformerBridge``; its parameters are not changed and get no ``.grad``.
        graph: The model's :class:`~interp.circuits.graph.EdgeGraph`.
        task: Clean/corrupted prompts and metric.
        n_edges: Target number of kept edges (default 5% of ``graph.n_edges``).
        steps: Adam steps.
        lam: Weight of the penalty on kept edges above ``n_edges``.
        lr: Adam's learning rate on the logits.
        progress: Show a progress bar.

    Returns:
        ``[sender receiver]`` keep-probabilities in (0, 1) on valid edges, 0 elsewhere (higher = keep), in float64
        so that edges with logits up to ~36 keep distinct scores (float32 rounds ``sigmoid(x)`` to 1 past ~17).

    Raises:
        ValueError: ``n_edges`` outside ``1..graph.n_edges``, ``steps < 0``, or a task whose clean and corrupted
            runs have the same metric.
    """
    theta = edge_logits(model, graph, task, n_edges=n_edges, steps=steps, lam=lam, lr=lr, progress=progress)
    return torch.sigmoid(theta.double()).mul(graph.valid.to(theta.device, torch.float64)).cpu()


def edge_logits(
    model: Any, graph: EdgeGraph, task: CircuitTask, *, n_edges: int | None = None, steps: int = 400,
    lam: float = 1.0, lr: float = 0.1, init: Float[torch.Tensor, "sender receiver"] | None = None,
    progress: bool = False,
) -> Float[torch.Tensor, "sender receiver"]:
    """The learned logits ``theta`` behind :func:`edge_pruning_scores` (same arguments), starting from ``init``
    (default :data:`INIT_LOGIT` everywhere): for callers that continue or compare searches."""
    target = n_edges if n_edges is not None else max(1, round(DEFAULT_SHARE * graph.n_edges))
    if not 1 <= target <= graph.n_edges:
        raise ValueError(f"n_edges={n_edges}; must be in 1..{graph.n_edges} (the graph's edges)")
    if steps < 0:
        raise ValueError(f"steps={steps}; must be >= 0")
    if init is not None and tuple(init.shape) != tuple(graph.valid.shape):
        raise ValueError(f"init has shape {tuple(init.shape)}; must be {tuple(graph.valid.shape)} "
                         "(the graph's senders x receivers)")
    reads = Reads.of(model)
    corrupted = sender_outputs(model, reads, task.corrupted)[0].detach()
    # The clean run (no edge removed) and the corrupted one (every edge removed) in one batched patched run.
    ends = torch.stack([torch.zeros_like(graph.valid), graph.valid])
    clean, floor = (float(x) for x in patched_metrics(model, graph, task, ends, corrupted=corrupted))
    gap = floor - clean
    if gap == 0:
        raise ValueError(f"{task.name}: the clean and corrupted runs give the same metric ({clean:.4g}); "
                         "no edge can matter")
    valid = graph.valid.to(corrupted.device, torch.float32)
    start = torch.full(graph.valid.shape, INIT_LOGIT) if init is None else init.detach().float()
    theta = start.to(corrupted.device).clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    bar = tqdm(range(steps), desc="edge pruning", disable=not progress)
    for step in bar:
        temp = T_START * (T_END / T_START) ** (step / steps)
        ramp = min(1.0, step / max(1.0, WARMUP * steps))
        mask = torch.sigmoid(theta / temp)
        kept = (mask * valid).sum()
        # The masked run: edges outside the graph are clean (masked_logits ignores them anyway).
        logits = masked_logits(model, reads, graph, task.clean, corrupted, (mask * valid + (1 - valid)).to(
            corrupted.dtype))
        task_loss = (task.metric(logits).float() - clean) / gap
        loss = task_loss + lam * ramp * torch.relu(kept - target) / target
        # autograd.grad, not backward: only the logits get a gradient, the model's parameters none.
        (grad,) = torch.autograd.grad(loss, [theta])
        theta.grad = grad
        opt.step()
        bar.set_postfix(task=f"{float(task_loss.detach()):.3f}", kept=f"{float(kept.detach()):.0f}")
    return theta.detach()
