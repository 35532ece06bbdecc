"""Which token a lens follows and which positions it keeps: the argument checks every lens shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int

from interp.core.tokens import to_single_token

Target = str | int | Sequence[str | int] | None
"""A one-token string (``" Paris"``), a token id, one of those per prompt, or ``None``."""


def resolve_positions(positions: Sequence[int] | int | None, mask: torch.Tensor) -> Int[torch.Tensor, "batch pos"]:
    """Absolute position per prompt of each requested position (negatives count from each last real token).

    Raises:
        ValueError: a position outside some prompt (the message names the position and the valid range).

    Examples:
        >>> resolve_positions([-1, 0], torch.tensor([[1, 1, 1], [1, 1, 0]])).tolist()
        [[2, 0], [1, 0]]
    """
    lengths = mask.sum(-1)
    if positions is None:
        # A padded batch keeps every column; padded ones decode padding and are the caller's to skip.
        return torch.arange(mask.shape[1], device=mask.device).expand(mask.shape[0], -1)
    requested = [positions] if isinstance(positions, int) else list(positions)
    if not requested or any(isinstance(p, bool) or not isinstance(p, int) for p in requested):
        raise ValueError(f"positions={positions!r}; pass an int or a non-empty list of ints")
    shortest = int(lengths.min())
    for p in requested:
        if not -shortest <= p < shortest:
            raise ValueError(f"position {p} is out of range: the shortest prompt has {shortest} tokens, "
                             f"valid positions are {-shortest}..{shortest - 1}")
    req = torch.tensor(requested, device=mask.device)
    return torch.where(req < 0, lengths[:, None] + req, req.expand(mask.shape[0], -1))


def target_ids(tokenizer: Any, target: Target, batch: int, device: Any) -> Int[torch.Tensor, " batch"]:
    """One token id per prompt from a string, an id, or a list of them (one per prompt).

    Raises:
        ValueError: a string that is not exactly one token, an id outside the vocabulary, or a list whose
            length is not the batch size.
    """
    items = list(target) if isinstance(target, Sequence) and not isinstance(target, str) else [target] * batch
    if len(items) != batch:
        raise ValueError(f"got {len(items)} targets for {batch} prompts; pass one target or one per prompt")
    vocab = len(tokenizer)
    ids = []
    for item in items:
        if isinstance(item, str):
            ids.append(to_single_token(_HasTokenizer(tokenizer), item))
        elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item < vocab:
            ids.append(item)
        else:
            raise ValueError(f"target={item!r}; a target is a one-token string or a token id in 0..{vocab - 1}")
    return torch.tensor(ids, dtype=torch.long, device=device)


@dataclass
class _HasTokenizer:
    tokenizer: Any
