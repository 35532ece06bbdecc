"""CLI command ``interp circuit``: score every edge of a model's graph on a task and show the strongest."""

from __future__ import annotations

from typing import Annotated

import typer

from interp.cli.common import DeviceOption, JsonOption, ModelOption, emit, load_or_exit, user_errors


def circuit(
    model: ModelOption = "ref-gpt2",
    task: Annotated[str, typer.Option("--task", "-t", help="induction, ioi or facts.")] = "induction",
    method: Annotated[str, typer.Option(
        help="eap-ig, eap, patching (exact; one run per edge), acdc (joint search; one run per edge) or "
             "edge-pruning (a mask learned by gradient descent; 400 masked forward-and-backwards).")] = "eap-ig",
    n_prompts: Annotated[int, typer.Option(help="Prompts of the task.")] = 32,
    seq_len: Annotated[int | None, typer.Option(help="Induction span length (default min(40, (n_ctx-1)//2)).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the task's prompts.")] = 0,
    threshold: Annotated[float, typer.Option(
        help="ACDC: share of the clean-corrupted gap one edge's removal may cost.")] = 0.003,
    steps: Annotated[int, typer.Option(help="EAP-IG interpolation steps.")] = 5,
    n_edges: Annotated[int | None, typer.Option(
        help="Edge Pruning: target circuit size (default 5% of the graph's edges).")] = None,
    top: Annotated[int, typer.Option(help="Edges shown, strongest first.")] = 20,
    faithfulness: Annotated[bool, typer.Option(
        "--faithfulness", help="Also measure the metric recovered by the top edges alone.")] = False,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find a task's circuit: EAP-IG (or EAP, or exact patching) scores for every edge of the graph, ACDC's
    circuit, or Edge Pruning's learned keep-probabilities."""
    from interp.circuits import find_circuit

    bridge = load_or_exit(model, device)
    with user_errors():
        found = find_circuit(bridge, task, method, seq_len=seq_len, n_prompts=n_prompts, seed=seed, steps=steps,
                             threshold=threshold, n_edges=n_edges, progress=not as_json)
        curve = found.faithfulness(progress=not as_json) if faithfulness else None
    data = found.to_json(top)
    lines = [f"{task} circuit by {method}: {found.n_edges} scored edges; the {min(top, found.n_edges)} strongest:"]
    lines += [f"  {e['sender']:>10} -> {e['receiver']:<14} {e['score']:+.4f}" for e in data["edges"]]
    if curve is not None:
        frame = curve.to_frame()
        data["faithfulness"] = frame.to_dict(orient="list") | {"clean": curve.clean, "corrupted": curve.corrupted}
        lines.append(f"faithfulness (clean metric {curve.clean:.4f}, corrupted {curve.corrupted:.4f}):")
        lines += [f"  {int(r.n_edges):>6} edges ({r.fraction:6.1%}): {r.recovered:6.1%} recovered"
                  for r in frame.itertuples()]
    emit(data, "\n".join(lines), as_json)


def register(app: typer.Typer) -> None:
    """Add ``circuit`` to ``app``."""
    app.command()(circuit)
