"""The token stream a store is built from: documents packed into rows of one length, with document offsets.

A corpus is a stream of documents (strings). Each is encoded without special tokens and followed by a
newline; the stream is cut into rows of ``seq_len`` tokens, each row starting with BOS when the model
prepends one, so every batch is rectangular and needs no padding (as in
:func:`interp.reference.world_text.world_tokens`). A document that does not fit the rest of a row continues in
the next row, so no text is dropped; its continuation is read without its beginning, as the model saw it.

Packing the whole plan first (token ids are 4 bytes each, cheap beside the activations) fixes ``n_tokens`` and
the row boundaries before any forward pass, so a resumed or distributed build computes exactly the same rows.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from interp.core.tokens import bos_offset

Corpus = None | str | os.PathLike[str] | Iterable[str] | Any
"""What :func:`interp.store.build` accepts: None (the reference world's generator), a text file (one
document per line), a folder saved by ``datasets.Dataset.save_to_disk``, a ``datasets.Dataset``, or an
iterable of strings."""


@dataclass(frozen=True)
class Packed:
    """The planned token stream of a store."""

    tokens: np.ndarray
    """Token ids, int32 ``[n_tokens]``, row after row."""
    doc_starts: np.ndarray
    """int64 indices into :attr:`tokens` where a document begins (its first token), ascending."""
    seq_len: int
    """Tokens per row; row ``r`` is ``tokens[r * seq_len : (r + 1) * seq_len]`` (the last may be shorter)."""
    description: str
    """What the corpus was, for the store's manifest."""


def pack(model: Any, corpus: Corpus, n_tokens: int, seq_len: int, *, seed: int = 0,
         text_column: str = "text") -> Packed:
    """Pack ``n_tokens`` tokens of ``corpus`` into rows of ``seq_len`` for ``model``'s tokenizer.

    Raises:
        ValueError: ``n_tokens < 1``, ``seq_len`` outside ``2..n_ctx`` (checked by the caller), a missing
            file or column, or a corpus with fewer than ``n_tokens`` tokens once packed.
    """
    documents, description = _documents(corpus, seed, text_column)
    tokenizer = model.tokenizer
    newline = tokenizer.encode("\n", add_special_tokens=False)
    start = [int(tokenizer.bos_token_id)] if bos_offset(model) else []
    if len(start) >= seq_len:
        raise ValueError(f"seq_len={seq_len}; must be at least {len(start) + 1} to hold a token after BOS")
    tokens = np.empty(n_tokens, dtype=np.int32)
    doc_starts: list[int] = []
    filled = 0
    pending: list[int] = []  # the tail of a document that did not fit its row
    docs = iter(documents)
    while filled < n_tokens:
        row = list(start)
        while len(row) < seq_len:
            if not pending:
                batch = list(itertools.islice(docs, 64))
                if not batch and filled + len(row) >= n_tokens:
                    break  # the corpus ends inside the last row, after enough tokens
                if not batch:
                    raise ValueError(f"n_tokens={n_tokens}; the corpus ({description}) holds only {filled + len(row)} "
                                     f"tokens once packed into rows of {seq_len}")
                for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
                    pending.append(-1)  # marks a document start in the stream
                    pending.extend(ids + newline)
                pending.reverse()  # pop() from the end is O(1)
            token = pending.pop()
            if token == -1:
                doc_starts.append(filled + len(row))
                continue
            row.append(token)
        row = row[: n_tokens - filled]  # what is left in pending continues in the next row
        tokens[filled : filled + len(row)] = row
        filled += len(row)
    starts = np.asarray([s for s in doc_starts if s < n_tokens], dtype=np.int64)
    return Packed(tokens=tokens, doc_starts=starts, seq_len=seq_len, description=description)


def _documents(corpus: Corpus, seed: int, text_column: str) -> tuple[Iterator[str], str]:
    """The documents of ``corpus`` as an iterator of strings, and a one-line description of it."""
    if corpus is None:
        from interp.reference.world import World, WorldConfig

        world = World(WorldConfig(seed=seed))
        return iter(world.document, None), f"reference world generator, seed {seed}"
    if isinstance(corpus, str | os.PathLike):
        path = Path(corpus)
        if path.is_file():
            return _lines(path), f"text file {path.name}"
        if path.is_dir():
            import datasets

            return _column(datasets.load_from_disk(str(path)), text_column), f"dataset {path.name}"
        raise ValueError(
            f"corpus={str(corpus)!r}; no such file or folder (pass a text file, a dataset folder, or None)"
        )
    if hasattr(corpus, "column_names"):
        return _column(corpus, text_column), f"dataset of {len(corpus)} rows"
    if isinstance(corpus, Iterable):
        return (_checked_text(doc) for doc in corpus), "documents given in memory"
    raise ValueError(f"corpus={corpus!r}; pass None, a text file, a dataset folder, a datasets.Dataset or strings")


def _lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield line.rstrip("\n")


def _column(dataset: Any, column: str) -> Iterator[str]:
    if isinstance(dataset.column_names, dict):  # a DatasetDict: one column list per split
        raise ValueError(f"corpus is a DatasetDict with splits {list(dataset.column_names)}; pass one split")
    if column not in dataset.column_names:
        raise ValueError(f"text_column={column!r}; the dataset has columns {dataset.column_names}")
    return (_checked_text(row[column]) for row in dataset)


def _checked_text(doc: Any) -> str:
    if not isinstance(doc, str):
        raise ValueError(f"corpus document {doc!r:.60}; documents must be strings")
    return doc
