"""A store's files on disk: the build plan, the shards a build writes, and the merged arrays a store reads.

While a build runs, ``OUT`` holds::

    build.json                 the build's settings (a resumed build must match them)
    tokens.npy, doc_starts.npy the packed token stream, written before any forward pass
    tokenizer/                 the model's tokenizer, so a store decodes tokens without the model
    shards/shard-00012.safetensors   rows [start, stop) of the stream: "tokens" and "act.<j>" per site

Every file is written through :mod:`interp.core.files` (temporary + rename), so a shard is either absent or
complete; a shard that is nevertheless damaged (copied half-way, edited) fails :func:`valid_shard` and is
rebuilt. When all shards exist they are merged into one ``act-<j>.npy`` per site (row-major ``[n_tokens, d]``,
memory-mapped by readers), the direct-logit read-out is saved, and ``store.json`` is written last: its
presence marks a complete store.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from interp.core.files import atomic_path, atomic_write_text

FORMAT_VERSION = 1
MANIFEST = "store.json"
BUILD = "build.json"
_CODES = {"float16": "F16", "float32": "F32"}  # safetensors' dtype names


def shard_path(out: Path, index: int) -> Path:
    """Where shard ``index`` lives."""
    return out / "shards" / f"shard-{index:05d}.safetensors"


def write_shard(out: Path, index: int, start: int, tokens: np.ndarray, acts: list[np.ndarray]) -> Path:
    """Write one shard atomically: its token ids and one activation array per site, rows ``start..``."""
    from safetensors.numpy import save_file

    tensors = {"tokens": np.ascontiguousarray(tokens, dtype=np.int32)}
    tensors |= {f"act.{j}": np.ascontiguousarray(a) for j, a in enumerate(acts)}
    meta = {"start": str(start), "stop": str(start + len(tokens))}
    path = shard_path(out, index)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def valid_shard(path: Path, start: int, tokens: np.ndarray, dims: list[int] | None, dtype: str) -> bool:
    """Whether ``path`` is a complete shard of rows ``start..start+len(tokens)`` with these tokens and sites."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            if (meta.get("start"), meta.get("stop")) != (str(start), str(start + len(tokens))):
                return False
            if not np.array_equal(f.get_tensor("tokens"), tokens):
                return False
            n_sites = len([k for k in f.keys() if k.startswith("act.")])  # noqa: SIM118 (safe_open is no dict)
            if dims is not None and n_sites != len(dims):
                return False
            for j in range(n_sites):  # shapes and dtypes from the header: the data is not read
                part = f.get_slice(f"act.{j}")
                shape = part.get_shape()
                if part.get_dtype() != _CODES[dtype] or shape[0] != len(tokens) or dims and shape[1] != dims[j]:
                    return False
    except Exception:  # any unreadable file (truncated, not safetensors) is a shard to rebuild
        return False
    return True


def shard_dims(path: Path) -> list[int]:
    """The per-site widths recorded in a shard."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        keys = sorted((k for k in f.keys() if k.startswith("act.")), key=lambda k: int(k[4:]))  # noqa: SIM118
        return [int(f.get_slice(k).get_shape()[1]) for k in keys]


def merge(out: Path, bounds: list[tuple[int, int]], n_tokens: int, dtype: str, progress: bool = False) -> list[int]:
    """Concatenate the shards' activations into one memory-mappable ``act-<j>.npy`` per site; returns the widths."""
    from safetensors import safe_open
    from tqdm.auto import tqdm

    dims = shard_dims(shard_path(out, 0))
    for j, d in enumerate(tqdm(dims, desc="merging shards", disable=not progress)):
        with atomic_path(out / f"act-{j}.npy") as tmp:
            merged = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=(n_tokens, d))
            for i, (start, stop) in enumerate(bounds):
                with safe_open(str(shard_path(out, i)), framework="np") as f:
                    merged[start:stop] = f.get_tensor(f"act.{j}")
            merged.flush()
            del merged
    return dims


def save_readout(out: Path, readout: dict[str, np.ndarray]) -> None:
    """Save the matrices the direct logit effect is read through (see :mod:`interp.store.readout`)."""
    from safetensors.numpy import save_file

    with atomic_path(out / "readout.safetensors") as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in readout.items()}, str(tmp))


def finish(out: Path, manifest: dict[str, Any], keep_shards: bool) -> None:
    """Write ``store.json`` (marking the store complete) and drop the shards unless asked to keep them."""
    atomic_write_text(out / MANIFEST, json.dumps({"format": FORMAT_VERSION, **manifest}, indent=1))
    if not keep_shards:
        shutil.rmtree(out / "shards", ignore_errors=True)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's content, or None when it is absent or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
