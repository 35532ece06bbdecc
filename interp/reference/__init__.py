"""The reference world: a generated corpus with planted ground truth, and the small models trained on it.

The embedded checkpoints live under ``interp/reference/checkpoints/<name>/`` in Hugging Face layout
(``config.json``, ``model.safetensors``, ``tokenizer.json``) beside ``world.json`` and ``CARD.md``.
"""

from interp.reference.registry import load_world, names, path

__all__ = ["load_world", "names", "path"]
