"""Edge attribution (EAP, EAP-IG) against the passes it needs, and exact edge patching's cost beside them.

Model: the embedded ``ref-gpt2`` when its checkpoint is present, else a random GPT-2 of the same size.
Task: ``induction`` (``[BOS] + x + x``, ``len(x) = 31``), 16 prompts; the graph has 2188 edges.

Floors, timed in the same run: EAP's is 2 forwards (clean and corrupted, no grad) + 1 forward-and-backward
(``metric.backward()`` on the clean run, the weights' gradients included as a plain training step computes
them); EAP-IG's with ``m`` steps is 2 forwards + ``m`` forward-and-backwards. Exact patching needs one patched
forward per edge; it is timed once on a smaller batch (4 prompts, ``len(x) = 10``) and reported as a multiple
of one forward of that batch, next to the ``n_edges + 1`` forwards it must at least cost.
"""

from __future__ import annotations

import time

import torch

from benchmarks.runner import Ratio, median_seconds, reference_gpt2

N_PROMPTS, STEPS = 16, 5


def run() -> list[Ratio]:
    """Time ``find_circuit`` with EAP, EAP-IG and exact patching, and their floors."""
    from interp.circuits import find_circuit, make_task

    folder, model = reference_gpt2()
    task = make_task(model, "induction", n_prompts=N_PROMPTS)

    def forward(tokens: torch.Tensor) -> None:
        with torch.no_grad():
            model(tokens)

    def forward_backward() -> None:
        task.metric(model(task.clean)).backward()
        model.zero_grad(set_to_none=True)

    def floor(steps: int) -> None:
        forward(task.clean)
        forward(task.corrupted)
        for _ in range(steps):
            forward_backward()

    t = median_seconds({
        "floor_eap": lambda: floor(1),
        "eap": lambda: find_circuit(model, task, "eap", progress=False),
        "floor_ig": lambda: floor(STEPS),
        "eap_ig": lambda: find_circuit(model, task, "eap-ig", steps=STEPS, progress=False),
    }, repeats=5, warmup=1)
    small = make_task(model, "induction", seq_len=10, n_prompts=4)
    one = median_seconds({"forward": lambda: forward(small.clean)}, repeats=9)["forward"]
    start = time.perf_counter()
    exact = find_circuit(model, small, "patching", progress=False)
    t_exact = time.perf_counter() - start
    n = exact.graph.n_edges
    ms = {k: f"{1000 * v:.0f} ms" for k, v in t.items()}
    setup = f"{folder.name}, induction, {tuple(task.clean.shape)} tokens, {torch.get_num_threads()} threads"
    return [
        Ratio("circuit_eap_vs_2fwd_1fwdbwd", t["eap"] / t["floor_eap"], 1.3,
              f"EAP {ms['eap']} / floor {ms['floor_eap']}; {setup}"),
        Ratio(f"circuit_eap_ig{STEPS}_vs_2fwd_{STEPS}fwdbwd", t["eap_ig"] / t["floor_ig"], 1.3,
              f"EAP-IG {ms['eap_ig']} / floor {ms['floor_ig']}; {setup}"),
        Ratio("circuit_exact_vs_1fwd", t_exact / one, 1.5 * (n + 1),
              f"exact patching {t_exact:.1f} s = {t_exact / one:.0f} forwards of {tuple(small.clean.shape)} "
              f"({1000 * one:.1f} ms each) for {n} edges; target 1.5 x (edges + 1)"),
    ]
