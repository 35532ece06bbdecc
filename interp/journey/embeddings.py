"""Stage 2, embeddings: a token's nearest neighbours and analogy arithmetic in the embedding matrix.

Similarity is cosine similarity between rows of ``W_E``. Analogies use the classic 3CosAdd rule of
word2vec: ``a - b + c`` over unit-normalised embeddings, ranked by cosine, with ``a``, ``b`` and ``c``
themselves excluded from the answers (otherwise ``a`` usually wins).

Words are looked up the way they appear inside running text: for byte-level BPE that is with a
leading space (``" king"``), which is tried first; the bare string (``"king"``) is the fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int

from interp.journey.common import token_text

Token = str | int
"""A token given as text (``"king"``) or as an id."""


def resolve_token(model: Any, token: Token) -> int:
    """The id of ``token``: an id in range, or a string that is one token (space-prefixed form first).

    Raises:
        ValueError: an id outside the vocabulary, or a string that is not a single token either way.
    """
    d_vocab = int(model.cfg.d_vocab)
    if isinstance(token, int) and not isinstance(token, bool):
        if not 0 <= token < d_vocab:
            raise ValueError(f"token id {token} is outside the vocabulary 0..{d_vocab - 1}")
        return token
    if not isinstance(token, str) or token == "":
        raise ValueError(f"token={token!r}; pass a non-empty string or a token id")
    candidates = [token] if token.startswith(" ") else [" " + token, token]
    for text in candidates:
        ids = model.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) == 1:
            return int(ids[0])
    pieces = model.tokenizer.tokenize(candidates[0])
    raise ValueError(
        f"token {token!r} is not in the vocabulary: neither {' nor '.join(repr(c) for c in candidates)} is a "
        f"single token ({candidates[0]!r} splits into {pieces})"
    )


def embedding_matrix(model: Any) -> Float[torch.Tensor, "vocab d_model"]:
    """The token embedding matrix ``W_E``, detached."""
    return model.W_E.detach().float()


@dataclass
class Neighbours:
    """Tokens ranked by cosine similarity to a query vector in embedding space."""

    query: str
    """What was asked, e.g. ``"' king'"`` or ``"' king' - ' man' + ' woman'"``."""
    ids: Int[torch.Tensor, " k"]
    """Ranked token ids."""
    tokens: list[str]
    """Ranked tokens as text."""
    similarities: Float[torch.Tensor, " k"]
    """Cosine similarity of each to the query."""
    excluded: list[int] = field(default_factory=list)
    """Token ids left out of the ranking (the query's own tokens)."""

    def to_frame(self) -> Any:
        """One row per ranked token."""
        import pandas as pd

        return pd.DataFrame({"rank": range(1, len(self.tokens) + 1), "id": self.ids.tolist(),
                             "token": self.tokens, "cosine": self.similarities.tolist()})

    def figure(self) -> Any:
        """Horizontal bars of cosine similarity, best on top."""
        import plotly.graph_objects as go

        fig = go.Figure(go.Bar(x=self.similarities.tolist()[::-1], y=[repr(t) for t in self.tokens][::-1],
                               orientation="h"))
        fig.update_layout(title=f"Nearest tokens to {self.query}", xaxis_title="cosine similarity")
        return fig


def _rank(model: Any, query: torch.Tensor, exclude: Sequence[int], k: int, label: str) -> Neighbours:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r}; k must be an integer >= 1")
    sims = F.normalize(embedding_matrix(model), dim=-1) @ F.normalize(query, dim=-1)
    sims[list(exclude)] = float("-inf")
    top = sims.topk(min(k, sims.shape[0] - len(set(exclude))))
    return Neighbours(query=label, ids=top.indices, tokens=token_text(model.tokenizer, top.indices),
                      similarities=top.values, excluded=list(exclude))


def nearest_tokens(model: Any, token: Token, k: int = 10) -> Neighbours:
    """The ``k`` tokens whose embeddings are closest (cosine) to ``token``'s, itself excluded.

    Examples:
        >>> nearest_tokens(model, "Paris", k=5).tokens  # doctest: +SKIP
    """
    tid = resolve_token(model, token)
    label = repr(model.tokenizer.decode([tid]))
    return _rank(model, embedding_matrix(model)[tid], [tid], k, label)


