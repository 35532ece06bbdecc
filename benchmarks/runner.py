"""Find and run the ``bench_*.py`` modules, printing one ``name: ratio=X.XX (target <= Y)`` line each.

A benchmark module defines ``run() -> list[Ratio]``. Ratios compare two timings measured in the
same process, interleaved, so machine load affects both alike; absolute seconds are printed too.
"""

from __future__ import annotations

import importlib
import pkgutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple


class Ratio(NamedTuple):
    """One benchmark result: how many times slower ``subject`` is than ``baseline``."""

    name: str
    """Identifier printed at the start of the line."""
    ratio: float
    """Median subject time / median baseline time."""
    target: float
    """The ratio the benchmark should stay under."""
    detail: str = ""
    """Absolute timings and setup, printed after the ratio."""

    def line(self) -> str:
        """The report line, e.g. ``capture_all: ratio=1.21 (target <= 1.5)``."""
        detail = "  " + self.detail if self.detail else ""
        return f"{self.name}: ratio={self.ratio:.2f} (target <= {self.target:g}){detail}"


def median_seconds(functions: dict[str, Callable[[], object]], repeats: int = 9, warmup: int = 2) -> dict[str, float]:
    """Median wall time of each function, calling them round-robin so load drifts hit all alike."""
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(only: list[str] | None = None) -> int:
    """Run the benchmark modules (all, or those named in ``only``) and print their ratios.

    Returns:
        0; ratios over their target are counted on the last line, not failed on, since
        timings on a shared machine are noisy.
    """
    folder = Path(__file__).parent
    modules = sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if m.name.startswith("bench_"))
    if only:
        unknown = sorted(set(only) - set(modules))
        if unknown:
            raise SystemExit(f"unknown benchmark(s) {unknown}; available: {', '.join(modules)}")
        modules = [m for m in modules if m in only]
    results = []
    for name in modules:
        for result in importlib.import_module(f"benchmarks.{name}").run():
            print(result.line(), flush=True)
            results.append(result)
    over = [r.name for r in results if r.ratio > r.target]
    over_text = f"; over: {', '.join(over)}" if over else ""
    print(f"{len(results) - len(over)} of {len(results)} ratios within target{over_text}")
    return 0


def reference_gpt2() -> tuple[Path, Any]:
    """``ref-gpt2`` on the CPU, or a random model of the same shape when its checkpoint is missing."""
    import tempfile

    import interp
    from interp.core.toy_models import ToyConfig, save_toy_checkpoint

    try:
        folder = interp.reference.path("ref-gpt2")
    except FileNotFoundError:
        config = ToyConfig(arch="gpt2", n_layers=6, d_model=192, n_heads=6, n_ctx=64, vocab_size=3072)
        folder = save_toy_checkpoint(tempfile.mkdtemp(prefix="bench-gpt2-"), config)
    return folder, interp.load(folder, device="cpu")
