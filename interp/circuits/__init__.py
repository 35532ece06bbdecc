"""Circuits: attribution patching over edges (EAP, EAP-IG), exact edge patching, and find_circuit."""

__all__: list[str] = []
