"""Experiment (issue #22): learn a joint mask over edges (Edge Pruning, Bhaskar et al. 2024) and check whether a
65-edge circuit recovers >= 80% of ref-llama's induction metric under exact edge patching.

Each edge ``s -> r`` gets a logit; its mask ``m`` in [0, 1] (sigmoid, or a hard-concrete sample) makes the receiver
read ``in_r + sum_s (1 - m) (out_s(corrupted) - out_s(this run))``. We minimise the task's metric (the loss on the
second copy) plus a sparsity term, then keep the top ``n`` edges by logit and evaluate them EXACTLY with
``patched_metrics`` (every other edge patched with its corrupted value).

Optionally refine the top-``n`` sets by a local search of single-edge swaps measured exactly (``--swap-rounds``).

The best 65-edge ref-llama circuit found (43% recovered; the issue asks 80%) came from three runs:

    python scripts/edge_mask_experiment.py --mode sig --steps 400 --save /tmp/theta_sig1.pt
    python scripts/edge_mask_experiment.py --mode hc --init-file /tmp/theta_sig1.pt --budget-start 110 \
        --lag-lr 0.05 --lr 0.05 --steps 400 --save /tmp/theta_hc2.pt
    python scripts/edge_mask_experiment.py --steps 0 --init-file /tmp/theta_hc2.pt --counts 65 --swap-rounds 15 \
        --save /tmp/hc2_swap.pt
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import torch

import interp
from interp.circuits.attribution import eap_scores, sender_outputs
from interp.circuits.edge_patching import masked_logits, patched_metrics
from interp.circuits.edge_pruning import edge_logits
from interp.circuits.graph import EdgeGraph
from interp.circuits.reads import Reads
from interp.circuits.tasks import CircuitTask, make_task


def top_mask(graph: EdgeGraph, values: torch.Tensor, n: int) -> torch.Tensor:
    """Boolean [sender receiver] of the ``n`` valid edges with the largest ``values``."""
    flat = values.masked_fill(~graph.valid, -math.inf).flatten()
    kept = torch.zeros(flat.shape, dtype=torch.bool)
    kept[flat.topk(n).indices] = True
    return kept.view(graph.valid.shape)


def recovered(model: Any, graph: EdgeGraph, task: CircuitTask, kept_masks: list[torch.Tensor]) -> list[float]:
    """Exact recovery of each kept mask: ``patched_metrics`` with ``removed = valid & ~kept``."""
    masks = [torch.zeros_like(graph.valid), graph.valid.clone()] + [graph.valid & ~k for k in kept_masks]
    values = patched_metrics(model, graph, task, torch.stack(masks))
    clean, corrupt = float(values[0]), float(values[1])
    return [(float(v) - corrupt) / (clean - corrupt) for v in values[2:]]


def search(
    model: Any, graph: EdgeGraph, task: CircuitTask, *, target: int, steps: int, lr: float, init: torch.Tensor,
    mode: str, beta: float = 2 / 3, t_start: float = 1.0, t_end: float = 0.05,
    budget_start: float = 1300.0, objective: str = "metric", lag_lr: float = 1.0, warmup: float = 0.5,
    log_every: int = 50, eval_fn=None,
) -> torch.Tensor:
    """Learn edge logits; return them (higher = more kept).

    mode ``"hc"``: hard-concrete masks (Louizos et al.) with a Lagrangian (multipliers learnt at ``lag_lr``) pulling
    the expected number of kept edges to a goal ramped linearly from ``budget_start`` to ``target`` over the first
    ``warmup`` of the steps (Edge Pruning).
    (mode ``"sig"``, sigmoid masks under a penalty, is the library's Edge Pruning: ``main`` calls
    :func:`interp.circuits.edge_pruning.edge_logits`.)
    mode ``"topk"``: ``sigmoid(theta / T - c)`` with ``c`` chosen so the masks sum to a budget ramped geometrically
    from ``budget_start`` to ``target``; ``T`` annealed ``t_start`` -> ``t_end``.
    objective ``"metric"``: the task's metric scaled to 0 (clean) .. 1 (corrupted); ``"kl"``: KL(clean || masked)
    on the second half of the positions.
    """
    reads = Reads.of(model)
    corrupted = sender_outputs(model, reads, task.corrupted)[0]
    with torch.no_grad():
        clean_logits = model(task.clean)
        clean_m = float(task.metric(clean_logits))
        clean_logp = clean_logits[:, task.clean.shape[1] // 2:].float().log_softmax(-1)
        corrupt_m = float(patched_metrics(model, graph, task, graph.valid[None], corrupted=corrupted)[0])
    gap = clean_m - corrupt_m
    valid = graph.valid.float()
    theta = init.clone().float().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    lag = torch.zeros(2, requires_grad=True)  # Lagrange multipliers (maximised)
    lag_opt = torch.optim.Adam([lag], lr=lag_lr, maximize=True)
    gamma, zeta = -0.1, 1.1
    t0 = time.time()
    for step in range(steps):
        frac = min(1.0, step / max(1, warmup * steps))
        goal = budget_start + (target - budget_start) * frac
        if mode == "hc":
            u = torch.rand_like(theta).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((u.log() - (1 - u).log() + theta) / beta)
            m = (s * (zeta - gamma) + gamma).clamp(0, 1)
            expected = (torch.sigmoid(theta - beta * math.log(-gamma / zeta)) * valid).sum()
            diff = (expected - goal) / target
            reg = lag[0] * diff + lag[1] * diff**2
        elif mode == "topk":
            # budget ramped geometrically from all edges to the target; c shifts the logits so sum m = budget
            goal = budget_start * (target / budget_start) ** frac
            temp = t_start * (t_end / t_start) ** (step / steps)
            c = _shift(theta.detach() / temp, valid, goal)
            m = torch.sigmoid(theta / temp - c)
            expected = (m * valid).sum()
            reg = torch.zeros(())
        else:
            raise ValueError(f"mode={mode!r}; search() runs 'hc' or 'topk' ('sig' is edge_logits)")
        logits = masked_logits(model, reads, graph, task.clean, corrupted, m * valid + (1 - valid))
        metric = task.metric(logits)
        task_loss = (metric - clean_m) / abs(gap) * (1 if gap < 0 else -1)  # 0 at clean, 1 at corrupted (loss)
        if objective == "kl":  # KL(clean || masked) on the second half, in units of the corrupted gap
            logp = logits[:, task.clean.shape[1] // 2:].float().log_softmax(-1)
            kl = (clean_logp.exp() * (clean_logp - logp)).sum(-1).mean()
            loss_for_grad = kl / abs(gap)
        else:
            loss_for_grad = task_loss
        loss = loss_for_grad + reg
        opt.zero_grad()
        lag_opt.zero_grad()
        loss.backward()
        opt.step()
        if mode == "hc":
            lag_opt.step()
        if step % log_every == 0 or step == steps - 1:
            line = (f"step {step:4d} t={time.time() - t0:6.1f}s task={float(task_loss.detach()):.3f} "
                    f"E[n]={float(expected.detach()):7.1f} goal={goal:7.1f} lag={lag.detach().tolist()}")
            if eval_fn is not None and (step % (log_every * 4) == 0 or step == steps - 1):
                line += f" exact={eval_fn(theta.detach())}"
            print(line, flush=True)
    return theta.detach()


def swap_search(
    model: Any, graph: EdgeGraph, task: CircuitTask, kept: torch.Tensor, *, rounds: int, n_add: int = 12,
    n_remove: int = 12, log: bool = True,
) -> torch.Tensor:
    """Local search at a fixed edge count with exact patching: each round tries swapping one of the ``n_remove``
    kept edges whose removal costs least (measured) for one of the ``n_add`` outside edges whose addition helps
    most (measured, among the 4 * n_add with the largest gradient of the masked run at the current mask); keeps
    the best swap if it improves the metric, else stops."""
    reads = Reads.of(model)
    corrupted = sender_outputs(model, reads, task.corrupted)[0]
    sign = 1.0 if task.higher_is_better else -1.0

    def measure(masks: list[torch.Tensor]) -> torch.Tensor:
        return sign * patched_metrics(model, graph, task, torch.stack([graph.valid & ~k for k in masks]),
                                      corrupted=corrupted)

    current = float(measure([kept])[0])
    for r in range(rounds):
        m = kept.float().requires_grad_(True)
        (sign * task.metric(masked_logits(model, reads, graph, task.clean, corrupted, m))).backward()
        grad = m.grad.masked_fill(~(graph.valid & ~kept), -math.inf).flatten()
        adds = grad.topk(4 * n_add).indices
        inside = kept.flatten().nonzero()[:, 0]
        trial = []
        for i in list(adds) + list(inside):
            k = kept.flatten().clone()
            k[i] = not k[i]
            trial.append(k.view(kept.shape))
        values = measure(trial)
        add_best = adds[values[:len(adds)].topk(n_add).indices]
        rem_best = inside[values[len(adds):].topk(min(n_remove, len(inside))).indices]
        pairs = [(a, b) for a in add_best for b in rem_best]
        swaps = []
        for a, b in pairs:
            k = kept.flatten().clone()
            k[a], k[b] = True, False
            swaps.append(k.view(kept.shape))
        values = measure(swaps)
        best = int(values.argmax())
        if float(values[best]) <= current + 1e-6:
            break
        current = float(values[best])
        kept = swaps[best]
        if log:
            a, b = pairs[best]
            sa, ra = divmod(int(a), kept.shape[1])
            sb, rb = divmod(int(b), kept.shape[1])
            print(f"swap {r}: +{graph.senders[sa]}->{graph.receivers[ra]} -{graph.senders[sb]}->{graph.receivers[rb]}"
                  f" metric={sign * current:.4f}", flush=True)
    return kept


def _shift(x: torch.Tensor, valid: torch.Tensor, budget: float) -> torch.Tensor:
    """``c`` with ``sum(valid * sigmoid(x - c)) = budget`` (bisection)."""
    lo, hi = float(x[valid.bool()].min()) - 30, float(x[valid.bool()].max()) + 30
    for _ in range(60):
        mid = (lo + hi) / 2
        if float((torch.sigmoid(x - mid) * valid).sum()) > budget:
            lo = mid
        else:
            hi = mid
    return torch.tensor((lo + hi) / 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="ref-llama")
    parser.add_argument("--n-prompts", type=int, default=8)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--mode", choices=["hc", "sig", "topk"], default="hc")
    parser.add_argument("--lam", type=float, default=1.0)
    parser.add_argument("--lag-lr", type=float, default=1.0)
    parser.add_argument("--objective", choices=["metric", "kl"], default="metric")
    parser.add_argument("--target", type=int, default=65)
    parser.add_argument("--init", choices=["const", "eap-ig", "acdc"], default="const")
    parser.add_argument("--init-value", type=float, default=3.0)
    parser.add_argument("--t-start", type=float, default=1.0)
    parser.add_argument("--t-end", type=float, default=0.05)
    parser.add_argument("--init-file", default=None, help="start from saved logits")
    parser.add_argument("--budget-start", type=float, default=1300.0)
    parser.add_argument("--counts", type=int, nargs="+", default=[65, 100, 130])
    parser.add_argument("--swap-rounds", type=int, default=0)
    parser.add_argument("--swap-width", type=int, default=6)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="save the learned logits here (torch.save)")
    args = parser.parse_args()
    if args.mode == "sig" and args.objective != "metric":
        parser.error("--mode sig is the library's Edge Pruning, which optimises the task's metric only")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model = interp.load(args.model, device="cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    graph = EdgeGraph.for_model(model)
    task = make_task(model, "induction", n_prompts=args.n_prompts)
    counts = args.counts
    if args.init_file:
        init = torch.load(args.init_file)
    elif args.init == "const":
        init = torch.full(graph.valid.shape, args.init_value)
    elif args.init == "eap-ig":
        scores = eap_scores(model, graph, task, steps=5).abs()
        ranks = scores.masked_fill(~graph.valid, -1).flatten().argsort(descending=True).argsort().view(scores.shape)
        init = args.init_value - 4 * ranks.float() / graph.n_edges  # rank-based: top edges highest
    else:
        kept = torch.load("/tmp/acdc_kept_llama.pt")
        init = torch.where(kept, args.init_value, -args.init_value)

    def eval_fn(theta: torch.Tensor) -> str:
        return " ".join(f"{n}:{r:.1%}" for n, r in zip(counts, recovered(
            model, graph, task, [top_mask(graph, theta, n) for n in counts]), strict=True))

    t0 = time.time()
    if args.steps and args.mode == "sig":  # the library's Edge Pruning objective, from this start
        theta = edge_logits(model, graph, task, n_edges=args.target, steps=args.steps, lam=args.lam, lr=args.lr,
                            init=init, progress=True)
    elif args.steps:
        theta = search(model, graph, task, target=args.target, steps=args.steps, lr=args.lr, init=init,
                       mode=args.mode, warmup=args.warmup, t_start=args.t_start, t_end=args.t_end,
                       budget_start=args.budget_start, objective=args.objective, lag_lr=args.lag_lr,
                       eval_fn=eval_fn)
    else:
        theta = init
    print(f"search {time.time() - t0:.0f}s")
    if args.save:
        torch.save(theta, args.save)
    masks = [top_mask(graph, theta, n) for n in counts]
    if args.swap_rounds:
        print("before swaps, search prompts:", eval_fn(theta))
        t0 = time.time()
        masks = [swap_search(model, graph, task, k, rounds=args.swap_rounds, n_add=args.swap_width,
                              n_remove=args.swap_width) for k in masks]
        print(f"swaps {time.time() - t0:.0f}s")
        if args.save:
            torch.save(torch.stack(masks), args.save + ".swapped")
        rec = recovered(model, graph, task, masks)
        print("search prompts:", " ".join(f"{n}:{r:.1%}" for n, r in zip(counts, rec, strict=True)))
    else:
        print("search prompts:", eval_fn(theta))
    for seed in (0, 1):
        big = make_task(model, "induction", n_prompts=32, seed=seed)
        rec = recovered(model, graph, big, masks)
        print(f"32 prompts seed={seed}:", " ".join(f"{n}:{r:.1%}" for n, r in zip(counts, rec, strict=True)))
    top = masks[0].nonzero().tolist()
    print("top-65:", ", ".join(f"{graph.senders[s]}->{graph.receivers[r]}" for s, r in top))


if __name__ == "__main__":
    main()
