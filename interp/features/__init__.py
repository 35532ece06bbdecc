"""Features: max-activating examples, sparse autoencoders, and concept recovery scored against the world."""

__all__: list[str] = []
