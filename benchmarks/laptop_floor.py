"""The laptop floor: every default-argument analysis on a GPT-2-small-shaped model, each in a fresh process.

Target (issue #21): on a random-init model of GPT-2 small's shape (124M parameters, 12 layers x 12 heads,
``d_model`` 768, ``d_mlp`` 3072, ``n_ctx`` 1024, vocabulary 50257), each of ``head_census(model)``,
``find_induction_heads(model)`` and ``rome.edit(model, prompt=..., subject=..., target=...)`` with no layer
finishes in under 240 s with a peak RSS under 6 GB, on 2 CPU cores. Each analysis runs in its own
``python`` process (``torch`` limited to 2 threads) that loads the model, notes its RSS, runs the analysis once
and reports the wall time, the CPU time and ``ru_maxrss`` minus the RSS after the load. ROME runs twice: ``rome-cold``
with an empty ``INTERP_CACHE`` (key statistics and the layer-choosing causal trace computed), then ``rome-warm`` reusing
that cache (what every later edit of the model pays).

Run: ``python -m benchmarks.laptop_floor [--folder DIR] [--only NAME ...]``. Not part of ``make bench`` (it
takes minutes); the figures it printed are in ``docs/scale_defaults.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ANALYSES = ("census", "induction", "rome-cold", "rome-warm")
TARGET_SECONDS, TARGET_GB = 240.0, 6.0
SHAPE = dict(arch="gpt2", n_layers=12, n_heads=12, d_model=768, d_mlp=3072, n_ctx=1024, vocab_size=50257)


def current_rss_gb() -> float:
    """Resident set size now (Linux ``/proc``; elsewhere the peak so far, an over-estimate of the baseline)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (OSError, ValueError, IndexError):
        return peak_rss_gb()


def peak_rss_gb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9


def child(name: str, folder: str) -> dict:
    """Load the model, run one analysis with its defaults, and measure it (runs in the fresh process)."""
    import torch

    torch.set_num_threads(2)
    import interp

    model = interp.load(folder, device="cpu")
    base = current_rss_gb()
    # One plain forward of a full context, in CPU seconds: the unit that makes figures taken on a busy machine
    # comparable (an analysis's cpu_seconds / forward_cpu_seconds does not depend on the load).
    tokens = torch.randint(1, 300, (1, interp.model_info(model).n_ctx), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cpu_start = time.process_time()
        model(tokens)
        forward_cpu = time.process_time() - cpu_start
    start, cpu_start = time.perf_counter(), time.process_time()
    if name == "census":
        result = interp.head_census(model)
        detail = {"clean_loss": result.clean_loss}
    elif name == "induction":
        result = interp.find_induction_heads(model)
        detail = {"seq_len": result.seq_len, "batch": result.batch}
    else:
        edit = interp.rome.edit(
            model, prompt="{} is located in the city of", subject="The Eiffel Tower", target=" Rome"
        )
        detail = {"layer": edit.layer}
        edit.undo()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    # CPU seconds over both threads: on a machine shared with other jobs, wall time overstates what a quiet
    # 2-core laptop takes; cpu_seconds / 2 is its lower bound there.
    return {"analysis": name, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "forward_cpu_seconds": round(forward_cpu, 2), "forwards": round(cpu / forward_cpu, 1),
            "peak_gb": round(peak_rss_gb() - base, 2),
            "rss_after_load_gb": round(base, 2), **detail}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", help="an existing GPT-2-small-shaped checkpoint (default: build one)")
    parser.add_argument("--only", nargs="*", choices=ANALYSES, default=list(ANALYSES))
    parser.add_argument("--child", nargs=2, metavar=("NAME", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds before a child is killed")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    with tempfile.TemporaryDirectory(prefix="laptop-floor-") as scratch:
        folder = args.folder
        if folder is None:
            from interp.core.toy_models import ToyConfig, save_toy_checkpoint

            folder = str(save_toy_checkpoint(Path(scratch) / "gpt2-small", ToyConfig(**SHAPE)))
        env = {**os.environ, "INTERP_CACHE": str(Path(scratch) / "cache"), "OMP_NUM_THREADS": "2",
               "TQDM_DISABLE": "1"}
        rows, failed = [], False
        for name in args.only:
            cmd = [sys.executable, "-m", "benchmarks.laptop_floor", "--child", name, folder]
            try:
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                rows.append({"analysis": name, "seconds": f">{args.timeout:.0f}", "peak_gb": None})
                print(json.dumps(rows[-1]), flush=True)
                failed = True
                continue
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                rows.append({"analysis": name, "error": done.returncode})
                print(json.dumps(rows[-1]), flush=True)
                failed = True
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["meets_target"] = row["seconds"] < TARGET_SECONDS and row["peak_gb"] < TARGET_GB
            failed |= not row["meets_target"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
