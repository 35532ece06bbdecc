"""The activation store: a corpus streamed through a model, written in shards, read back memory-mapped."""

__all__: list[str] = []
