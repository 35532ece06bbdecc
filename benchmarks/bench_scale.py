"""Every analysis at real model sizes: time and peak memory against one forward pass, and against TransformerLens.

Models (random init, saved in Hugging Face layout with the toy tokenizer, never downloaded):
``gpt2-small`` (124M, GPT-2 small's shape), ``pythia-410m`` (GPT-NeoX, Pythia-410M's shape), ``llama-1b``
(Llama-3.2-1B's shape) and, for GPU machines, ``llama-8b`` (Llama-3.1-8B's shape, loaded with ``device_map``).

Each measurement runs in a fresh subprocess, so that "peak" means what the issue asks: the process's peak RSS
(``VmHWM``, reset after loading) minus its RSS once the model is loaded (on a GPU: peak minus loaded CUDA memory).
The worker runs the analysis once (that run gives the peak), then times it interleaved with one forward of the
same tokens (medians), so machine load hits both alike. Ratios:

- ``capture_selected`` (resid + pattern + neurons) <= 1.1x forward, ``capture_all`` <= 1.3x, and no slower
  than TransformerLens' ``run_with_cache(names_filter=...)`` of the same hooks (timed in the same worker);
- ``census_patterns`` (``head_census(model, tokens, importance=False)``) <= 1.3x;
- ``logit_lens`` (with top-1, KL to the final layer and target ranks read out) <= 1.3x its floor: one forward
  plus, per layer, one unembedding and one log-softmax;
- ``rome_edit`` (key statistics and layer choice cached by a preparing worker) <= (steps + 5)x one
  forward+backward of the batch it optimises over, and its peak is compared with that forward+backward's;
- every peak <= 3x the forward's peak at the same length;
- ``census_default`` / ``induction_default`` (``head_census(model)``, ``find_induction_heads(model)``, which size
  their own inputs) on GPT-2 small: < 240 s and peak RSS < 6 GB (the laptop floor).

Usage: ``python -m benchmarks.bench_scale --models gpt2-small --lengths 128,512`` (see ``--help``);
``make bench`` runs the default set, or what ``BENCH_SCALE_ARGS`` says.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.runner import Ratio
from benchmarks.scale_models import DEFAULT_MODELS, MODELS, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
LENGTH_ANALYSES = ("capture_selected", "capture_all", "census_patterns", "logit_lens")
ONCE_ANALYSES = ("rome_edit", "census_default", "induction_default")
TARGETS = {"capture_selected": 1.1, "capture_all": 1.3, "census_patterns": 1.3, "logit_lens": 1.3}
SELECTED = ["resid", "pattern", "neurons"]
PEAK_TARGET = 3.0
ROME = {"prompt": "{} is located in the city of", "subject": "The Eiffel Tower", "target": " Rome"}
# ---------------------------------------------------------------- worker: one measurement in a fresh process


def _rss_kb(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _settle() -> int:
    """Free what loading left behind and reset the peak-RSS mark; return the RSS (bytes) analyses start from."""
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed load buffers back, so reusing them is not "free" memory
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    return _rss_kb("VmRSS") * 1024


def _interleaved(functions: dict[str, Any], repeats: int, sync: Any) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in functions}
    order = list(functions.items())
    for r in range(repeats):
        # The order rotates each repetition: whichever call follows another pays for different page faults and
        # cache state, and a fixed order would bias the same comparison every time.
        for name, fn in order[r % len(order):] + order[:r % len(order)]:
            sync()
            start = time.perf_counter()
            fn()
            sync()  # CUDA kernels run asynchronously: stop the clock when they are done
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _rome_parts(model: Any, layer: int) -> tuple[Any, Any]:
    """(one cached edit + undo, one forward+backward of the batch the edit optimises over), as in bench_rome."""
    import torch

    from interp import rome
    from interp.core.hooks import hook_name, hooked
    from interp.core.tokens import pad_id, pad_right, tokenize

    config = rome.RomeConfig().sized(model)  # the steps and prefixes the edit runs with on this model
    subject, prompt = ROME["subject"], ROME["prompt"]
    fact = prompt.format(subject)
    texts = [fact] + [p + config.prefix_sep + fact for p in rome.prefixes(model, config)]
    target_ids = model.tokenizer.encode(ROME["target"], add_special_tokens=False)
    rows = [tokenize(model, t).tokens[0].tolist() + target_ids[:-1] for t in texts]
    rows.append(tokenize(model, rome.KL_PROMPT.format(subject)).tokens[0].tolist())
    device = next(p.device for p in model.parameters() if p.device.type != "meta")
    tokens = pad_right(rows, pad_id(model.tokenizer)).tokens.to(device)
    delta = torch.zeros(model.cfg.d_model, device=device, requires_grad=True)

    def edit() -> None:
        rome.edit(model, layer=layer, config=config, **ROME).undo()

    def forward_backward() -> None:
        with hooked(model, [(hook_name("mlp_out", layer), lambda x, hook: x + delta.to(x.dtype))]):
            loss = model(tokens).float().log_softmax(-1)[:, -1, 0].mean()
        torch.autograd.grad(loss, [delta])

    return edit, forward_backward


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the model, run ``spec["analysis"]`` once for its peak, then time it against its baselines."""
    import torch

    import interp

    gpu = spec["device"].startswith("cuda")
    placement = {"device_map": spec["device_map"]} if spec["device_map"] else {"device": spec["device"]}
    model = interp.load(spec["dir"], dtype=spec["dtype"], **placement)
    info = interp.model_info(model)
    n = spec["seq"]
    device = next(p.device for p in model.parameters() if p.device.type != "meta")
    tokens = torch.randint(1, info.d_vocab, (1, max(n, 1)), generator=torch.Generator().manual_seed(0)).to(device)
    analysis = spec["analysis"]

    def forward() -> None:
        with torch.no_grad():
            model(tokens)

    baselines: dict[str, Any] = {"forward": forward}
    extra: dict[str, Any] = {}
    if analysis in ("capture_selected", "capture_all"):
        names = interp.resolve_names(model, SELECTED if analysis == "capture_selected" else "all")

        def run() -> None:
            cap = interp.capture(model, tokens, names=names)
            # What capture hands back is a floor on its peak: capturing everything can outweigh a forward's peak.
            extra.setdefault("returned", sum(t.numel() * t.element_size() for t in cap.activations.values()))

        def transformer_lens() -> None:
            with torch.no_grad():
                model.run_with_cache(tokens, names_filter=names)

        baselines["transformer_lens"] = transformer_lens
        extra["hooks"] = len(names)
    elif analysis == "census_patterns":
        def run() -> None:
            interp.head_census(model, tokens, importance=False)
    elif analysis == "logit_lens":
        w_u = model.W_U.detach()
        resid = torch.randn(1, n, info.d_model, generator=torch.Generator().manual_seed(1)).to(w_u)

        def run() -> None:
            # A target id the tokenizer knows (the toy tokenizer has fewer tokens than the model's vocabulary).
            lens = interp.logit_lens(model, tokens, target=int(tokens[0, -1]) % len(model.tokenizer))
            lens.top1(), lens.kl_to_final(), lens.rank()

        def floor() -> None:
            forward()
            with torch.no_grad():
                for _ in range(info.n_layers + 1):
                    (resid @ w_u).float().log_softmax(-1)

        baselines["floor"] = floor
    elif analysis == "rome_prepare":
        # What the timed edit finds cached on disk: the layer choice's trace and the key statistics. No value
        # optimisation here: nothing of it outlives this process, and on a 1B model it is most of an edit's time.
        config = interp.rome.RomeConfig().sized(model)
        layer = interp.rome.choose_layer(model, ROME["prompt"], ROME["subject"], progress=False)
        interp.rome.key_stats(model, layer, config.stats_samples, max_tokens=config.stats_tokens, progress=False)
        return {"layer": layer}
    elif analysis == "rome_edit":
        run, baselines["forward_backward"] = _rome_parts(model, spec["layer"])
        extra["steps"] = interp.rome.RomeConfig().sized(model).steps
    elif analysis == "census_default":
        def run() -> None:
            interp.head_census(model)
    elif analysis == "induction_default":
        def run() -> None:
            interp.find_induction_heads(model)
    elif analysis == "forward":
        run = forward
    else:
        raise ValueError(f"analysis={analysis!r}")

    # One forward first, in every worker: the first call after loading also pages in library code and lazily built
    # buffers, which belong to neither the forward's peak nor the analysis's.
    forward()
    if "forward_backward" in baselines:  # ROME's memory is compared with one forward+backward of its own batch
        start_rss = _settle()
        baselines["forward_backward"]()
        extra["base_peak"] = _rss_kb("VmHWM") * 1024 - start_rss
    start_rss = _settle()
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start_gpu = torch.cuda.memory_allocated()
    start = time.perf_counter()
    run()
    if gpu:
        torch.cuda.synchronize()
    first = time.perf_counter() - start
    result = {"first_s": first, "rss_loaded": start_rss, "peak": _rss_kb("VmHWM") * 1024 - start_rss, **extra}
    if gpu:
        result["peak"] = torch.cuda.max_memory_allocated() - start_gpu
        result["peak_rss"] = _rss_kb("VmHWM") * 1024 - start_rss
    result["peak_total"] = _rss_kb("VmHWM") * 1024
    # A slow analysis is timed by its first run; a quick one is repeated, interleaved with its baselines.
    repeats = spec["repeats"] if first < spec["repeat_under_s"] else 1
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    times = _interleaved({"run": run, **baselines} if repeats > 1 else baselines, repeats, sync)
    result["time"] = times.pop("run", first)
    result.update({f"{k}_s": v for k, v in times.items()})
    return result


