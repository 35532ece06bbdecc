"""Clean and corrupted prompts, tokenized side by side and checked to line up position by position."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from jaxtyping import Int

from interp.core.tokens import Prompts, str_tokens, tokenize


class PromptPair(NamedTuple):
    """A clean batch and a corrupted batch of the same shape, with the same real positions."""

    clean: Int[torch.Tensor, "batch pos"]
    """Clean token ids (right-padded)."""
    corrupted: Int[torch.Tensor, "batch pos"]
    """Corrupted token ids, aligned with ``clean`` position by position."""
    mask: Int[torch.Tensor, "batch pos"]
    """1 at real tokens (the same in both batches)."""
    last: Int[torch.Tensor, " batch"]
    """Index of each prompt's last real token, where the metric reads the logits."""
    labels: list[str]
    """``"{position}: {clean token}"`` of the first clean prompt, for axes."""


def prompt_pair(model: Any, clean: Prompts, corrupted: Prompts) -> PromptPair:
    """Tokenize both batches and check they line up.

    Patching position ``p`` means the clean and the corrupted prompt hold their ``p``-th token there, so the
    two batches must have the same number of prompts and each pair the same number of tokens.

    Raises:
        ValueError: different batch sizes, or a pair of prompts of different lengths (both lengths named).
    """
    a, b = tokenize(model, clean), tokenize(model, corrupted)
    if a.tokens.shape[0] != b.tokens.shape[0]:
        raise ValueError(f"clean has {a.tokens.shape[0]} prompts and corrupted {b.tokens.shape[0]}; pass one "
                         "corrupted prompt per clean prompt")
    lengths_a, lengths_b = a.attention_mask.sum(1), b.attention_mask.sum(1)
    differ = (lengths_a != lengths_b).nonzero().flatten().tolist()
    if differ:
        i = differ[0]
        raise ValueError(f"prompt {i}: clean is {int(lengths_a[i])} tokens and corrupted {int(lengths_b[i])}; "
                         "patching by position needs pairs of the same length (choose corruptions that keep the "
                         "token count, e.g. swap one single-token name for another)")
    width, first = int(lengths_a.max()), int(lengths_a[0])
    tokens = str_tokens(model, a.tokens[0, :first])
    return PromptPair(
        clean=a.tokens[:, :width], corrupted=b.tokens[:, :width], mask=a.attention_mask[:, :width],
        last=lengths_a - 1, labels=[f"{p}: {t}" for p, t in enumerate(tokens)] + [str(p) for p in range(first, width)],
    )
