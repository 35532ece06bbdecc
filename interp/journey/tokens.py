"""Stage 1, tokens: the prompt's token ids, and the byte-pair merges that built each word's tokens.

A byte-level BPE tokenizer first splits text into words (the pre-tokenizer: a leading space stays on
the word, written ``Ġ``), then, inside each word, starts from single byte-characters and repeatedly
merges the adjacent pair that was learned earliest (lowest rank in ``tokenizer.json``'s ``merges``)
until no learned pair is left. :func:`token_merges` replays exactly that, so each step can be shown.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Int

from interp.core.capturing import Capture
from interp.core.locking import holds_model
from interp.core.tokens import Prompts
from interp.journey.common import ensure_capture, prompt_str_tokens

_MERGES: weakref.WeakKeyDictionary[Any, tuple[dict[tuple[str, str], int], bool]] = weakref.WeakKeyDictionary()


@dataclass
class WordMerges:
    """How BPE built the tokens of one pre-tokenized word."""

    word: str
    """The word in byte-level characters (``Ġ`` marks a leading space)."""
    steps: list[list[str]]
    """Pieces after each merge, from single characters to the final tokens."""
    merges: list[tuple[str, str]]
    """The pair merged at each step (``len(steps) - 1`` of them)."""

    @property
    def pieces(self) -> list[str]:
        """The final tokens of the word."""
        return self.steps[-1]


@dataclass
class TokenStage:
    """Token ids and strings of a prompt, with the merge steps of every word."""

    ids: Int[torch.Tensor, " pos"]
    """Token ids the model sees (BOS first when the model prepends it)."""
    str_tokens: list[str]
    """Each token decoded on its own."""
    words: list[WordMerges]
    """Merge history of each word of the text (special tokens such as BOS have none)."""
    n_merges: int = field(default=0)
    """Number of merges the tokenizer learned."""

    def to_frame(self) -> Any:
        """One row per word: its final pieces, the number of merges, and the merge path."""
        import pandas as pd

        return pd.DataFrame(
            [{"word": w.word, "pieces": w.pieces, "n_merges": len(w.merges),
              "path": " → ".join(" ".join(s) for s in w.steps)} for w in self.words]
        )

    def figure(self) -> Any:
        """A table: token ids and strings, then each word's merge path."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        frame = self.to_frame()
        fig = make_subplots(rows=2, cols=1, specs=[[{"type": "table"}], [{"type": "table"}]],
                            subplot_titles=("tokens", "BPE merges per word"))
        fig.add_trace(go.Table(header={"values": ["position", "id", "token"]},
                               cells={"values": [list(range(len(self.str_tokens))), self.ids.tolist(),
                                                 [repr(t) for t in self.str_tokens]]}), row=1, col=1)
        fig.add_trace(go.Table(header={"values": ["word", "merges", "path"]},
                               columnwidth=[1, 1, 6],
                               cells={"values": [frame["word"], frame["n_merges"], frame["path"]]}), row=2, col=1)
        fig.update_layout(title="Tokens and the byte-pair merges that built them")
        return fig


def bpe_merges(tokenizer: Any) -> tuple[dict[tuple[str, str], int], bool]:
    """The merge ranks of a fast BPE tokenizer, read from its ``tokenizer.json`` (cached per tokenizer).

    Returns:
        ``({(left, right): rank}, ignore_merges)``; with ``ignore_merges`` a word that is itself in the
        vocabulary is one token without any merge (Llama-3 style).

    Raises:
        ValueError: the tokenizer is not a Hugging Face fast tokenizer with a BPE model.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"{type(tokenizer).__name__} has no tokenizer.json (a fast tokenizer is needed)")
    if backend in _MERGES:
        return _MERGES[backend]
    model = json.loads(backend.to_str())["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"the tokenizer's model is {model.get('type')!r}; merge steps exist only for BPE")
    pairs = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    result = ({pair: rank for rank, pair in enumerate(pairs)}, bool(model.get("ignore_merges", False)))
    _MERGES[backend] = result
    return result


def replay_bpe(word: str, ranks: dict[tuple[str, str], int], vocab: dict[str, int] | None = None) -> WordMerges:
    """Replay BPE on one pre-tokenized word, recording every merge.

    Args:
        word: The word in the tokenizer's byte-level alphabet.
        ranks: ``{(left, right): rank}`` from :func:`bpe_merges`.
        vocab: Given (``ignore_merges`` tokenizers), a word found in it is returned whole.

    Examples:
        >>> replay_bpe("cats", {("a", "t"): 0, ("c", "at"): 1, ("cat", "s"): 2}).steps
        [['c', 'a', 't', 's'], ['c', 'at', 's'], ['cat', 's'], ['cats']]
    """
    if vocab is not None and word in vocab:
        return WordMerges(word=word, steps=[[word]], merges=[])
    pieces = list(word)
    steps, merges = [pieces], []
    while len(pieces) > 1:
        ranked = [(ranks[pair], i) for i, pair in enumerate(zip(pieces, pieces[1:])) if pair in ranks]
        if not ranked:
            break
        _, best = min(ranked)
        pair = (pieces[best], pieces[best + 1])
        # Merge every occurrence of the pair, left to right, as the tokenizers library does.
        merged, i = [], 0
        while i < len(pieces):
            if i < len(pieces) - 1 and (pieces[i], pieces[i + 1]) == pair:
                merged.append(pieces[i] + pieces[i + 1])
                i += 2
            else:
                merged.append(pieces[i])
                i += 1
        pieces = merged
        steps.append(pieces)
        merges.append(pair)
    return WordMerges(word=word, steps=steps, merges=merges)


@holds_model
def token_merges(model: Any, prompt: Prompts | None = None, *, cap: Capture | None = None) -> TokenStage:
    """The prompt's tokens and how BPE merged characters into them, word by word.

    Args:
        model: A ``TransformerBridge`` with a fast BPE tokenizer.
        prompt: The prompt text (token-tensor prompts have ids but no text to replay).
        cap: A capture of the prompt to take the ids from (as :func:`interp.journey.run` passes).

    Returns:
        A :class:`TokenStage`.

    Examples:
        >>> stage = token_merges(model, "The Eiffel Tower")  # doctest: +SKIP
        >>> stage.words[1].steps  # doctest: +SKIP
    """
    cap = ensure_capture(model, prompt, cap, names=[])
    ranks, ignore_merges = bpe_merges(model.tokenizer)
    words: list[WordMerges] = []
    if isinstance(prompt, str):
        backend = model.tokenizer.backend_tokenizer
        pre = backend.pre_tokenizer.pre_tokenize_str(prompt) if backend.pre_tokenizer else [(prompt, (0, 0))]
        vocab = model.tokenizer.get_vocab() if ignore_merges else None
        words = [replay_bpe(word, ranks, vocab) for word, _ in pre]
    return TokenStage(ids=cap.tokens[0].cpu(), str_tokens=prompt_str_tokens(cap), words=words, n_merges=len(ranks))
