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
    """The word in byte-level characters (``Ġ`` marks a leading space; :func:`readable` shows it as ``␣``)."""
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

    byte_level: bool = field(default=True)
    """The tokenizer is byte-level (GPT-2 style): its pieces are written in a byte alphabet (``Ġ`` = space)."""

    def tokens_frame(self) -> Any:
        """One row per token: position, id and the token's text (a space shown as ``␣``)."""
        import pandas as pd

        return pd.DataFrame({"position": range(len(self.str_tokens)), "id": self.ids.tolist(),
                             "token": [visible(t) for t in self.str_tokens]})

    def to_frame(self) -> Any:
        """One row per word: its final pieces, the number of merges, and the merge path (``␣`` = a space)."""
        import pandas as pd

        show = lambda piece: readable(piece, self.byte_level)  # noqa: E731
        return pd.DataFrame(
            [{"word": show(w.word), "pieces": [show(p) for p in w.pieces], "n_merges": len(w.merges),
              "path": " → ".join(" ".join(show(p) for p in s) for s in w.steps)} for w in self.words],
            columns=["word", "pieces", "n_merges", "path"],
        )

    def figure(self) -> Any:
        """Two tables side by side, tall enough for every row: the tokens, and each word's merge path."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        tokens, words = self.tokens_frame(), self.to_frame()
        fig = make_subplots(rows=1, cols=2, column_widths=[0.3, 0.7], horizontal_spacing=0.03,
                            specs=[[{"type": "table"}, {"type": "table"}]],
                            subplot_titles=(f"{len(tokens)} tokens the model sees",
                                            f"BPE merges per word ({self.n_merges:,} merges learned)"))
        fig.add_trace(go.Table(columnwidth=[1, 1, 2], header={"values": list(tokens.columns), "height": _HEADER},
                               cells={"values": [tokens[c] for c in tokens.columns], "height": _ROW}), row=1, col=1)
        fig.add_trace(go.Table(columnwidth=[2, 1, 7], header={"values": ["word", "merges", "path (one step per →)"],
                                                             "height": _HEADER},
                               cells={"values": [words["word"], words["n_merges"], words["path"]], "height": _ROW,
                                      "align": ["left", "center", "left"]}),
                      row=1, col=2)
        # A path longer than its column wraps onto more lines; count them so that no row is cut off.
        lines = [1 + len(path) // _PATH_CHARS for path in words["path"]][:_MAX_ROWS]
        height = _HEADER + _ROW * max(min(len(tokens), _MAX_ROWS), sum(lines)) + 150
        fig.update_layout(title="Tokens and the byte-pair merges that built them", height=height,
                          margin={"t": 90, "b": 50, "l": 10, "r": 10})
        if self.byte_level:
            fig.add_annotation(text=LEGEND, showarrow=False, xref="paper", yref="paper", x=0, y=0,
                               yshift=-30, xanchor="left", yanchor="top", font={"size": 12})
        return fig


_HEADER, _ROW, _MAX_ROWS, _PATH_CHARS = 28, 22, 40, 70
LEGEND = ("␣ marks a space. A byte-level BPE tokenizer keeps the space before a word on the word's first "
          "token; tokenizer files write it as Ġ.")
"""The legend shown with byte-level merge paths."""

_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥"}


def _byte_alphabet() -> dict[str, int]:
    # GPT-2's bytes_to_unicode, inverted: printable bytes stand for themselves, the others (space, control
    # characters...) are shifted to code points 256 and up, so that space (byte 32) is written Ġ (U+0120).
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(256 + i): b for i, b in enumerate(others)}}


_BYTES = _byte_alphabet()


def visible(text: str) -> str:
    """``text`` with spaces, newlines and tabs drawn as ``␣``, ``↵`` and ``⇥``.

    Examples:
        >>> visible(" Eiffel Tower")
        '␣Eiffel␣Tower'
    """
    return "".join(_VISIBLE.get(c, c) for c in text)


def readable(piece: str, byte_level: bool = True) -> str:
    """A tokenizer piece as a reader would write it: byte-level characters decoded, a space drawn as ``␣``.

    Pieces that are part of a multi-byte character stay in the byte alphabet. SentencePiece-style
    pieces (``▁`` for a space) are handled too.

    Examples:
        >>> readable("ĠEiffel")
        '␣Eiffel'
        >>> readable("ĊĠ")
        '↵␣'
        >>> readable("▁Paris", byte_level=False)
        '␣Paris'
    """
    if not byte_level:
        return visible(piece.replace("▁", " "))
    if any(c not in _BYTES for c in piece):
        return piece
    try:
        return visible(bytes(_BYTES[c] for c in piece).decode("utf-8"))
    except UnicodeDecodeError:
        return piece


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
        ranked = [(ranks[pair], i) for i, pair in enumerate(zip(pieces, pieces[1:], strict=False)) if pair in ranks]
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
    byte_level = type(getattr(model.tokenizer.backend_tokenizer, "decoder", None)).__name__ == "ByteLevel"
    return TokenStage(ids=cap.tokens[0].cpu(), str_tokens=prompt_str_tokens(cap), words=words, n_merges=len(ranks),
                      byte_level=byte_level)
