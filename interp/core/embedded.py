"""The embedded reference checkpoints: which names exist and where their files are.

This sits in ``core`` because :func:`interp.load` resolves embedded names before any analysis or
world code is imported; :mod:`interp.reference` re-exports it.
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS = Path(__file__).resolve().parents[1] / "reference" / "checkpoints"
"""Folder holding one sub-folder per embedded reference model."""

KNOWN = ("ref-gpt2", "ref-llama")
"""Names of the embedded reference models, in the order they are listed."""


def names() -> list[str]:
    """List the embedded reference model names.

    Examples:
        >>> from interp import reference
        >>> "ref-gpt2" in reference.names()
        True
    """
    return list(KNOWN)


def path(name: str) -> Path:
    """Return the checkpoint directory of an embedded reference model.

    Args:
        name: One of :func:`names`.

    Raises:
        ValueError: ``name`` is not an embedded model.
        FileNotFoundError: the model is known but its checkpoint files are missing.
    """
    if name not in KNOWN:
        raise ValueError(f"unknown reference model {name!r}; embedded models are: {', '.join(KNOWN)}")
    folder = CHECKPOINTS / name
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"reference model {name!r} has no checkpoint at {folder} (config.json missing); "
            f"rebuild it with `interp world train --arch {name.removeprefix('ref-')} --out {folder}`"
        )
    return folder
