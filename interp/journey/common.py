"""What the journey's stages share: reusing one capture, checking positions, naming tokens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float

from interp.core.capturing import Capture, capture
from interp.core.tokens import Prompts, str_tokens


def ensure_capture(model: Any, prompt: Prompts | None, cap: Capture | None, names: Sequence[str]) -> Capture:
    """Return ``cap`` when given (a stage run from :func:`interp.journey.run`), else capture ``names`` now.

    Raises:
        ValueError: neither a prompt nor a capture, or a batch of several prompts.
    """
    if cap is None:
        if prompt is None:
            raise ValueError("pass a prompt (or a Capture from interp.capture)")
        cap = capture(model, prompt, names=list(names))
    if cap.tokens.shape[0] != 1:
        raise ValueError(f"got {cap.tokens.shape[0]} prompts; the journey follows exactly one prompt")
    return cap


def check_position(position: int, n: int, what: str = "position") -> int:
    """Turn a possibly negative index into ``0..n-1``.

    Raises:
        ValueError: ``position`` is outside ``-n..n-1``.

    Examples:
        >>> check_position(-1, 5)
        4
        >>> check_position(5, 5)
        Traceback (most recent call last):
        ...
        ValueError: position=5, prompt has positions 0..4 (or -5..-1)
    """
    if isinstance(position, bool) or not isinstance(position, int) or not -n <= position < n:
        raise ValueError(f"{what}={position!r}, prompt has positions 0..{n - 1} (or -{n}..-1)")
    return position % n


def prompt_str_tokens(cap: Capture) -> list[str]:
    """The captured prompt's tokens as text."""
    return str_tokens(cap.tokenizer, cap.tokens[0].cpu())


def unembed(model: Any) -> Float[torch.Tensor, "d_model vocab"]:
    """The unembedding matrix ``W_U``, detached."""
    return model.W_U.detach().float()


def token_text(tokenizer: Any, ids: Sequence[int] | torch.Tensor) -> list[str]:
    """Each id decoded on its own."""
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    return tokenizer.batch_decode([[int(i)] for i in ids])
