"""A finished activation store, read back memory-mapped: nothing is loaded until it is touched.

Reading a column (one neuron) touches one cache line per token, a direction reads every row once; both come
from the page cache after the first pass, so no unit-major copy is kept (see ``docs/store.md`` for timings).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from interp.store import shards as files


def open_store(path: str | os.PathLike[str]) -> ActivationStore:
    """Open the store that :func:`interp.store.build` wrote to ``path`` (exposed as ``interp.store.open``).

    Raises:
        FileNotFoundError: ``path`` holds no finished store (an unfinished build is resumed by calling
            ``build`` again with the same arguments).
        ValueError: the store was written by a newer format.
    """
    path = Path(path)
    manifest = files.read_json(path / files.MANIFEST)
    if manifest is None:
        unfinished = (path / files.BUILD).exists()
        hint = " (it holds an unfinished build: call build() again to resume it)" if unfinished else ""
        raise FileNotFoundError(f"{path} holds no finished activation store{hint}")
    if manifest.get("format", 0) > files.FORMAT_VERSION:
        raise ValueError(f"store format={manifest['format']}; this interp reads formats up to {files.FORMAT_VERSION}")
    return ActivationStore(path, manifest)


@dataclass
class ActivationStore:
    """Activations of some sites over a token stream, row ``i`` of every array being token ``i``.

    Examples:
        >>> store = open_store("runs/gpt2-neurons")  # doctest: +SKIP
        >>> store.activations("blocks.3.mlp.hook_post").shape  # doctest: +SKIP
        (1000000, 768)
        >>> store.top_examples("blocks.3.mlp.hook_post", 17, k=5).to_frame()  # doctest: +SKIP
    """

    path: Path
    """The store's folder."""
    manifest: dict[str, Any] = field(repr=False)
    """What ``store.json`` records: model, sites, n_tokens, seq_len, dtype, corpus..."""

    def __repr__(self) -> str:
        """One line: folder, token count and sites."""
        return f"ActivationStore({str(self.path)!r}, n_tokens={self.n_tokens}, sites={self.sites})"

    @property
    def sites(self) -> list[str]:
        """The site strings given to ``build``, in order."""
        return [s["site"] for s in self.manifest["sites"]]

    @property
    def n_tokens(self) -> int:
        """Stored token positions."""
        return int(self.manifest["n_tokens"])

    @property
    def seq_len(self) -> int:
        """Tokens per row the model ran on; token ``i`` sat at position ``i % seq_len`` of its row."""
        return int(self.manifest["seq_len"])

    @cached_property
    def tokens(self) -> np.ndarray:
        """Token ids, 1-D int32, aligned row for row with :meth:`activations` (memory-mapped)."""
        return np.load(self.path / "tokens.npy", mmap_mode="r")

    @cached_property
    def doc_starts(self) -> np.ndarray:
        """Indices into :attr:`tokens` where a document begins, ascending (memory-mapped)."""
        return np.load(self.path / "doc_starts.npy", mmap_mode="r")

    def site_info(self, site: str) -> dict[str, Any]:
        """The manifest entry of ``site``: its hook name, width ``d`` and logit read-out kind.

        Raises:
            ValueError: ``site`` is not stored (the stored sites are listed).
        """
        for entry in self.manifest["sites"]:
            if entry["site"] == site:
                return entry
        raise ValueError(f"site={site!r} is not in this store; it holds {', '.join(map(repr, self.sites))}")

    def activations(self, site: str) -> np.ndarray:
        """A read-only memory-mapped ``[n_tokens, d]`` array (float16 or float32) of ``site``'s activations."""
        index = self.manifest["sites"].index(self.site_info(site))
        return self._arrays(index)

    def _arrays(self, index: int) -> np.ndarray:
        cache = self.__dict__.setdefault("_mapped", {})
        if index not in cache:
            cache[index] = np.load(self.path / f"act-{index}.npy", mmap_mode="r")
        return cache[index]

    @cached_property
    def tokenizer(self) -> Any:
        """The model's tokenizer, saved with the store."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.path / "tokenizer"))

    def decode(self, ids: Any) -> list[str]:
        """Each token id decoded on its own."""
        return self.tokenizer.batch_decode([[int(t)] for t in np.asarray(ids).ravel()])

    @cached_property
    def readout(self) -> dict[str, np.ndarray]:
        """``unembed`` and ``write.<j>`` matrices for the direct logit effect (:mod:`interp.store.readout`)."""
        from safetensors.numpy import load_file

        return load_file(str(self.path / "readout.safetensors"))

    def unit_activations(self, site: str, unit: Any) -> np.ndarray:
        """float32 ``[n_tokens]``: neuron ``unit``'s activation, or ``activations @ unit`` for a vector."""
        from interp.store.examples import unit_activations

        return unit_activations(self, site, unit)

    def top_examples(self, site: str, unit: Any, k: int = 20, **options: Any) -> Any:
        """The ``k`` token positions where ``unit`` is largest, with contexts, histogram and logit effect.

        See :func:`interp.store.examples.top_examples` for the options.
        """
        from interp.store.examples import top_examples

        return top_examples(self, site, unit, k, **options)

    def logit_effect(self, site: str, unit: Any, k: int = 10) -> Any:
        """Tokens whose logits one unit of ``unit`` raises and lowers most (see :mod:`interp.store.readout`)."""
        from interp.store.examples import logit_effect

        return logit_effect(self, site, unit, k)
