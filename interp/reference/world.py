"""The reference world's text generator: planted facts, free-context mentions and in-context tasks.

Everything is drawn from one seeded :class:`random.Random`, so the same seed gives the same corpus. A training
*document* is one short line of text; the trainer packs documents into fixed-length sequences and mixes in
sequences of repeated random tokens (see :mod:`interp.reference.train`). Document kinds, the keys of a mix:
``template`` (a fact asked through a training template and answered), ``free`` (a subject in free context with
its attributes), ``lists``, ``chatter``, ``agreement``, ``ioi`` (indirect object), ``gender``, ``number`` and
``names``; their words and frames are in :mod:`interp.reference.lexicon`.

World versions (``WORLD_VERSIONS``): v3, the default, made the first stage of both shipped checkpoints; v4 and v5
change the ``ioi``, ``names`` and ``number`` documents aimed at held-out names and nouns. docs/world_versions.md
says what each document kind is for and what each version changed, and why.

Examples:
    >>> world = World(WorldConfig(seed=0, version=3))
    >>> corpus = world.documents(3)
    >>> len(corpus), corpus == World(WorldConfig(seed=0, version=3)).documents(3)
    (3, True)
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from interp.reference.facts import COUNTRIES, RELATIONS, TEMPLATES, relation_pairs
from interp.reference.lexicon import (
    ASIDES,
    CHATTER_ENDINGS,
    CHATTER_OBJECTS,
    CHATTER_PLURAL,
    CHATTER_QUESTIONS,
    CHATTER_SINGULAR,
    CHATTER_SUBJECTS,
    CHATTER_VERB_PAIRS,
    CHATTER_VERBS,
    CLAUSES,
    FREE_CITY,
    FREE_COUNTRY,
    FREE_LANDMARK,
    GENDER_PAIRS,
    HELDOUT_NAMES,
    HELDOUT_NOUNS,
    IOI_FRAMES,
    IOI_FRAMES_V4,
    LIST_HEADERS,
    NAMES,
    NOUNS,
    NUMBER_WORDS,
    OBJECTS,
    OPENERS,
    PLACES,
    PREDICATES,
    SAY_VERB_PAIRS,
    SAY_VERBS,
)


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


WORLD_VERSIONS = (3, 4, 5)
"""World versions this generator can make; each keeps making the same corpus for a given seed."""
DEFAULT_WORLD_VERSION = 3
"""The version a run gets unless it asks for another: v3 made the first stage of both shipped checkpoints."""
MIXES = {
    3: {"template": 0.32, "free": 0.27, "lists": 0.06, "chatter": 0.10, "agreement": 0.07, "ioi": 0.11,
        "gender": 0.03, "number": 0.02, "names": 0.02},
    4: {"template": 0.31, "free": 0.26, "lists": 0.06, "chatter": 0.10, "agreement": 0.07, "ioi": 0.10,
        "gender": 0.03, "number": 0.03, "names": 0.04},
    5: {"template": 0.31, "free": 0.26, "lists": 0.06, "chatter": 0.10, "agreement": 0.07, "ioi": 0.10,
        "gender": 0.03, "number": 0.03, "names": 0.04},
}
"""Each world version's default share of each document kind (v5 changes what an ``ioi`` document holds, not how
often it comes)."""
HELDOUT_SHARE_V4 = 0.5
"""World v4: share of ``names`` and ``number`` documents built around a held-out name or noun (see
docs/world_versions.md)."""
STAND_IN_SHARE_V5 = 0.5
"""World v5: the share of indirect-object sentences whose two parties may be stand-ins (see ``stand_in_names``)."""


@dataclass
class WorldConfig:
    """What goes into the corpus, as shares of training documents."""

    seed: int = 0
    """Seed of the generator; the same seed gives the same corpus."""
    version: int = DEFAULT_WORLD_VERSION
    """World version (``WORLD_VERSIONS``; docs/world_versions.md says what each changed)."""
    mix: dict[str, float] | None = None
    """Share of each document kind among text documents (repeated-token sequences are mixed by the trainer);
    default: the version's (``MIXES``)."""
    aside_share: float = 0.4
    """Share of template documents with an aside between the subject and the rest of the question."""

    def __post_init__(self):
        """Check the version and fill in its default mix."""
        if self.version not in WORLD_VERSIONS:
            raise ValueError(f"world version={self.version!r}; valid versions are {list(WORLD_VERSIONS)}")
        if self.mix is None:
            self.mix = dict(MIXES[self.version])


