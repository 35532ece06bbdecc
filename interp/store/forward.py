"""One shard's forward passes: rows of the packed stream through the model, activations kept at the stored hooks.

The single-process build and every Ray worker run this same code on the same batches (a shard is whole
batches), so their shards agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from interp.core.hooks import hooked
from interp.core.model_info import model_info


def shard_bounds(n_tokens: int, seq_len: int, shard_rows: int) -> list[tuple[int, int]]:
    """``[start, stop)`` token ranges of the shards: ``shard_rows`` rows each, the last one shorter."""
    step = seq_len * shard_rows
    return [(start, min(start + step, n_tokens)) for start in range(0, n_tokens, step)]


def compute_rows(model: Any, hooks: list[str], tokens: np.ndarray, seq_len: int, batch_size: int,
                 dtype: str) -> list[np.ndarray]:
    """Activations ``[len(tokens), d]`` at each hook for a run of whole rows (the last may be short)."""
    info = model_info(model)
    torch_dtype = getattr(torch, dtype)
    n_full = len(tokens) // seq_len
    batches = [tokens[r * seq_len:min(r + batch_size, n_full) * seq_len].reshape(-1, seq_len)
               for r in range(0, n_full, batch_size)]
    if len(tokens) % seq_len:  # the stream's last row, shorter than the others: a batch of its own
        batches.append(tokens[n_full * seq_len:][None])
    got: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}

    def keeper(name: str) -> Any:  # by the name asked for: the bridge may report an aliased hook's own name
        def keep(act: torch.Tensor, hook: Any) -> None:
            got[name].append(act.detach().reshape(act.shape[0] * act.shape[1], -1).to("cpu", torch_dtype))

        return keep

    with torch.no_grad(), hooked(model, [(h, keeper(h)) for h in hooks]):
        for batch in batches:
            model(torch.from_numpy(batch.astype(np.int64)).to(info.device))  # a copy: the plan may be a read-only map
    return [torch.cat(got[h]).numpy() for h in hooks]
