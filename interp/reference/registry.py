"""Where the embedded reference checkpoints live, which ones exist, and the world each was trained on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from interp.core.embedded import CHECKPOINTS, KNOWN, names, path

__all__ = ["CHECKPOINTS", "KNOWN", "load_world", "names", "path"]


def load_world(model: Any = None, world: dict | str | Path | None = None) -> dict:
    """The reference world's ``world.json`` as a dict.

    Looks, in order, at ``world`` (a dict or a path), ``world.json`` beside the model's checkpoint, and
    finally regenerates the default world with :class:`interp.reference.world.World` (seed 0, version 3: the
    world is seeded, so this equals the shipped file of a model trained on that world).

    Raises:
        ValueError: ``world`` points at a file that cannot be read or is not a world description.
    """
    if isinstance(world, dict):
        return world
    path = Path(world) if world is not None else None
    if path is None and model is not None:
        candidate = Path(str(getattr(getattr(model, "cfg", None), "model_name", ""))) / "world.json"
        path = candidate if candidate.is_file() else None
    if path is not None:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"could not read the world file {path}: {err}") from None
        if not (isinstance(data, dict) and "facts" in data):
            raise ValueError(f"{path} is not a world description (no 'facts' list)")
        return data
    from interp.reference.world import World

    return World().to_json()
