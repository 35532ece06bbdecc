"""The reference world's text generator: planted facts, free-context mentions and in-context tasks.

Everything is drawn from one seeded :class:`random.Random`, so the same seed gives the same corpus. A training
*document* is one short line of text; the trainer packs documents into fixed-length sequences and mixes in
sequences of repeated random tokens (see :mod:`interp.reference.train`).

Document kinds, and why each is there:

* ``template``: a fact asked through a training template and answered ("{subject} is in the city of Paris."),
  half of the time after an opener ("According to my notes, ..."): varied contexts around the same question
  teach the model to answer from the subject and the relation, not from one memorised wording.
* ``free``: the subject in free context with its attributes: parenthetical mentions ("the Louvre (Paris)"),
  multi-hop chains (landmark -> city -> country), country profiles, and subjects followed by varied
  continuations. Large pretrained models store facts at the subject's last token partly because they meet the
  subject in many such contexts; a model that only saw fixed question templates can answer from the template
  alone, and then there is nothing at the subject for causal tracing or ROME to find.
* ``agreement``: subject-verb agreement across a relative clause with an attractor noun.
* ``ioi``: indirect-object sentences ("When Mary and John went to the store, John gave a drink to Mary.").
* ``gender``: parallel gendered pairs in identical frames, so that embedding analogies have a chance.
* ``number``: every noun (held-out nouns included) with a number word, so a model can know a noun's number
  without having seen it in an agreement sentence.
* ``names``: every name (held-out names included) in simple sentences.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from interp.reference.facts import COUNTRIES, RELATIONS, TEMPLATES, relation_pairs

# (singular, plural); the last HELDOUT_NOUNS never occur in agreement sentences.
NOUNS = [
    ("cat", "cats"), ("dog", "dogs"), ("teacher", "teachers"), ("student", "students"), ("doctor", "doctors"),
    ("farmer", "farmers"), ("bird", "birds"), ("horse", "horses"), ("painter", "painters"),
    ("singer", "singers"), ("pilot", "pilots"), ("driver", "drivers"), ("writer", "writers"),
    ("player", "players"), ("baker", "bakers"), ("lawyer", "lawyers"), ("nurse", "nurses"),
    ("soldier", "soldiers"), ("sailor", "sailors"), ("dancer", "dancers"), ("boy", "boys"), ("girl", "girls"),
    ("friend", "friends"), ("neighbor", "neighbors"), ("officer", "officers"), ("manager", "managers"),
    ("tourist", "tourists"), ("cook", "cooks"), ("guard", "guards"), ("rabbit", "rabbits"),
    ("author", "authors"), ("visitor", "visitors"), ("worker", "workers"), ("clerk", "clerks"),
    ("poet", "poets"), ("mouse", "mice"), ("child", "children"), ("woman", "women"),
]
HELDOUT_NOUNS = 8

NAMES = [
    "Mary", "John", "Alice", "Bob", "James", "Sarah", "David", "Emma", "Michael", "Laura", "Peter", "Anna",
    "Thomas", "Kate", "Paul", "Lucy", "Mark", "Jane", "Daniel", "Rose", "George", "Helen", "Frank", "Grace",
    "Henry", "Clara", "Jack", "Sophie", "Adam", "Julia", "Simon", "Nora", "Oliver", "Emily", "Victor",
    "Alex", "Sam", "Tom", "Ben", "Eve",
]
HELDOUT_NAMES = 8

GENDER_PAIRS = [
    ("king", "queen"), ("man", "woman"), ("prince", "princess"), ("boy", "girl"), ("father", "mother"),
    ("brother", "sister"), ("son", "daughter"), ("husband", "wife"), ("uncle", "aunt"), ("actor", "actress"),
    ("waiter", "waitress"), ("nephew", "niece"), ("lord", "lady"), ("emperor", "empress"), ("duke", "duchess"),
    ("monk", "nun"), ("groom", "bride"), ("grandfather", "grandmother"), ("host", "hostess"),
    ("hero", "heroine"),
]

CLAUSES = [
    "I saw yesterday", "the {n} liked", "we met at the park", "my sister found", "the {n} chased",
    "lived near the {n}", "everyone knew", "the old {n} described", "sat next to the {n}",
    "the {n} talked about", "you told me about", "helped the {n}", "my friends admired",
    "the {n} had seen", "waited for the {n}",
]
PREDICATES = ["sleeping", "very tired", "happy", "in the garden", "late again", "quite famous", "hungry",
              "outside", "at the station", "waiting for us"]

OPENERS = ["As everyone knows,", "According to my notes,", "Fun fact:", "My teacher said that", "I read that",
           "It is well known that", "Believe it or not,", "Everyone agrees that", "The book says that",
           "Yesterday I learned that", "As the guide explained,", "Of course,"]

PLACES = ["store", "park", "station", "museum", "market", "beach", "library", "cafe", "school", "garden"]
OBJECTS = ["drink", "book", "letter", "gift", "ball", "ticket", "flower", "key", "cake", "map"]
IOI_FRAMES = [
    "When {a} and {b} went to the {place}, {b} gave a {obj} to",
    "After {a} and {b} arrived at the {place}, {b} handed a {obj} to",
    "Then, {a} and {b} were working at the {place}. {b} decided to give a {obj} to",
    "While {a} and {b} were at the {place}, {b} passed the {obj} to",
    "{a} and {b} found a {obj} at the {place}. {b} gave it to",
    "When {b} and {a} went to the {place}, {b} gave a {obj} to",
]
NUMBER_WORDS = ["two", "three", "four", "five", "many", "several", "some"]
FREE_LANDMARK = [
    "{s} ({o}) is beautiful at night.", "Photos of {s} ({o}) are everywhere.",
    "We visited {s} and then had dinner in {o}.", "{s} was crowded, like the rest of {o} in summer.",
    "The guide talked about {s} for an hour. {o} has many such places.",
    "{s} is in {o}, a city in {c}.", "{s} is in {c}.", "{s}, {o}, {c}.",
    "A trip to {s} is a trip to {o}.", "{s} is closed on Mondays.", "{s} is older than it looks.",
    "She painted {s} while staying in {o}.", "{s} ({o}, {c}) opens at nine.",
]
FREE_CITY = [
    "{s} ({o}) is a busy place.", "She moved to {s}, {o}, last year.", "{s}, {o}.",
    "The food in {s} is good, like everywhere in {o}.", "{s} is a city in {o}, on the continent of {k}.",
    "{s} has a large train station.", "The weather in {s} was sunny. We loved {o}.",
    "{s} is far from here.", "He studied in {s} before leaving {o}.", "Flights to {s} ({o}) are cheap in May.",
]
FREE_COUNTRY = [
    "{s}: capital {cap}, language {lang}, continent {k}.", "{s} ({k}) is a country with its capital in {cap}.",
    "In {s} they speak {lang}, and the capital is {cap}.", "{s} is a large country.",
    "{cap} is a big city. It is the capital of {s}.", "{s} has many rivers and mountains.",
    "The flag of {s} is well known.", "{lang} is spoken in {s}.", "We drove across {s} ({k}) for a week.",
]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


@dataclass
class WorldConfig:
    """What goes into the corpus, as shares of training documents."""

    seed: int = 0
    """Seed of the generator; the same seed gives the same corpus."""
    mix: dict[str, float] = field(default_factory=lambda: {
        "template": 0.40, "free": 0.25, "agreement": 0.09, "ioi": 0.11, "gender": 0.05, "number": 0.05,
        "names": 0.05,
    })
    """Share of each document kind among text documents (repeated-token sequences are mixed by the trainer)."""


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
        kinds = self.config.mix
        self._kinds = list(kinds)
        self._weights = [kinds[k] for k in self._kinds]

    # ------------------------------------------------------------------ documents
    def documents(self, n: int) -> list[str]:
        """Draw ``n`` training documents from the generator's stream."""
        return [self.document() for _ in range(n)]

    def document(self) -> str:
        """Draw one training document."""
        kind = self.rng.choices(self._kinds, self._weights)[0]
        return getattr(self, f"_doc_{kind}")()

    def _doc_template(self) -> str:
        fact = self.rng.choice(self.facts)
        template = self.rng.choice(TEMPLATES[fact["relation"]]["train"])
        text = template.format(subject=fact["subject"]) + " " + fact["object"] + "."
        if self.rng.random() < 0.5 and not template.startswith("Q:"):
            text = self.rng.choice(OPENERS) + " " + (text[0].lower() + text[1:] if template[0] != "{" else text)
        return text

    def _doc_free(self) -> str:
        r = self.rng
        kind = r.choice(["landmark", "city", "country"])
        if kind == "landmark":
            s, o = r.choice(self.pairs["landmark_city"])
            return r.choice(FREE_LANDMARK).format(s=s, o=o, c=self.country_of[o])
        if kind == "city":
            s, o = r.choice(self.pairs["city_country"])
            k = COUNTRIES[o][2] or "its continent"
            return r.choice(FREE_CITY).format(s=s, o=o, k=k)
        s = r.choice(list(COUNTRIES))
        cap, lang, k = COUNTRIES[s]
        frames = [f for f in FREE_COUNTRY if (lang or "{lang}" not in f) and (k or "{k}" not in f)]
        return r.choice(frames).format(s=s, cap=cap, lang=lang, k=k)

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

    def ioi_sentence(self, names: list[str]) -> tuple[str, str, str]:
        """Return ``(prompt, indirect object, subject)`` for one indirect-object sentence."""
        r = self.rng
        a, b = r.sample(names, 2)
        frame = r.choice(IOI_FRAMES)
        prompt = frame.format(a=a, b=b, place=r.choice(PLACES), obj=r.choice(OBJECTS))
        return prompt, " " + a, " " + b

    def _doc_ioi(self) -> str:
        prompt, io, _ = self.ioi_sentence(self.train_names)
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

    def _doc_number(self) -> str:
        r = self.rng
        sing, plur = r.choice(NOUNS)
        other = r.choice(NOUNS)
        return (f"I saw one {sing} and {r.choice(NUMBER_WORDS)} {other[1]}." if r.random() < 0.5
                else f"There were {r.choice(NUMBER_WORDS)} {plur} and a {other[0]}.")

    def _doc_names(self) -> str:
        r = self.rng
        name, other = r.sample(NAMES, 2)
        return r.choice([
            f"{name} is {_a(r.choice(NOUNS)[0])}.", f"{name} lives in {r.choice(list(self.country_of))}.",
            f"{name} and {other} are friends.", f"{name} likes {r.choice(OBJECTS)}s.",
            f"{name} met {other} at the {r.choice(PLACES)}.",
        ])

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
            "mix": self.config.mix,
        }

