"""Turn prompts into validated token batches, and tokens back into strings.

Batches are RIGHT-padded: every prompt's real tokens keep their true positions ``0..n-1``, so
learned position embeddings and RoPE see exactly what an unbatched run sees, and a causal model's
activations at real positions do not depend on what is padded after them. Analyses that want the
last real token of each row read it from the attention mask (see ``Capture.last_positions``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from jaxtyping import Int

from interp.core.model_info import model_info


class Tokenized(NamedTuple):
    """A batch of token ids ready for the model."""

    tokens: Int[torch.Tensor, "batch pos"]
    """Token ids (long), right-padded with the tokenizer's pad token."""
    attention_mask: Int[torch.Tensor, "batch pos"]
    """1 at real tokens, 0 at padding (long)."""


Prompts = str | Sequence[str] | torch.Tensor | Tokenized
"""What :func:`tokenize` (and so every analysis) accepts as input."""


def tokenize(model: Any, prompts: Prompts, *, prepend_bos: bool | None = None) -> Tokenized:
    """Turn a prompt, a list of prompts or a token tensor into a validated batch.

    Text is encoded without the tokenizer's own special tokens; the BOS token is put in front
    when ``prepend_bos`` (default: the model's ``cfg.default_prepend_bos``, set by
    :func:`interp.load`). Lists are right-padded into one batch. Token tensors (``[pos]`` or
    ``[batch pos]``) are taken as they are, with an all-ones mask.

    Args:
        model: A loaded ``TransformerBridge``.
        prompts: A string, a non-empty list of strings, an integer token tensor, or a
            :class:`Tokenized` (re-validated and moved to the model's device).
        prepend_bos: Override whether text prompts start with BOS.

    Returns:
        ``Tokenized(tokens, attention_mask)`` on the model's embedding device.

    Raises:
        ValueError: an empty or whitespace-only prompt, an empty list, a prompt longer than
            ``n_ctx``, a floating-point tensor, a tensor of the wrong rank, or token ids outside
            ``[0, d_vocab)``.
        TypeError: ``prompts`` is none of the accepted kinds.

    Examples:
        >>> from interp.core.toy_models import load_toy
        >>> tokens, mask = tokenize(load_toy(), ["The cat", "The cat sat on"])
        >>> tokens.tolist()
        [[0, 278, 266, 260, 0, 0], [0, 278, 266, 260, 291, 290]]
        >>> mask.tolist()
        [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]
    """
    info = model_info(model)
    if isinstance(prompts, Tokenized):
        tokens, mask = _check_tensor(prompts.tokens, info), prompts.attention_mask
        if mask.shape != tokens.shape:
            raise ValueError(f"attention_mask shape {tuple(mask.shape)} != tokens shape {tuple(tokens.shape)}")
        return Tokenized(tokens.to(info.device), mask.long().to(info.device))
    if isinstance(prompts, torch.Tensor):
        tokens = _check_tensor(prompts, info)
        return Tokenized(tokens.to(info.device), torch.ones_like(tokens, device=info.device))
    if isinstance(prompts, str):
        prompts = [prompts]
    elif not isinstance(prompts, Sequence) or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"prompts must be a str, a list of str or a token tensor, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError("prompts=[] is empty; pass at least one prompt")
    bos = info.prepend_bos if prepend_bos is None else prepend_bos
    rows = [_encode(model, text, i, bos, info.n_ctx) for i, text in enumerate(prompts)]
    batch = pad_right(rows, pad_id(model.tokenizer))
    _check_ids(batch.tokens, info.d_vocab)
    return Tokenized(batch.tokens.to(info.device), batch.attention_mask.to(info.device))


