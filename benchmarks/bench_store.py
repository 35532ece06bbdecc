"""The activation store: build cost against a plain forward, and query speed over a million stored tokens.

1. ``store_build_vs_forward``: ``interp.store.build`` of one layer's MLP neurons (ref-gpt2, d_mlp 768, float16)
   over ``BUILD_TOKENS`` tokens of reference-world text, everything included (packing the text, hooks, shard
   writes with fsync, the merge, the logit read-out), against plain forwards of the same rows in the same
   batches. Target <= 1.3.
2. ``neuron_query_vs_half_second``: ``store.top_examples(site, neuron, k=20)`` (contexts, histogram, quantile
   examples and logit effect included) on a store of ``QUERY_TOKENS`` rows (default 1M: 1.5 GB) reopened for
   each query, page cache warm, divided by the 0.5 s budget. Target <= 1.
3. ``direction_query_vs_raw_scan``: ``store.unit_activations(site, vector)`` (the scan behind a direction's
   ``top_examples``) against the fastest plain read of the same bytes: one integer max over the whole memory-mapped
   array on all of torch's threads, no conversion or arithmetic beyond the comparison. Timed round-robin (scan,
   read, full query, scan, ...; medians) so load drifts hit all alike; both in GB/s of stored activations, and the
   whole ``top_examples(site, vector, k=20)`` beside them. Target <= 2 (bound by memory bandwidth: the read is
   the cost, not the float16 conversion or the arithmetic). The first scan, which compiles the fused kernel
   (``interp.store.scan``), is timed apart.

Building a million tokens with the model takes far longer than a benchmark should on a CPU (about half an hour
here), so the query store is the ``BUILD_TOKENS``-token build tiled to ``QUERY_TOKENS`` rows (tokens, document
starts and activations repeated, one row of the manifest changed): queries do not look at the values' meaning, only
at the layout and size, and the tiled array is a real 1.5 GB file read through the page cache, not 8192 cached
rows. ``BENCH_STORE_TOKENS`` sets the query store's size; it shrinks (and says so) when the disk has less than
three times its size free.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from benchmarks.runner import Ratio, median_seconds, reference_gpt2

BUILD_TOKENS = 64 * 64 * 2
QUERY_TOKENS = int(os.environ.get("BENCH_STORE_TOKENS", 1_000_000))


def _best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _tiled_store(store, folder: Path, n_tokens: int) -> Path:
    """A store of ``n_tokens`` rows repeating ``store``'s arrays, in the layout ``build`` writes."""
    folder.mkdir()
    reps = -(-n_tokens // store.n_tokens)
    for name in ("tokenizer", "readout.safetensors"):
        src = store.path / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, folder / name)
    np.save(folder / "tokens.npy", np.tile(store.tokens, reps)[:n_tokens])
    starts = np.concatenate([store.doc_starts + i * store.n_tokens for i in range(reps)])
    np.save(folder / "doc_starts.npy", starts[starts < n_tokens])
    for j, site in enumerate(store.sites):
        src = store.activations(site)
        out = np.lib.format.open_memmap(folder / f"act-{j}.npy", mode="w+", dtype=src.dtype,
                                        shape=(n_tokens, src.shape[1]))
        for start in range(0, n_tokens, len(src)):
            out[start:start + len(src)] = src[: n_tokens - start]
        out.flush()
        del out
    manifest = {**store.manifest, "n_tokens": n_tokens}
    (folder / "store.json").write_text(json.dumps(manifest))
    return folder


def run() -> list[Ratio]:
    """Time a build against plain forwards, then neuron and direction queries on a large store."""
    import interp
    from interp.core.hooks import hook_name
    from interp.reference.world_text import world_tokens

    _, model = reference_gpt2()
    info = interp.model_info(model)
    site = hook_name("neurons", info.n_layers // 2)
    work = Path(tempfile.mkdtemp(prefix="bench-store-", dir=os.environ.get("BENCH_STORE_DIR")))
    try:
        rows = world_tokens(model, BUILD_TOKENS // info.n_ctx, seed=0)
        batch = max(1, 4096 // info.n_ctx)

        def forward():
            with torch.no_grad():
                for start in range(0, len(rows), batch):
                    model(rows[start:start + batch])

        builds = iter(range(100))

        def build():
            return interp.store.build(model, sites=[site], n_tokens=BUILD_TOKENS, out=work / f"b{next(builds)}",
                                      progress=False)

        forward(), build()  # warm up both
        t_fwd, t_build = [], []
        for _ in range(3):  # interleaved, so load drifts hit both alike
            t_fwd.append(_best(forward, 1))
            t_build.append(_best(build, 1))
        t_fwd, t_build = min(t_fwd), min(t_build)
        store = interp.store.open(work / "b0")

        free = shutil.disk_usage(work).free
        n_query = QUERY_TOKENS
        bytes_per_token = info.d_mlp * 2
        while n_query > store.n_tokens and 3 * n_query * bytes_per_token > free:
            n_query //= 2
        big = _tiled_store(store, work / "big", n_query)
        size_gb = n_query * bytes_per_token / 1e9
        unit = int(np.argmax(np.asarray(store.activations(site), dtype=np.float32).max(0)))

        def neuron_query():
            interp.store.open(big).top_examples(site, unit, k=20)

        vector = torch.randn(info.d_mlp, generator=torch.Generator().manual_seed(0))
        opened = interp.store.open(big)
        acts = opened.activations(site)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a read-only memory map, only read
            ints = torch.from_numpy(np.asarray(acts).view(np.int16))

        ints.max(), neuron_query()  # page cache warm
        start = time.perf_counter()
        opened.unit_activations(site, vector)  # the first scan compiles the fused kernel (or finds it cached)
        t_first = time.perf_counter() - start
        t_neuron = _best(neuron_query)
        timed = median_seconds({
            "scan": lambda: opened.unit_activations(site, vector),
            "raw": lambda: ints.max(),  # every byte read once, all threads, nothing converted
            "query": lambda: opened.top_examples(site, vector, k=20),
        }, repeats=7, warmup=1)
        t_dir, t_raw, t_query = timed["scan"], timed["raw"], timed["query"]
        shrunk = "" if n_query == QUERY_TOKENS else f" (shrunk from {QUERY_TOKENS}: {free / 1e9:.1f} GB free)"
        setup = f"{n_query} tokens x {info.d_mlp} float16 = {size_gb:.2f} GB{shrunk}, {torch.get_num_threads()} threads"
        return [
            Ratio("store_build_vs_forward", t_build / t_fwd, 1.3,
                  f"build {t_build:.2f} s / forward {t_fwd:.2f} s over {BUILD_TOKENS} tokens of {site} "
                  f"({BUILD_TOKENS / t_build:.0f} tok/s stored)"),
            Ratio("neuron_query_vs_half_second", t_neuron / 0.5, 1.0,
                  f"top_examples(k=20) {t_neuron * 1000:.0f} ms, store reopened each time; {setup}"),
            Ratio("direction_query_vs_raw_scan", t_dir / t_raw, 2.0,
                  f"direction scan {size_gb / t_dir:.2f} GB/s ({t_dir * 1000:.0f} ms) / raw read "
                  f"{size_gb / t_raw:.2f} GB/s ({t_raw * 1000:.0f} ms), medians of 7 interleaved; whole "
                  f"top_examples(vector, k=20) {t_query * 1000:.0f} ms ({size_gb / t_query:.2f} GB/s); first scan "
                  f"{t_first:.1f} s (compiling the fused kernel, unless inductor's cache has it); {setup}"),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    for result in run():
        print(result.line())
