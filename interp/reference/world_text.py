"""Reference-world text as fixed-length token batches: the default data of analyses that need "some text".

Documents from :class:`interp.reference.world.World` are joined by newlines after a BOS token and cut
into sequences of one length, the way the reference models were trained, so batches need no padding.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Int

from interp.core.model_info import model_info


def world_tokens(
    model: Any, n_seqs: int, seq_len: int | None = None, *, seed: int = 0
) -> Int[torch.Tensor, "batch pos"]:
    """``n_seqs`` sequences of ``seq_len`` tokens of reference-world text, seeded.

    Each sequence starts with BOS when the model prepends one, then packs whole documents separated by
    newlines (the last one cut). Different seeds give different documents, so held-out text is just
    another seed.

    Args:
        model: A ``TransformerBridge`` (its tokenizer encodes the text).
        n_seqs: Number of sequences (>= 1).
        seq_len: Tokens per sequence, BOS included; default the model's context length.
        seed: World generator seed.

    Raises:
        ValueError: ``n_seqs < 1`` or ``seq_len`` outside ``2..n_ctx``.

    Examples:
        >>> world_tokens(model, 4, 32, seed=1).shape  # doctest: +SKIP
        torch.Size([4, 32])
    """
    from interp.reference.world import World, WorldConfig

    info = model_info(model)
    seq_len = info.n_ctx if seq_len is None else seq_len
    if isinstance(n_seqs, bool) or not isinstance(n_seqs, int) or n_seqs < 1:
        raise ValueError(f"n_seqs={n_seqs!r}; need at least 1 sequence")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or not 2 <= seq_len <= info.n_ctx:
        raise ValueError(f"seq_len={seq_len!r}; must be in 2..{info.n_ctx} (the model's context)")
    tok = model.tokenizer
    world = World(WorldConfig(seed=seed))
    newline = tok.encode("\n", add_special_tokens=False)
    start = [tok.bos_token_id] if info.prepend_bos and tok.bos_token_id is not None else []
    rows = []
    for _ in range(n_seqs):
        ids = list(start)
        while len(ids) < seq_len:
            ids += tok.encode(world.document(), add_special_tokens=False) + newline
        rows.append(ids[:seq_len])
    return torch.tensor(rows, dtype=torch.long, device=info.device)