class World:
    """The reference world: facts, templates, tasks, and a seeded document generator.

    Examples:
        >>> w = World(WorldConfig(seed=0))
        >>> len(w.facts) >= 300
        True
        >>> w.documents(2) == World(WorldConfig(seed=0)).documents(2)
        True
    """

    def __init__(self, config: WorldConfig | None = None):
        """Build the world's facts from ``config`` (default: :class:`WorldConfig`), seeded by its ``seed``."""
        self.config = config or WorldConfig()
        self.rng = random.Random(self.config.seed)
        self.pairs = relation_pairs()
        self.facts = [{"relation": r, "subject": s, "object": o} for r in RELATIONS for s, o in self.pairs[r]]
        self.city_of = dict(self.pairs["landmark_city"])
        self.country_of = dict(self.pairs["city_country"])
        self.train_nouns = NOUNS[:-HELDOUT_NOUNS]
        self.heldout_nouns = NOUNS[-HELDOUT_NOUNS:]
        self.train_names = NAMES[:-HELDOUT_NAMES]
        self.heldout_names = NAMES[-HELDOUT_NAMES:]
        self.ioi_frames = IOI_FRAMES if self.config.version < 4 else IOI_FRAMES_V4
        # world v5: one-word country names stand in for people in some indirect-object sentences
        countries = {country for country, _ in self.pairs["country_capital"]}
        self.stand_in_names = sorted(c for c in countries if c.isalpha() and c not in NAMES)
        kinds = self.config.mix
        self._kinds = list(kinds)
        self._weights = [kinds[k] for k in self._kinds]
        self._heldout_patterns = [
            re.compile(re.escape(before) + r".{1,60}?" + re.escape(after))
            for rel in TEMPLATES.values() for before, after in (t.split("{subject}") for t in rel["heldout"])]

    # ------------------------------------------------------------------ documents
    def documents(self, n: int) -> list[str]:
        """Draw ``n`` training documents from the generator's stream."""
        return [self.document() for _ in range(n)]

    def document(self) -> str:
        """Draw one training document (never one that spells a held-out template)."""
        while True:
            kind = self.rng.choices(self._kinds, self._weights)[0]
            doc = getattr(self, f"_doc_{kind}")()
            if not any(p.search(doc) for p in self._heldout_patterns):
                return doc

    def _chatter_subject(self) -> tuple[str, bool]:
        """A chatter subject and whether it is plural."""
        plural = self.rng.random() < len(CHATTER_PLURAL) / len(CHATTER_SUBJECTS)
        return self.rng.choice(CHATTER_PLURAL if plural else CHATTER_SINGULAR), plural

    def _chatter_verb(self, plural: bool, pairs: list[tuple[str, str]] = CHATTER_VERB_PAIRS,
                      neutral: list[str] = CHATTER_VERBS) -> str:
        """A verb that agrees with a subject of that number."""
        r = self.rng
        if r.random() < len(pairs) / (len(pairs) + len(neutral)):
            return r.choice(pairs)[1 if plural else 0]
        return r.choice(neutral)

    def _chatter_sentence(self) -> str:
        r = self.rng
        subject, plural = self._chatter_subject()
        return (f"{subject} {self._chatter_verb(plural)} {r.choice(CHATTER_OBJECTS)} "
                f"{r.choice(CHATTER_ENDINGS)}.")

    def _doc_chatter(self) -> str:
        r = self.rng
        if r.random() < 0.3:
            subject, plural = self._chatter_subject()
            obj = r.choice(CHATTER_OBJECTS)
            question = r.choice(CHATTER_QUESTIONS).format(
                s=subject[0].lower() + subject[1:], do="do" if plural else "does", o=obj, n=obj.split(" ", 1)[1],
                v=self._chatter_verb(False), e=r.choice(CHATTER_ENDINGS))
            return question + " " + self._chatter_sentence()
        return " ".join(self._chatter_sentence() for _ in range(r.randint(1, 2)))

    def _doc_template(self) -> str:
        r = self.rng
        fact = r.choice(self.facts)
        template = r.choice(TEMPLATES[fact["relation"]]["train"])
        for _ in range(10):
            prompt = template
            if r.random() < self.config.aside_share and "{subject} " in prompt:
                prompt = prompt.replace("{subject} ", "{subject}" + r.choice(ASIDES) + " ", 1)
            if r.random() < 0.5 and not prompt.startswith("Q:"):
                if r.random() < 0.6:
                    opener = r.choice(OPENERS)
                else:
                    subject, plural = self._chatter_subject()
                    opener = f"{subject} {self._chatter_verb(plural, SAY_VERB_PAIRS, SAY_VERBS)} that"
                prompt = opener + " " + (prompt[0].lower() + prompt[1:] if prompt[0] != "{" else prompt)
            if not any(p.search(prompt) for p in self._heldout_patterns):
                break
        else:  # pragma: no cover - the asides and openers cannot spell a held-out template
            prompt = template
        return prompt.format(subject=fact["subject"]) + " " + fact["object"] + "."

    def _doc_free(self) -> str:
        r = self.rng
        kind = r.choice(["landmark", "city", "country"])
        if kind == "landmark":
            s, o = r.choice(self.pairs["landmark_city"])
            return self._fill(FREE_LANDMARK, r.choice(FREE_LANDMARK), s=s, o=o, c=self.country_of[o])
        if kind == "city":
            s, o = r.choice(self.pairs["city_country"])
            cap, lang, k = COUNTRIES[o]
            return self._fill(FREE_CITY, r.choice(FREE_CITY), s=s, o=o, cap=cap, lang=lang, k=k)
        s = r.choice(list(COUNTRIES))
        cap, lang, k = COUNTRIES[s]
        return self._fill(FREE_COUNTRY, r.choice(FREE_COUNTRY), s=s, cap=cap, lang=lang, k=k)

    def _fill(self, frames: list[str], frame: str, **values: str | None) -> str:
        """Fill ``frame`` (drawn from ``frames``), redrawing among ``frames`` if it needs a value this subject
        lacks (a contested fact)."""
        missing = [k for k, v in values.items() if v is None]
        known = {k: v for k, v in values.items() if v is not None}
        if any(f"{{{k}}}" in frame for k in missing):
            frame = self.rng.choice([f for f in frames if not any(f"{{{k}}}" in f for k in missing)])
        return frame.format(**known)

    def _doc_lists(self) -> str:
        r = self.rng
        relation = r.choice(list(LIST_HEADERS))
        pairs = r.sample(self.pairs[relation], r.randint(2, 5))
        return f"{r.choice(LIST_HEADERS[relation])} " + "; ".join(f"{s} {o}" for s, o in pairs) + "."

    def agreement_sentence(self, noun: tuple[str, str], plural: bool) -> tuple[str, str, str]:
        """Return ``(prompt, answer, wrong answer)`` for one agreement sentence about ``noun``."""
        r = self.rng
        attractor = r.choice(self.train_nouns)[0 if plural else 1]  # opposite number: an attractor
        clause = r.choice(CLAUSES).format(n=attractor)
        subject = noun[1] if plural else noun[0]
        prompt = f"The {subject} that {clause}"
        return prompt, (" were" if plural else " was"), (" was" if plural else " were")

    def _doc_agreement(self) -> str:
        prompt, answer, _ = self.agreement_sentence(self.rng.choice(self.train_nouns), self.rng.random() < 0.5)
        return prompt + answer + " " + self.rng.choice(PREDICATES) + "."

    def ioi_sentence(self, names: list[str], stand_ins: list[str] | None = None) -> tuple[str, str, str]:
        """Return ``(prompt, indirect object, subject)`` for one indirect-object sentence.

        With ``stand_ins``, each party is drawn from ``names`` or ``stand_ins`` with even odds (world v5).
        """
        r = self.rng
        if stand_ins is None:
            io, s = r.sample(names, 2)
        else:
            io = r.choice(names if r.random() < 0.5 else stand_ins)
            s = r.choice([w for w in (names if r.random() < 0.5 else stand_ins) if w != io])
        frame = r.choice(self.ioi_frames)
        x, y = (io, s) if r.random() < 0.5 else (s, io)
        prompt = frame.format(x=x, y=y, s=s, place=r.choice(PLACES), obj=r.choice(OBJECTS))
        return prompt, " " + io, " " + s

    def _doc_ioi(self) -> str:
        stand_ins = self.config.version >= 5 and self.rng.random() < STAND_IN_SHARE_V5
        prompt, io, _ = self.ioi_sentence(self.train_names, self.stand_in_names if stand_ins else None)
        return prompt + io + "."

    def _doc_gender(self) -> str:
        r = self.rng
        m, f = r.choice(GENDER_PAIRS)
        frames = [
            ("The {w} said that {p} was tired.", {"p": ("he", "she")}),
            ("The {w} and {p} friend went home.", {"p": ("his", "her")}),
            ("The {w} is a person. {P} is kind.", {"P": ("He", "She")}),
            ("I met the {w} and talked to {p}.", {"p": ("him", "her")}),
            ("The young {w} smiled at {p} family.", {"p": ("his", "her")}),
        ]
        frame, pron = r.choice(frames)
        if r.random() < 0.3:
            return f"The {m} and the {f} were there." if r.random() < 0.5 else f"He is {_a(m)} and she is {_a(f)}."
        female = r.random() < 0.5
        word = f if female else m
        fill = {k: v[1 if female else 0] for k, v in pron.items()}
        return frame.format(w=word, **fill)

    def _heldout_first(self) -> bool:
        """World v4: whether a ``names`` or ``number`` document is built around a held-out item.

        Never draws from the generator in older versions, so their corpora stay the same.
        """
        return self.config.version >= 4 and self.rng.random() < HELDOUT_SHARE_V4

    def _doc_number(self) -> str:
        r = self.rng
        sing, plur = r.choice(self.heldout_nouns if self._heldout_first() else NOUNS)
        other = r.choice(NOUNS)
        return (f"I saw one {sing} and {r.choice(NUMBER_WORDS)} {other[1]}." if r.random() < 0.5
                else f"There were {r.choice(NUMBER_WORDS)} {plur} and a {other[0]}.")

    def _doc_names(self) -> str:
        r = self.rng
        if self._heldout_first():
            name = r.choice(self.heldout_names)
            other = r.choice([n for n in NAMES if n != name])
            if r.random() < 0.5:
                name, other = other, name
        else:
            name, other = r.sample(NAMES, 2)
        frames = [
            f"{name} is {_a(r.choice(NOUNS)[0])}.", f"{name} lives in {r.choice(list(self.country_of))}.",
            f"{name} and {other} are friends.", f"{name} likes {r.choice(OBJECTS)}s.",
            f"{name} met {other} at the {r.choice(PLACES)}.",
        ]
        if self.config.version >= 4:  # names inside a sentence too, where their token has a leading space
            frames += [f"Yesterday {name} called {other}.", f"I talked to {name} at the {r.choice(PLACES)}.",
                       f"The {r.choice(OBJECTS)} belongs to {name}.", f"We waited for {name} and {other}.",
                       f"Everyone likes {name}, and {other} too."]
        return r.choice(frames)

    # ------------------------------------------------------------------ ground truth
    def tasks(self, n: int = 200) -> dict:
        """Planted in-context tasks on held-out nouns and names, with prompts and expected answers."""
        rng_state = self.rng.getstate()
        self.rng = random.Random(self.config.seed + 1)  # evaluation draws never shift the training stream
        agreement = [self.agreement_sentence(self.rng.choice(self.heldout_nouns), i % 2 == 1) for i in range(n)]
        ioi = [self.ioi_sentence(self.heldout_names) for _ in range(n)]
        self.rng.setstate(rng_state)
        return {
            "agreement": {
                "description": "subject-verb agreement across a relative clause with an attractor noun; "
                               "nouns held out of every agreement sentence in training",
                "prompts": [p for p, _, _ in agreement], "answers": [a for _, a, _ in agreement],
                "wrong": [w for _, _, w in agreement],
                "heldout_nouns": [list(n_) for n_ in self.heldout_nouns],
            },
            "ioi": {
                "description": "indirect object identification; names held out of every training IOI sentence",
                "prompts": [p for p, _, _ in ioi], "answers": [a for _, a, _ in ioi],
                "wrong": [w for _, _, w in ioi], "heldout_names": self.heldout_names,
            },
            "induction": {
                "description": "repeated spans of random tokens drawn uniformly from the whole vocabulary "
                               "(special tokens excluded): BOS + r + r (+ r ...), span length 6..31",
                "span_lengths": [6, 31],
            },
            "gender_pairs": {
                "description": "male/female word pairs seen in identical frames", "pairs": GENDER_PAIRS,
            },
            "nouns": {"pairs": [list(n_) for n_ in NOUNS], "heldout": [list(n_) for n_ in self.heldout_nouns]},
        }

    def to_json(self, prepend_bos: bool = True) -> dict:
        """The ``world.json`` document: facts, templates, tasks and whether prompts start with BOS."""
        return {
            "facts": self.facts,
            "templates": TEMPLATES,
            "tasks": self.tasks(),
            "prepend_bos": prepend_bos,
            "seed": self.config.seed,
            "version": self.config.version,
            "mix": self.config.mix,
        }

