"""Building a store past one process: the shards computed by Ray Data workers, each holding a model replica.

Why Ray Data rather than ``torchrun``/``accelerate`` (see ``docs/store.md``): storing activations is
embarrassingly parallel inference, with no gradients to all-reduce. Ray Data schedules the shard list over a
pool of actors (the model loaded once per actor, one GPU each where there are GPUs), retries a shard whose
worker died, and runs from an ordinary function call, in a notebook or a script, on a laptop (a local
cluster), one multi-GPU machine or many nodes (``ray_address="auto"``); ``torchrun`` needs its own launcher
command per node and a rendezvous, for collectives this job never uses.

Each worker runs exactly the code of a single-process build (:func:`interp.store.forward.compute_rows`) on
the shards it is given and writes them atomically into the shared ``out/shards`` folder (on several nodes,
``out`` must be on a file system they share); the driver then merges them as usual. Shards are whole batches,
so every worker runs the same batches a single process would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from interp.store import shards as files


class ShardWorker:
    """A Ray Data actor: loads the model once, then computes and writes the shards it is handed."""

    def __init__(self, out: str, threads: int) -> None:
        """Load the build's model and read its plan from ``out``."""
        import torch

        from interp.core.loading import load

        torch.set_num_threads(threads)
        self.out = Path(out)
        self.spec = files.read_json(self.out / files.BUILD)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = load(self.spec["model"], device=device)
        self.tokens = np.load(self.out / "tokens.npy", mmap_mode="r")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Compute and write each shard index in ``batch["shard"]``; returns the indices written."""
        from interp.store.forward import compute_rows, shard_bounds

        spec = self.spec
        bounds = shard_bounds(spec["n_tokens"], spec["seq_len"], spec["shard_rows"])
        for index in batch["shard"]:
            start, stop = bounds[int(index)]
            tokens = np.asarray(self.tokens[start:stop])
            acts = compute_rows(self.model, list(spec["sites"].values()), tokens, spec["seq_len"],
                                spec["batch_size"], spec["dtype"])
            files.write_shard(self.out, int(index), start, tokens, acts)
        return {"shard": np.asarray(batch["shard"])}


def run_ray(out: Path, todo: list[int], *, n_workers: int, address: str | None = None,
            progress: bool = True) -> None:
    """Compute shards ``todo`` of the build in ``out`` on ``n_workers`` Ray Data actors.

    Joins the cluster at ``address`` (or starts a local one with ``n_workers`` CPUs when none runs), and shuts
    down only a cluster it started.

    Raises:
        RuntimeError: a shard was not written (a worker failed past Ray's retries).
    """
    import ray
    import torch

    started = not ray.is_initialized()
    if started:
        local = {} if address else {"num_cpus": n_workers, "include_dashboard": False}
        ray.init(address=address, log_to_driver=False, **local)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        gpus = 1 if torch.cuda.is_available() else 0
        cpus = max(1, int(ray.cluster_resources().get("CPU", n_workers)) // n_workers)
        written = (
            ray.data.from_items([{"shard": i} for i in todo], override_num_blocks=len(todo))
            .map_batches(ShardWorker, fn_constructor_kwargs={"out": str(out), "threads": cpus}, batch_size=1,
                         concurrency=n_workers, num_cpus=cpus, num_gpus=gpus)
            .take_all()
        )
    finally:
        if started:
            ray.shutdown()
    missing = sorted(set(todo) - {int(row["shard"]) for row in written})
    if missing:
        raise RuntimeError(f"shards {missing} of {out} were not written; call build() again to resume")


def check_loadable(model: Any) -> str:
    """The name workers reload ``model`` by; ValueError when it is not a checkpoint folder or embedded name."""
    from interp.core.model_info import model_info
    from interp.reference import names

    name = model_info(model).name
    if not (Path(name).is_dir() or name in names()):
        raise ValueError(f"model name={name!r} is not a checkpoint folder or embedded model, so Ray workers cannot "
                         "load it; save it (save_pretrained) and interp.load the folder first")
    return name