# ---------------------------------------------------------------- parent: plan, run workers, report


def _spawn(spec: dict[str, Any], timeout: float, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_scale", "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {done.returncode}: {tail[:200]}"}
    return json.loads(lines[-1].removeprefix("RESULT "))


def _slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares exponent k of value ~ length**k."""
    points = [(n, v) for n, v in points if v and v > 0]
    if len(points) < 2:
        return None
    xs, ys = [math.log(n) for n, _ in points], [math.log(v) for _, v in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}"


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


class _Table(list):
    """Lines of the report, printed as they are added (a full run takes long)."""

    def append(self, line: str) -> None:
        print(line, flush=True)
        super().append(line)


def measure(args: argparse.Namespace) -> tuple[list[Ratio], list[str]]:
    """Run every requested worker, printing the table as it goes; return the ratios and the table's lines."""
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-scale-"))
    env = {**os.environ, "INTERP_CACHE": str(workdir / "cache"), "PYTHONPATH": str(ROOT)}
    base = {"device": "cuda" if args.gpu else "cpu", "dtype": args.dtype or ("bfloat16" if args.gpu else "float32"),
            "repeats": args.repeats, "repeat_under_s": args.repeat_under_s}
    ratios: list[Ratio] = []
    lines = _Table()
    for line in [f"bench_scale: {base['device']}, {base['dtype']}, {os.cpu_count()} CPUs, "
             f"load {os.getloadavg()[0]:.1f}",
             f"{'model':<12} {'tokens':>6} {'analysis':<18} {'time s':>8} {'x base':>7} {'target':>6} "
             f"{'peak MB':>8} {'x fwd':>6} {'ok':>3}  note"]:
        lines.append(line)
    try:
        for name in args.models:
            device_map = args.device_map if name == "llama-8b" or args.device_map_all else None
            folder = save_checkpoint(name, workdir / name, "bfloat16" if name == "llama-8b" else "float32",
                                     "cuda" if args.gpu else "cpu")
            spec0 = {**base, "dir": str(folder), "device_map": device_map}
            forward: dict[int, dict[str, Any]] = {}
            results: dict[str, dict[int, dict[str, Any]]] = {}
            for n in args.lengths:
                forward[n] = _spawn({**spec0, "analysis": "forward", "seq": n}, args.timeout, env)
                _row(lines, name, n, "forward", forward[n], None, None, forward[n], "")
                for analysis in [a for a in args.analyses if a in LENGTH_ANALYSES]:
                    r = _spawn({**spec0, "analysis": analysis, "seq": n}, args.timeout, env)
                    results.setdefault(analysis, {})[n] = r
                    base_key = "floor_s" if analysis == "logit_lens" else "forward_s"
                    ratio = r["time"] / r[base_key] if "time" in r else None
                    note = "vs floor (fwd + unembed/log-softmax per layer)" if analysis == "logit_lens" else ""
                    if r.get("returned"):
                        note = f"returns {_mb(r['returned'])} MB: peak / returned {r['peak'] / r['returned']:.2f}"
                    _row(lines, name, n, analysis, r, ratio, TARGETS[analysis], forward[n], note)
                    _collect(ratios, f"{name}/{n}/{analysis}", ratio, TARGETS[analysis], r, forward[n])
                    if "transformer_lens_s" in r:
                        tl = r["transformer_lens_s"]
                        lines.append(f"{'':<12} {n:>6} {'  vs TL cache':<18} {tl:>8.3f} {r['time'] / tl:>7.2f} "
                                     f"{1.0:>6} {'':>8} {'':>6} {'yes' if r['time'] <= tl else 'NO':>3}  "
                                     f"TL run_with_cache {tl / r['forward_s']:.2f}x fwd, interp {ratio:.2f}x; "
                                     f"{r['hooks']} hooks")
                        ratios.append(Ratio(f"{name}/{n}/{analysis}_vs_transformer_lens", r["time"] / tl, 1.0,
                                            f"interp {r['time']:.3f} s, TL {tl:.3f} s"))
            _exponents(lines, name, args.lengths, forward, results)
            longest = forward[max(args.lengths)] if args.lengths else {}
            for analysis in [a for a in args.analyses if a in ONCE_ANALYSES]:
                _once(lines, ratios, name, analysis, spec0, longest, args, env)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return ratios, lines


def _once(lines: list[str], ratios: list[Ratio], name: str, analysis: str, spec0: dict[str, Any],
          longest: dict[str, Any], args: argparse.Namespace, env: dict[str, str]) -> None:
    """The analyses whose inputs do not depend on the benchmark's lengths, measured once per model."""
    spec = {**spec0, "analysis": analysis, "seq": max(args.lengths or [128])}
    if analysis == "rome_edit":
        prepared = _spawn({**spec, "analysis": "rome_prepare"}, args.timeout, env)
        if "error" in prepared:
            _row(lines, name, None, analysis, prepared, None, None, longest, "preparing (layer choice, key stats)")
            return
        r = _spawn({**spec, "layer": prepared["layer"]}, args.timeout, env)
        ratio = r["time"] / r["forward_backward_s"] if "time" in r else None
        target = r.get("steps", 100) + 5
        base = {"peak": r.get("base_peak")}  # memory, like time, against one forward+backward of its batch
        _row(lines, name, None, analysis, r, ratio, target, base,
             f"layer {prepared['layer']}, time and peak vs one forward+backward of its batch")
        _collect(ratios, f"{name}/rome_edit", ratio, target, r, base)
        return
    r = _spawn(spec, args.timeout, env)
    ratio = r["time"] / longest["time"] if "time" in r and "time" in longest else None
    # Their inputs are their own, not the forward's length: the 3x peak target does not apply. Only GPT-2 small on
    # the CPU has targets (240 s, 6 GB peak RSS: the laptop floor); elsewhere time and peak are reported unjudged.
    laptop = name == "gpt2-small" and "time" in r and not args.gpu
    verdict = ("yes" if r["time"] <= 240 and r["peak_total"] <= 6e9 else "NO") if laptop else "-"
    note = f"defaults; x base, x fwd = vs forward at {spec['seq']} tokens"
    if "peak_total" in r:
        note += f"; peak RSS {r['peak_total'] / 1e9:.2f} GB"
    _row(lines, name, None, analysis, r, ratio, None, longest, note, verdict=verdict)
    if laptop:
        ratios.append(Ratio(f"{name}/{analysis}_seconds_vs_240s", r["time"] / 240, 1.0, f"{r['time']:.1f} s"))
        ratios.append(Ratio(f"{name}/{analysis}_peak_rss_vs_6GB", r["peak_total"] / 6e9, 1.0,
                            f"peak RSS {r['peak_total'] / 1e9:.2f} GB"))


def _row(lines: list[str], name: str, n: int | None, analysis: str, r: dict[str, Any], ratio: float | None,
         target: float | None, fwd: dict[str, Any], note: str, verdict: str | None = None) -> None:
    """One line of the table; ``verdict`` replaces the ok column's judgement (time and peak vs their targets)."""
    if "error" in r:
        lines.append(f"{name:<12} {n or '-':>6} {analysis:<18} ERROR {r['error']}")
        return
    peak_ratio = r["peak"] / fwd["peak"] if fwd.get("peak") else None
    ok = (ratio is None or target is None or ratio <= target) and (
        analysis == "forward" or peak_ratio is None or peak_ratio <= PEAK_TARGET)
    verdict = verdict or ("yes" if ok else "NO")
    lines.append(f"{name:<12} {n or '-':>6} {analysis:<18} {r['time']:>8.3f} {_fmt(ratio):>7} {_fmt(target, 'g'):>6} "
                 f"{_mb(r['peak']):>8} {_fmt(peak_ratio):>6} {verdict:>3}  {note}")


def _collect(ratios: list[Ratio], key: str, ratio: float | None, target: float, r: dict[str, Any],
             fwd: dict[str, Any]) -> None:
    if ratio is None:
        return
    ratios.append(Ratio(f"{key}_time", ratio, target, f"{r['time']:.3f} s"))
    if fwd.get("peak"):
        ratios.append(Ratio(f"{key}_peak", r["peak"] / fwd["peak"], PEAK_TARGET,
                            f"peak {_mb(r['peak'])} MB / forward {_mb(fwd['peak'])} MB"))


def _exponents(lines: list[str], name: str, lengths: list[int], forward: dict[int, dict[str, Any]],
               results: dict[str, dict[int, dict[str, Any]]]) -> None:
    """Growth with sequence length, value ~ length**k, of each analysis next to the forward's."""
    if len(lengths) < 2:
        return
    fwd_t = _slope([(n, forward[n].get("time")) for n in lengths])
    fwd_m = _slope([(n, forward[n].get("peak")) for n in lengths])
    for analysis, by_n in results.items():
        t = _slope([(n, by_n[n].get("time")) for n in lengths])
        m = _slope([(n, by_n[n].get("peak")) for n in lengths])
        lines.append(f"{name:<12} {'k':>6} {analysis:<18} time ~ L^{_fmt(t)} (forward L^{_fmt(fwd_t)}), "
                     f"peak ~ L^{_fmt(m)} (forward L^{_fmt(fwd_m)})")


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line (also read from ``BENCH_SCALE_ARGS`` under ``make bench``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--lengths", default="128,512,1024", help="comma list of token counts (batch 1)")
    parser.add_argument("--analyses", default=",".join(LENGTH_ANALYSES + ONCE_ANALYSES),
                        help="comma list of " + ", ".join(LENGTH_ANALYSES + ONCE_ANALYSES))
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing repetitions (medians)")
    parser.add_argument("--repeat-under-s", type=float, default=20.0,
                        help="analyses whose first run took longer are timed by that run alone")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker process")
    parser.add_argument("--gpu", action="store_true", help="run on CUDA in bfloat16 (unless --dtype)")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (GPU default)")
    parser.add_argument("--device-map", default="auto", help="device_map for llama-8b (default auto)")
    parser.add_argument("--device-map-all", action="store_true", help="load every model with --device-map")
    parser.add_argument("--workdir", default=None, help="keep checkpoints and caches here (reused next run)")
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.lengths = [int(n) for n in args.lengths.split(",") if n]
    args.analyses = [a for a in args.analyses.split(",") if a]
    unknown = sorted(set(args.models) - set(MODELS)) + sorted(set(args.analyses) - set(LENGTH_ANALYSES + ONCE_ANALYSES))
    if unknown:
        parser.error(f"unknown model(s)/analysis(es) {unknown}")
    if "llama-8b" in args.models and not args.gpu:
        parser.error("llama-8b needs --gpu (16 GB of bfloat16 weights)")
    return args


def run() -> list[Ratio]:
    """``make bench`` entry: the default set, or the options in ``BENCH_SCALE_ARGS``; prints the table."""
    return measure(parse(shlex.split(os.environ.get("BENCH_SCALE_ARGS", ""))))[0]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        print("RESULT " + json.dumps(worker(json.loads(argv[1]))), flush=True)
        return 0
    ratios, _ = measure(parse(argv))
    over = [r.name for r in ratios if r.ratio > r.target]
    print(f"{len(ratios) - len(over)} of {len(ratios)} ratios within target"
          + (f"; over: {', '.join(over)}" if over else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
