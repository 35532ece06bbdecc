"""Where capture's time goes at real size: a forward, reference-only hooks, capture, TransformerLens' cache, the floor.

The floor is what no capture can avoid on top of a forward: the returned activations are memory that stays alive,
so it cannot be recycled between layers and every page of it is faulted in fresh (zeroed by the kernel) once per
call. ``floor`` runs one forward and then first-touches as many bytes, in tensors of the shapes capture returns;
``refs`` and ``clones`` are bare hooks keeping each tensor or a copy of it; ``first_touch`` minus ``rewrite`` is
the page-fault cost of the returned bytes alone.

Why page faults vary so much (issue #21): at 1024 tokens a Llama-1B-shaped model makes several 128 MB
``[batch head pos pos]`` temporaries per layer, above glibc's largest dynamic mmap threshold (32 MB). Each is served
from a free hole of the heap when there is one, else mmapped, faulted in fresh and unmapped when freed; so the faults
of one call, a plain forward's included, depend on what the previous call left in the heap. CPU time (user, sys) is
printed beside wall time because it is less hurt by a loaded machine.

Usage (a checkpoint from ``benchmarks.scale_models.save_checkpoint("llama-1b", Path("/tmp/h2_ckpt"), "float32",
"cpu")``)::

    python scripts/capture_floor.py /tmp/h2_ckpt --seq 1024 --names resid,pattern,neurons --repeats 3

Every function is timed interleaved with the others (the order rotates each repetition); medians are printed with
the minor page faults each call took (``getrusage``) and the load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch


def _usage() -> tuple[int, float, float]:
    """(minor page faults, user CPU s, system CPU s) of this process so far: CPU time is less hurt by load."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_minflt, r.ru_utime, r.ru_stime


def measure(folder: str, seq: int, names: list[str], repeats: int, only: list[str] | None) -> None:
    """Load the checkpoint, time each way of running it on ``seq`` random tokens, and print the table."""
    import interp
    from interp.core.hooks import hooked

    model = interp.load(folder, dtype="float32", device="cpu")
    info = interp.model_info(model)
    tokens = torch.randint(1, info.d_vocab, (1, seq), generator=torch.Generator().manual_seed(0))
    hooks = interp.resolve_names(model, names if names != ["all"] else "all")
    cap = interp.capture(model, tokens, names=hooks)
    shapes = [(x.shape, x.dtype) for x in cap.activations.values()]
    returned = sum(x.numel() * x.element_size() for x in cap.activations.values())
    del cap

    def forward() -> Any:
        with torch.no_grad():
            return model(tokens)

    def keeping(copy: bool) -> Callable[[], Any]:
        def run() -> Any:  # one hook per name that keeps the tensor (or a copy): capture minus its bookkeeping
            kept: dict[str, torch.Tensor] = {}

            def make(name: str) -> Callable[..., None]:
                def hook(x: torch.Tensor, hook: Any) -> None:
                    kept[name] = x.clone() if copy else x

                return hook

            with torch.no_grad(), hooked(model, [(n, make(n)) for n in hooks]):
                model(tokens)
            return kept

        return run

    refs, clones = keeping(False), keeping(True)

    def first_touch() -> Any:  # fresh memory of the returned shapes, written once
        return [torch.empty(shape, dtype=dtype).fill_(1.0) for shape, dtype in shapes]

    warm = first_touch()

    def rewrite() -> Any:  # the same writes into memory already faulted in: first_touch minus this = fault cost
        for x in warm:
            x.fill_(1.0)

    def floor() -> Any:
        forward()
        return first_touch()

    def capture() -> Any:
        return interp.capture(model, tokens, names=hooks)

    def transformer_lens() -> Any:
        with torch.no_grad():
            return model.run_with_cache(tokens, names_filter=hooks)

    functions = {"forward": forward, "refs": refs, "clones": clones, "capture": capture,
                 "transformer_lens": transformer_lens, "floor": floor, "first_touch": first_touch, "rewrite": rewrite}
    if only:
        functions = {k: v for k, v in functions.items() if k in only or k == "forward"}
    forward()
    times: dict[str, list[float]] = {k: [] for k in functions}
    faults: dict[str, list[int]] = {k: [] for k in functions}
    cpu: dict[str, list[tuple[float, float]]] = {k: [] for k in functions}
    order = list(functions.items())
    for r in range(repeats):
        for name, fn in order[r % len(order):] + order[:r % len(order)]:
            (f0, u0, s0), t0 = _usage(), time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t0)
            f1, u1, s1 = _usage()
            faults[name].append(f1 - f0)
            cpu[name].append((u1 - u0, s1 - s0))
            print(f"  {name}: {times[name][-1]:.2f} s, user {u1 - u0:.2f} s, sys {s1 - s0:.2f} s, {f1 - f0} faults",
                  file=sys.stderr, flush=True)
            del out  # freed before the next call, as in bench_scale (its captures are locals)
    fwd = statistics.median(times["forward"])
    fwd_cpu = statistics.median(u + s for u, s in cpu["forward"])
    print(f"{folder} seq {seq}, {len(hooks)} hooks ({','.join(names)}), returns {returned / 2**20:.0f} MB, "
          f"{torch.get_num_threads()} threads, {repeats} repeats, load {os.getloadavg()}")
    print(f"{'what':<17} {'median s':>9} {'x fwd':>6} {'min s':>7} {'user s':>7} {'sys s':>6} {'cpu x fwd':>9} "
          f"{'faults':>9} {'fault MB':>9}  all s")
    for name in functions:
        t, f = statistics.median(times[name]), statistics.median(faults[name])
        user, system = (statistics.median(c[i] for c in cpu[name]) for i in (0, 1))
        total = statistics.median(u + s for u, s in cpu[name])
        print(f"{name:<17} {t:>9.3f} {t / fwd:>6.2f} {min(times[name]):>7.3f} {user:>7.2f} {system:>6.2f} "
              f"{total / fwd_cpu:>9.2f} {f:>9.0f} {f * 4096 / 2**20:>9.0f}  "
              + " ".join(f"{x:.2f}" for x in times[name]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a checkpoint from benchmarks.scale_models.save_checkpoint")
    parser.add_argument("--seq", type=int, default=1024, help="tokens (batch 1)")
    parser.add_argument("--names", default="resid,pattern,neurons", help="comma list of aliases, or all")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (medians)")
    parser.add_argument("--only", default=None, help="comma list of functions to time (forward always)")
    args = parser.parse_args()
    measure(args.folder, args.seq, args.names.split(","), args.repeats, args.only.split(",") if args.only else None)


if __name__ == "__main__":
    main()
