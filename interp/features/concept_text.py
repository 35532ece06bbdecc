"""Reference-world text whose every token is labelled with the planted concepts it belongs to.

The world generator knows what each word is, so the labels are exact, not annotated. Documents are drawn from
three of its kinds, each written with the world's own facts and frames and packed into full-context rows the way
:func:`interp.reference.world_text.world_tokens` packs training text (BOS, then documents joined by newlines):

- fact sentences: a training template of one relation filled with a planted fact, then its object (as the
  ``template`` documents the models learned from);
- indirect-object sentences (:meth:`World.ioi_sentence` on the training names, answered);
- agreement sentences (:meth:`World.agreement_sentence` on the training nouns, answered).

Concepts. Each concept marks one token per mention, the last token of the words it names (where the whole name
has been read: `` Republic`` of "the Czech Republic"):

- ``country:<name>``: every mention of that country, anywhere;
- ``relation:<relation>``: in a fact sentence of that relation, the last token before the object (where the model
  predicts the object: `` of`` in "... is located in the city of Paris.");
- ``role:subject`` / ``role:object``: the subject and the object of a fact sentence;
- ``ioi:IO`` / ``ioi:S``: every mention of the indirect object's name and of the subject's name in an IOI
  sentence;
- ``number:singular`` / ``number:plural``: the subject noun of an agreement sentence.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Int

from interp.core.model_info import model_info
from interp.reference.facts import COUNTRIES, RELATIONS, TEMPLATES
from interp.reference.lexicon import PREDICATES
from interp.reference.world import World, WorldConfig

FAMILIES = ("country", "relation", "role", "ioi", "number")
"""Concept families, in table order."""
MIX = {"fact": 0.6, "ioi": 0.2, "agreement": 0.2}
"""Share of each document kind."""

_COUNTRY_PATTERN = re.compile(r"\b(" + "|".join(map(re.escape, sorted(COUNTRIES, key=len, reverse=True))) + r")\b")


def concept_names() -> list[str]:
    """Every concept, family by family."""
    return ([f"country:{c}" for c in COUNTRIES] + [f"relation:{r}" for r in RELATIONS]
            + ["role:subject", "role:object", "ioi:IO", "ioi:S", "number:singular", "number:plural"])


@dataclass
class ConceptText:
    """Token rows and, for each token, which concepts it belongs to."""

    tokens: Int[torch.Tensor, "rows pos"]
    """Full-context rows, BOS first when the model prepends one."""
    labels: Bool[np.ndarray, "rows pos concept"]
    """``labels[r, p, c]``: token ``p`` of row ``r`` belongs to concept ``c``."""
    concepts: list[str]
    """Concept names, :func:`concept_names` order."""
    start: int
    """First position that is text (1 after a BOS); analyses skip the positions before it."""

    def flat_labels(self) -> Bool[np.ndarray, "n concept"]:
        """Labels of the text positions (from :attr:`start`), rows concatenated."""
        return self.labels[:, self.start:].reshape(-1, len(self.concepts))


def _spans(text: str, word: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\b" + re.escape(word) + r"\b", text)]


def _fact(world: World, rng: random.Random) -> tuple[str, list[tuple[int, int, str]]]:
    fact = rng.choice(world.facts)
    template = rng.choice(TEMPLATES[fact["relation"]]["train"])
    before, after = template.split("{subject}")
    text = f"{before}{fact['subject']}{after} {fact['object']}."
    subject = (len(before), len(before) + len(fact["subject"]))
    obj = (len(text) - 1 - len(fact["object"]), len(text) - 1)
    cue = (obj[0] - 2, obj[0] - 1)  # the template's last character, before the space that precedes the object
    return text, [(*cue, f"relation:{fact['relation']}"), (*subject, "role:subject"), (*obj, "role:object")]


def _ioi(world: World, rng: random.Random) -> tuple[str, list[tuple[int, int, str]]]:
    prompt, io, s = world.ioi_sentence(world.train_names)
    text = prompt + io + "."
    return text, [(a, b, "ioi:IO") for a, b in _spans(text, io.strip())] + [
        (a, b, "ioi:S") for a, b in _spans(text, s.strip())]


def _agreement(world: World, rng: random.Random) -> tuple[str, list[tuple[int, int, str]]]:
    plural = rng.random() < 0.5
    noun = rng.choice(world.train_nouns)
    prompt, answer, _ = world.agreement_sentence(noun, plural)
    word = noun[1] if plural else noun[0]
    start = prompt.index(word)  # "The <subject> that ..."
    return f"{prompt}{answer} {rng.choice(PREDICATES)}.", [(start, start + len(word),
                                                            "number:plural" if plural else "number:singular")]


_KINDS = {"fact": _fact, "ioi": _ioi, "agreement": _agreement}


def concept_text(model: Any, n_rows: int, *, seed: int = 0) -> ConceptText:
    """``n_rows`` full-context rows of labelled reference-world text, drawn with ``seed``.

    Raises:
        ValueError: ``n_rows < 1``.

    Examples:
        >>> text = concept_text(interp.load("ref-gpt2"), 4)  # doctest: +SKIP
        >>> text.tokens.shape, text.labels.shape  # doctest: +SKIP
        (torch.Size([4, 64]), (4, 64, 60))
    """
    if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 1:
        raise ValueError(f"n_rows={n_rows!r}; need at least 1 row")
    info = model_info(model)
    tok = model.tokenizer
    world = World(WorldConfig(seed=seed))
    rng = random.Random(seed)
    concepts = concept_names()
    index = {c: i for i, c in enumerate(concepts)}
    newline = tok.encode("\n", add_special_tokens=False)
    start = 1 if info.prepend_bos and tok.bos_token_id is not None else 0
    tokens = np.zeros((n_rows, info.n_ctx), dtype=np.int64)
    labels = np.zeros((n_rows, info.n_ctx, len(concepts)), dtype=bool)
    kinds, weights = list(MIX), list(MIX.values())
    for row in range(n_rows):
        ids, marks = [tok.bos_token_id] * start, [[]] * start
        while len(ids) < info.n_ctx:
            text, spans = _KINDS[rng.choices(kinds, weights)[0]](world, rng)
            spans += [(*m.span(), f"country:{m.group(1)}") for m in _COUNTRY_PATTERN.finditer(text)]
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
            ids += enc["input_ids"] + newline
            first = len(marks)
            marks += [[] for _ in enc["input_ids"]] + [[]] * len(newline)
            for a, b, c in spans:
                last = max(i for i, (s, e) in enumerate(enc["offset_mapping"]) if a < e and s < b)
                marks[first + last].append(index[c])
        tokens[row] = ids[: info.n_ctx]
        for pos, hits in enumerate(marks[: info.n_ctx]):
            labels[row, pos, hits] = True
    return ConceptText(torch.tensor(tokens, device=info.device), labels, concepts, start)