def analogy(model: Any, a: Token, b: Token, c: Token, k: int = 10) -> Neighbours:
    """Rank tokens for ``a - b + c`` (``analogy(model, "king", "man", "woman")`` hopes for ``" queen"``).

    Args:
        model: A ``TransformerBridge``.
        a: The token to move from ("king").
        b: The token to subtract ("man").
        c: The token to add ("woman").
        k: How many answers to rank.

    Returns:
        :class:`Neighbours` of the unit-normalised ``a - b + c``, with ``a``, ``b`` and ``c`` excluded.

    Raises:
        ValueError: one of the tokens is not in the vocabulary, or ``k < 1``.

    Examples:
        >>> analogy(model, "king", "man", "woman").tokens[:3]  # doctest: +SKIP
    """
    ids = [resolve_token(model, t) for t in (a, b, c)]
    unit = F.normalize(embedding_matrix(model)[ids], dim=-1)
    names = [repr(model.tokenizer.decode([i])) for i in ids]
    return _rank(model, unit[0] - unit[1] + unit[2], ids, k, f"{names[0]} - {names[1]} + {names[2]}")


@dataclass
class AnalogyScore:
    """How often ``m2 - m1 + f1`` ranks ``f2`` first / in the top k, over ordered pairs of word pairs."""

    n: int
    """Analogies asked (ordered pairs of distinct pairs whose four words are single tokens)."""
    top1: float
    """Share with the expected token ranked first."""
    topk: float
    """Share with the expected token in the top ``k``."""
    k: int
    """The ``k`` of :attr:`topk`."""
    skipped: list[str]
    """Words that are not single tokens (their pairs were left out)."""
    rows: list[dict[str, Any]] = field(repr=False)
    """One record per analogy: the question, expected token, its rank and the top answer."""

    def to_frame(self) -> Any:
        """One row per analogy."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def figure(self) -> Any:
        """Histogram of the expected token's rank."""
        import plotly.express as px

        return px.histogram(self.to_frame(), x="rank", title=f"Analogy ranks: top-1 {self.top1:.0%}, "
                                                               f"top-{self.k} {self.topk:.0%} (n={self.n})")


def analogy_accuracy(model: Any, pairs: Sequence[tuple[str, str]], k: int = 5) -> AnalogyScore:
    """Score analogies over every ordered pair of distinct ``(male, female)``-style word pairs.

    For pairs ``(m1, f1)`` and ``(m2, f2)`` the question is ``m2 - m1 + f1`` and the answer ``f2``
    (``king - man + woman = queen``).

    Examples:
        >>> analogy_accuracy(model, [("king", "queen"), ("man", "woman"), ("boy", "girl")])  # doctest: +SKIP
    """
    usable, skipped = [], []
    for pair in pairs:
        try:
            usable.append(tuple(resolve_token(model, w) for w in pair))
        except ValueError:
            skipped.extend(w for w in pair if not _is_token(model, w))
    rows = []
    for i, (m1, f1) in enumerate(usable):
        for j, (m2, f2) in enumerate(usable):
            if i == j:
                continue
            unit = F.normalize(embedding_matrix(model)[[m2, m1, f1]], dim=-1)
            sims = F.normalize(embedding_matrix(model), dim=-1) @ F.normalize(unit[0] - unit[1] + unit[2], dim=-1)
            sims[[m2, m1, f1]] = float("-inf")
            rank = int((sims > sims[f2]).sum()) + 1
            words = token_text(model.tokenizer, [m2, m1, f1, f2, int(sims.argmax())])
            rows.append({"question": f"{words[0]!r} - {words[1]!r} + {words[2]!r}", "expected": words[3],
                         "rank": rank, "top": words[4]})
    n = len(rows)
    return AnalogyScore(
        n=n,
        top1=sum(r["rank"] == 1 for r in rows) / n if n else float("nan"),
        topk=sum(r["rank"] <= k for r in rows) / n if n else float("nan"),
        k=k,
        skipped=skipped,
        rows=rows,
    )


def _is_token(model: Any, word: str) -> bool:
    try:
        resolve_token(model, word)
    except ValueError:
        return False
    return True
