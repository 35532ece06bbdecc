"""Activation patching and path patching: run a corrupted prompt, restore a clean activation, measure."""

__all__: list[str] = []
