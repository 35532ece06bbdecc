"""EAP-IG and EAP against exact edge patching on the reference models: rank agreement and faithfulness.

Usage::

    python scripts/circuit_agreement.py [--models ref-gpt2 ref-llama] [--tasks induction ioi] [--seq-len 5]
        [--n-prompts 4] [--steps 5] [--json OUT]
    python scripts/circuit_agreement.py --curve [--n-prompts 32] [--methods eap-ig eap acdc]

For each model and task it scores every edge three ways on the same small batch (exact patching costs one
forward per edge, so the batch is small): ``patching`` (exact), ``eap-ig`` and ``eap``. It prints, for each
approximation against exact: Spearman correlation of the signed scores and of ``|score|``, Pearson of the signed
scores, and the overlap of the top-10/20/50 edges by ``|score|``. Then, for each method's ranking, the faithfulness
of its top 1/2/5/10/20% of edges on that batch (``recovered = (metric - corrupted) / (clean - corrupted)``): the
exact ranking's curve is the floor an approximation's could reach with single-edge scores. Exact patching took
minutes per cell on a loaded 2-core CPU.

With ``--curve`` it skips exact patching and prints the faithfulness curve of each method's ranking on the
tasks at their default length (induction: ``seq_len = min(40, (n_ctx - 1) // 2)``), as ``find_circuit`` and the
slow faithfulness test use them.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import interp
from interp.circuits import find_circuit, make_task
from interp.core.files import atomic_write_text, check_can_write

SHARES = (0.01, 0.02, 0.05, 0.1, 0.2)
TOPS = (10, 20, 50)


def _ranks(x: torch.Tensor) -> torch.Tensor:
    return x.argsort().argsort().double()


def agreement(approx: torch.Tensor, exact: torch.Tensor) -> dict[str, float]:
    """Rank and linear correlation, and top-k overlap by ``|score|``, of two score vectors over the same edges."""
    out = {
        "spearman": float(torch.corrcoef(torch.stack([_ranks(approx), _ranks(exact)]))[0, 1]),
        "spearman_abs": float(torch.corrcoef(torch.stack([_ranks(approx.abs()), _ranks(exact.abs())]))[0, 1]),
        "pearson": float(torch.corrcoef(torch.stack([approx.double(), exact.double()]))[0, 1]),
    }
    for k in TOPS:
        mine, theirs = set(approx.abs().topk(k).indices.tolist()), set(exact.abs().topk(k).indices.tolist())
        out[f"top{k}"] = len(mine & theirs) / k
    return out


def cell(name: str, task_name: str, seq_len: int, n_prompts: int, steps: int) -> dict:
    """Scores, agreement and faithfulness curves of the three methods on one model and task."""
    model = interp.load(name, device="cpu")
    task = make_task(model, task_name, seq_len=seq_len if task_name == "induction" else None, n_prompts=n_prompts)
    circuits, seconds = {}, {}
    for method in ("patching", "eap-ig", "eap"):
        start = time.perf_counter()
        circuits[method] = find_circuit(model, task, method, steps=steps, progress=False)
        seconds[method] = time.perf_counter() - start
    valid = circuits["patching"].graph.valid
    exact = circuits["patching"].scores[valid]
    total = int(valid.sum())
    counts = [round(s * total) for s in SHARES]
    result = {"model": name, "task": task_name, "edges": total, "batch": list(task.clean.shape), "seconds": seconds,
              "agreement": {m: agreement(circuits[m].scores[valid], exact) for m in ("eap-ig", "eap")},
              "faithfulness": {}}
    for method, circuit in circuits.items():
        curve = circuit.faithfulness(counts)
        result["faithfulness"][method] = curve.recovered
        result["clean"], result["corrupted"] = curve.clean, curve.corrupted
    return result


def curve_rows(name: str, task_name: str, n_prompts: int, steps: int, methods: list[str]) -> list[str]:
    """Faithfulness at 1/2/5/10/20% of the graph's edges of each method's ranking, on the task at its default
    length, and the seconds each method took. ACDC's circuit is the edges it kept: shares past it are left out
    ("-"), and its own size and recovery come last."""
    model = interp.load(name, device="cpu")
    task = make_task(model, task_name, n_prompts=n_prompts)
    rows = []
    for method in methods:
        start = time.perf_counter()
        circuit = find_circuit(model, task, method, steps=steps, progress=False)
        seconds = time.perf_counter() - start
        total = circuit.graph.n_edges
        counts = [round(s * total) for s in SHARES]
        inside = [c for c in counts if c <= circuit.n_edges]
        curve = circuit.faithfulness(sorted({*inside, circuit.n_edges}))
        found = dict(zip(curve.n_edges, curve.recovered, strict=True))
        cells = [f"{found[c]:.1%}" if c in found else "-" for c in counts]
        rows.append(f"| {name} {task_name} ({total}, {task.clean.shape[0]}x{task.clean.shape[1]}) | "
                    f"{method} | {curve.clean:.3f} / {curve.corrupted:.3f} | " + " | ".join(cells)
                    + f" | {circuit.n_edges} ({circuit.n_edges / total:.1%}): {found[circuit.n_edges]:.1%} | "
                    f"{seconds:.0f} s |")
    return rows


def table(results: list[dict]) -> str:
    """Markdown tables: agreement with exact patching, then faithfulness by ranking."""
    lines = ["| model, task (edges, batch) | method | Spearman | Spearman abs | Pearson | "
             + " | ".join(f"top-{k}" for k in TOPS) + " |", "|---" * (5 + len(TOPS)) + "|"]
    for r in results:
        head = f"{r['model']} {r['task']} ({r['edges']}, {r['batch'][0]}x{r['batch'][1]})"
        for method, a in r["agreement"].items():
            lines.append(f"| {head} | {method} | {a['spearman']:.2f} | {a['spearman_abs']:.2f} | {a['pearson']:.2f} | "
                         + " | ".join(f"{a[f'top{k}']:.0%}" for k in TOPS) + " |")
    lines += ["", "| model, task | ranking | " + " | ".join(f"{s:.0%}" for s in SHARES) + " |",
              "|---" * (2 + len(SHARES)) + "|"]
    for r in results:
        for method, rec in r["faithfulness"].items():
            lines.append(f"| {r['model']} {r['task']} | {method} | " + " | ".join(f"{x:.1%}" for x in rec) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["ref-gpt2", "ref-llama"])
    parser.add_argument("--tasks", nargs="+", default=["induction", "ioi"])
    parser.add_argument("--seq-len", type=int, default=5)
    parser.add_argument("--n-prompts", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", help="also write the results, scores left out, to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument("--curve", action="store_true", help="only the faithfulness curves, no exact patching")
    parser.add_argument("--methods", nargs="+", default=["eap-ig"], help="rankings for --curve")
    args = parser.parse_args()
    if args.json:
        check_can_write(args.json, args.overwrite, "--overwrite")
    if args.curve:
        print("| model, task (edges, batch) | ranking | clean / corrupted | "
              + " | ".join(f"{s:.0%}" for s in SHARES) + " | circuit (share): recovered | time |\n"
              + "|---" * (5 + len(SHARES)) + "|")
        for name in args.models:
            for task_name in args.tasks:
                print("\n".join(curve_rows(name, task_name, args.n_prompts, args.steps, args.methods)), flush=True)
        return
    results = []
    for name in args.models:
        for task_name in args.tasks:
            results.append(cell(name, task_name, args.seq_len, args.n_prompts, args.steps))
            print(table(results[-1:]), flush=True)
    print(table(results))
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
