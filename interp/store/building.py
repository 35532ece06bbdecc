"""``interp.store.build``: stream a corpus through a model and keep the activations of chosen sites on disk.

The corpus is packed into rows first (:mod:`interp.store.corpus`), then cut into shards of whole batches;
each shard is one or more forward passes with hooks on just the stored sites (:func:`interp.core.hooks.hooked`),
written atomically (:mod:`interp.store.shards`). A build that stops (Ctrl-C, a crash, a killed job) is resumed
by calling ``build`` again with the same arguments: complete shards are kept, damaged ones rebuilt. The same
shards can be computed by Ray workers (:mod:`interp.store.distributed`); either way they are merged into one
store at the end.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from interp.core.capturing import resolve_names
from interp.core.files import atomic_dir, atomic_path, atomic_write_text, check_can_write
from interp.core.hooks import site_of
from interp.core.locking import holds_model
from interp.core.model_info import model_info
from interp.store import shards as files
from interp.store.activation_store import ActivationStore, open_store
from interp.store.corpus import Corpus, pack
from interp.store.forward import compute_rows, shard_bounds
from interp.store.readout import readout, readout_kind

DTYPES = ("float16", "float32")
_SHARD_BYTES = 64 * 2**20  # a shard holds about this much activation data: small enough to redo, big enough to batch


@holds_model
def build(
    model: Any,
    corpus: Corpus = None,
    *,
    sites: Sequence[str],
    n_tokens: int,
    out: str | os.PathLike[str],
    seq_len: int | None = None,
    batch_size: int | None = None,
    shard_rows: int | None = None,
    dtype: str = "float16",
    seed: int = 0,
    text_column: str = "text",
    workers: int | None = None,
    ray_address: str | None = None,
    overwrite: bool = False,
    keep_shards: bool = False,
    progress: bool = True,
) -> ActivationStore:
    """Run ``n_tokens`` tokens of ``corpus`` through ``model`` and store the activations at ``sites`` in ``out``.

    Calling it again with the same arguments after an interruption resumes: finished shards are kept.

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`.
        corpus: None for the reference world's document generator (seeded by ``seed``), a text file (one
            document per line), a folder written by ``datasets.Dataset.save_to_disk``, a ``datasets.Dataset``,
            or an iterable of strings.
        sites: Hook names (``"blocks.3.mlp.hook_post"``, from :func:`interp.core.hooks.hook_name`) or aliases
            naming one hook (``"embed"``); each is stored under the exact string given.
        n_tokens: Token positions to store (BOS positions included).
        out: The store's folder; must be absent or empty unless resuming the same build or ``overwrite``.
        seq_len: Tokens per row fed to the model; default its context length.
        batch_size: Rows per forward pass; default about 4096 tokens' worth.
        shard_rows: Rows per shard (a multiple of ``batch_size``); default about 64 MB of activations.
        dtype: ``"float16"`` (half the disk) or ``"float32"``.
        seed: Seed of the reference world's generator (``corpus=None``).
        text_column: The text column of a dataset corpus.
        workers: None to run here; an int to run that many model replicas with Ray Data (one GPU each where
            there are GPUs), see :mod:`interp.store.distributed`. The model is reloaded in each worker from its
            checkpoint, so it must be one :func:`interp.load` can load by name (no unsaved weight edits).
        ray_address: The Ray cluster to join (``"auto"``, ``"ray://..."``); default a local one.
        overwrite: Delete whatever ``out`` holds and build from scratch.
        keep_shards: Keep ``out/shards`` after merging (by default they are removed: the merged arrays hold
            the same data).
        progress: Show tqdm progress bars.

    Returns:
        The finished store, as :func:`interp.store.open` returns it.

    Raises:
        ValueError: a bad site, count, length, dtype or corpus (the message names the value and the range).
        FileExistsError: ``out`` holds other data (or a build with other settings) and ``overwrite`` is False.

    Examples:
        >>> from interp.core.toy_models import load_toy
        >>> import tempfile
        >>> store = build(load_toy(), ["the cat sat", "a dog ran"], sites=["blocks.0.mlp.hook_post"],
        ...               n_tokens=12, out=tempfile.mkdtemp() + "/s", progress=False)
        >>> store.activations("blocks.0.mlp.hook_post").shape, store.tokens.shape
        ((12, 128), (12,))
    """
    info = model_info(model)
    out = Path(out)
    hooks = _check_sites(model, sites)
    seq_len = info.n_ctx if seq_len is None else seq_len
    _check_int("n_tokens", n_tokens, 1, None)
    _check_int("seq_len", seq_len, 2, info.n_ctx, "the model's context")
    batch_size = max(1, 4096 // seq_len) if batch_size is None else batch_size
    _check_int("batch_size", batch_size, 1, None)
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; valid dtypes are {', '.join(DTYPES)}")
    if workers is not None:
        from interp.store.distributed import check_loadable

        _check_int("workers", workers, 1, None)
        check_loadable(model)
    if shard_rows is None:
        width = sum(_width(model, h) for h in hooks) * np.dtype(dtype).itemsize * seq_len
        shard_rows = max(1, _SHARD_BYTES // max(width, 1) // batch_size) * batch_size
    _check_int("shard_rows", shard_rows, 1, None)
    if shard_rows % batch_size:
        raise ValueError(f"shard_rows={shard_rows}; must be a multiple of batch_size={batch_size} so that a shard "
                         "is whole batches (then a resumed or distributed build runs the very same batches)")
    spec = {"model": info.name, "sites": dict(zip(sites, hooks, strict=True)), "n_tokens": n_tokens,
            "seq_len": seq_len, "batch_size": batch_size, "shard_rows": shard_rows, "dtype": dtype, "seed": seed}
    packed = pack(model, corpus, n_tokens, seq_len, seed=seed, text_column=text_column)
    spec["corpus"] = packed.description
    _prepare(out, spec, packed.tokens, overwrite)
    if not (out / "tokens.npy").exists():
        _save_array(out / "tokens.npy", packed.tokens)
        _save_array(out / "doc_starts.npy", packed.doc_starts)
    if not (out / "tokenizer").exists():
        with atomic_dir(out / "tokenizer") as tmp:
            model.tokenizer.save_pretrained(str(tmp))
    bounds = shard_bounds(n_tokens, seq_len, shard_rows)
    todo = [i for i, (start, stop) in enumerate(bounds)
            if not files.valid_shard(files.shard_path(out, i), start, packed.tokens[start:stop], None, dtype)]
    if todo and workers is not None:
        from interp.store.distributed import run_ray

        run_ray(out, todo, n_workers=workers, address=ray_address, progress=progress)
    elif todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(bounds[i][1] - bounds[i][0] for i in todo), desc="storing activations",
                   unit="tok", unit_scale=True, disable=not progress)
        for i in todo:
            start, stop = bounds[i]
            acts = compute_rows(model, hooks, packed.tokens[start:stop], seq_len, batch_size, dtype)
            files.write_shard(out, i, start, packed.tokens[start:stop], acts)
            bar.update(stop - start)
        bar.close()
    return finalize(out, model, spec, bounds, keep_shards=keep_shards, progress=progress)


def finalize(out: Path, model: Any, spec: dict[str, Any], bounds: list[tuple[int, int]], *,
             keep_shards: bool, progress: bool) -> ActivationStore:
    """Merge complete shards into the store's arrays, save the logit read-out, and mark the store complete."""
    hooks = list(spec["sites"].values())
    dims = files.merge(out, bounds, spec["n_tokens"], spec["dtype"], progress=progress)
    files.save_readout(out, readout(model, hooks))
    sites = [{"site": s, "hook": h, "d": d, "readout": readout_kind(h)}
             for (s, h), d in zip(spec["sites"].items(), dims, strict=True)]
    files.finish(out, {**spec, "sites": sites, "d_model": model_info(model).d_model}, keep_shards)
    return open_store(out)


def _prepare(out: Path, spec: dict[str, Any], tokens: np.ndarray, overwrite: bool) -> None:
    """Start ``out`` afresh, or check that it holds an unfinished build of this very ``spec`` to resume."""
    if overwrite and out.exists():
        shutil.rmtree(out)
    previous = files.read_json(out / files.BUILD)
    if previous is not None and not (out / files.MANIFEST).exists():
        if previous != spec:
            changed = sorted(k for k in spec.keys() | previous.keys() if spec.get(k) != previous.get(k))
            raise FileExistsError(f"{out} holds an unfinished build with other settings ({', '.join(changed)}); "
                                  "pass overwrite=True to start again")
        saved = out / "tokens.npy"
        if saved.exists() and not np.array_equal(np.load(saved, mmap_mode="r"), tokens):
            raise FileExistsError(f"{out} holds an unfinished build of other text; pass overwrite=True to start again")
        return
    check_can_write(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / files.BUILD, json_dumps(spec))


def json_dumps(spec: dict[str, Any]) -> str:
    """``spec`` as stable JSON (so a resumed build compares equal to what it reads back)."""
    import json

    return json.dumps(spec, indent=1)


def _save_array(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def _check_sites(model: Any, sites: Sequence[str]) -> list[str]:
    if isinstance(sites, str) or not sites or not all(isinstance(s, str) for s in sites):
        raise ValueError(f"sites={sites!r}; pass a non-empty list of hook names (e.g. hook_name('neurons', 0))")
    if len(set(sites)) != len(sites):
        raise ValueError(f"sites={list(sites)!r} names a site twice")
    hooks = []
    for site in sites:
        resolved = resolve_names(model, [site])
        if len(resolved) != 1:
            raise ValueError(f"site={site!r} names {len(resolved)} hooks ({resolved[0]}..{resolved[-1]}); "
                             "pass one hook name per site")
        if site_of(resolved[0]) in ("pattern", "scores"):
            raise ValueError(f"site={site!r} is [batch head q k], not one vector per token; store z or resid instead")
        hooks.append(resolved[0])
    return hooks


def _width(model: Any, hook: str) -> int:
    """Values per token at ``hook`` (for sizing shards before the first forward)."""
    info = model_info(model)
    site = site_of(hook)
    if site == "neurons":
        return info.d_mlp
    if site in ("q", "z", "rot_q"):
        return info.n_heads * info.d_head
    if site in ("k", "v", "rot_k"):
        return info.n_kv_heads * info.d_head
    return info.d_model


def _check_int(name: str, value: Any, low: int, high: int | None, what: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        valid = f"{low}..{high}" + (f" ({what})" if what else "") if high is not None else f">= {low}"
        raise ValueError(f"{name}={value!r}; must be an integer {valid}")