def pad_right(rows: Sequence[Sequence[int]], pad: int, device: Any = None) -> Tokenized:
    """Right-pad lists of token ids into one batch: the one padding helper every module uses.

    Args:
        rows: Token id lists, at least one token in all; an empty row is all padding (mask 0).
        pad: The id written after each row's real tokens (see :func:`pad_id`).
        device: Where the tensors go (default: CPU).

    Returns:
        ``Tokenized(tokens, attention_mask)``, ``[batch pos]`` with ``pos`` the longest row.

    Raises:
        ValueError: no rows, or no row holds a token.

    Examples:
        >>> pad_right([[5, 6, 7], [8]], pad=0).tokens.tolist()
        [[5, 6, 7], [8, 0, 0]]
        >>> pad_right([[5, 6, 7], [8]], pad=0).attention_mask.tolist()
        [[1, 1, 1], [1, 0, 0]]
    """
    width = max((len(row) for row in rows), default=0)
    if width == 0:
        raise ValueError(f"rows={list(rows)!r} hold no token; pass at least one non-empty row")
    tokens = torch.full((len(rows), width), int(pad), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return Tokenized(tokens.to(device), mask.to(device))


def pad_id(tokenizer: Any) -> int:
    """The id batches are padded with: the tokenizer's pad token, else EOS, else BOS, else 0."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def bos_offset(model: Any) -> int:
    """How many positions the model's BOS takes at the front of a tokenized prompt: 1 or 0.

    1 when the model prepends BOS by default (``cfg.default_prepend_bos``, set by :func:`interp.load`)
    and its tokenizer has a BOS token; the first real token of a prompt sits at this position.
    """
    return 1 if model_info(model).prepend_bos and model.tokenizer.bos_token_id is not None else 0


def str_tokens(model: Any, tokens: Int[torch.Tensor, "batch pos"] | Int[torch.Tensor, " pos"]) -> list[Any]:
    """Decode each token id on its own, keeping the tensor's layout.

    Padding positions decode to the pad token's text; use the attention mask to skip them.

    Args:
        model: A loaded ``TransformerBridge``, or just its tokenizer.
        tokens: Token ids, ``[pos]`` or ``[batch pos]``.

    Returns:
        ``list[str]`` for ``[pos]`` input, ``list[list[str]]`` for ``[batch pos]`` input.

    Examples:
        >>> from interp.core.toy_models import load_toy
        >>> model = load_toy()
        >>> str_tokens(model, tokenize(model, "The cat").tokens)
        [['<|endoftext|>', 'The', ' c', 'at']]
    """
    if tokens.ndim not in (1, 2):
        raise ValueError(f"tokens must be [pos] or [batch pos], got shape {tuple(tokens.shape)}")
    tokenizer = getattr(model, "tokenizer", model)
    rows = tokens.reshape(-1, tokens.shape[-1]).tolist()
    decoded = [tokenizer.batch_decode([[t] for t in row]) for row in rows]
    return decoded[0] if tokens.ndim == 1 else decoded


def to_single_token(model: Any, text: str) -> int:
    """Return the id of the one token that ``text`` encodes to (for prediction targets).

    Byte-level BPE tokenizers (GPT-2 style) fold a leading space into the token, so the target
    after ``"...the city of"`` is ``" Paris"``, not ``"Paris"``. No BOS is added.

    Args:
        model: A loaded ``TransformerBridge``.
        text: The target text.

    Raises:
        ValueError: ``text`` does not encode to exactly one token (the message lists the pieces).

    Examples:
        >>> from interp.core.toy_models import load_toy
        >>> model = load_toy()
        >>> model.tokenizer.decode([to_single_token(model, " Mary")])
        ' Mary'
        >>> to_single_token(model, " city")
        Traceback (most recent call last):
        ...
        ValueError: text=' city' is 3 tokens [' c', 'it', 'y']; a target must be exactly one token
    """
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        pieces = model.tokenizer.batch_decode([[t] for t in ids])
        raise ValueError(f"text={text!r} is {len(ids)} tokens {pieces}; a target must be exactly one token")
    return int(ids[0])


def _encode(model: Any, text: str, index: int, bos: bool, n_ctx: int) -> list[int]:
    if text == "":
        raise ValueError(f"prompt {index} is the empty string; every prompt needs at least one character")
    if text.isspace():
        # Almost always a blank line or an empty text box, not a question to the model: refuse it rather
        # than analyse a lone space token. Token ids still go through as a tensor.
        raise ValueError(
            f"prompt {index} is only whitespace ({text[:20]!r}{'...' if len(text) > 20 else ''}); "
            "every prompt needs at least one non-whitespace character"
        )
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    if bos:
        ids = [model.tokenizer.bos_token_id, *ids]
    if len(ids) > n_ctx:
        raise ValueError(
            f"prompt {index} is {len(ids)} tokens{' (with BOS)' if bos else ''}; "
            f"the model's context window is n_ctx={n_ctx} tokens"
        )
    return ids


def _check_tensor(tokens: torch.Tensor, info: Any) -> torch.Tensor:
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise ValueError(f"token tensor has dtype {tokens.dtype}; token ids must be an integer tensor")
    if tokens.ndim == 1:
        tokens = tokens.unsqueeze(0)
    if tokens.ndim != 2:
        raise ValueError(f"token tensor has shape {tuple(tokens.shape)}; expected [pos] or [batch pos]")
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"token tensor has shape {tuple(tokens.shape)}; it needs at least one token")
    if tokens.shape[1] > info.n_ctx:
        raise ValueError(
            f"token tensor has {tokens.shape[1]} positions; the model's context window is n_ctx={info.n_ctx}"
        )
    tokens = tokens.long()
    _check_ids(tokens, info.d_vocab)
    return tokens


def _check_ids(tokens: torch.Tensor, d_vocab: int) -> None:
    bad = (tokens < 0) | (tokens >= d_vocab)
    if bad.any():
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"token id {int(tokens[where])} at {list(where)} is outside the vocabulary [0, {d_vocab})")
