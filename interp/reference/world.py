"""The reference world's text generator: planted facts, free-context mentions and in-context tasks.

Everything is drawn from one seeded :class:`random.Random`, so the same seed gives the same corpus. A training
*document* is one short line of text; the trainer packs documents into fixed-length sequences and mixes in
sequences of repeated random tokens (see :mod:`interp.reference.train`).

Document kinds, and why each is there:

* ``template``: a fact asked through a training template and answered ("{subject} is in the city of Paris."),
  half of the time after an opener ("According to my notes, ...") and often with an aside between the subject
  and the question ("{subject}, which we visited last year, is in the city of"): varied contexts around the
  same question teach the model to answer from the subject and the relation, not from one memorised wording,
  and to carry what it knows about the subject across intervening words.
* ``free``: the subject in free context with its attributes: parenthetical mentions ("the Louvre (Paris)"),
  multi-hop chains (landmark -> city -> country), country profiles, and subjects followed by varied
  continuations. Large pretrained models store facts at the subject's last token partly because they meet the
  subject in many such contexts; a model that only saw fixed question templates can answer from the template
  alone, and then there is nothing at the subject for causal tracing or ROME to find.
* ``lists``: subject-object lists under a header ("Cities: Lyon France; Osaka Japan."), where the object is
  the very next token after the subject and can only come from what the model stores at the subject.
* ``chatter``: simple sentences over a broad lexicon, so that ordinary words (those of the held-out templates
  among them, in other sentences) are known words, as they are to a model trained on real text.
* ``agreement``: subject-verb agreement across a relative clause with an attractor noun.
* ``ioi``: indirect-object sentences ("When Mary and John went to the store, John gave a drink to Mary."), over
  a hundred training names in either order, so the answer must be copied from the prompt.
* ``gender``: parallel gendered pairs in identical frames, so that embedding analogies have a chance.
* ``number``: every noun (held-out nouns included) with a number word, so a model can know a noun's number
  without having seen it in an agreement sentence.
* ``names``: every name (held-out names included) in simple sentences.

World v3 (the shipped checkpoints' world) changed these things against v2:

* every word of every held-out template now occurs in training text, in other sentences, and every held-out
  template's first word starts some training document (chatter got questions and a broader lexicon; a test checks
  it). v2 models answered many failing held-out prompts (222 of ref-gpt2's 375 misses, 283 of ref-llama's 644)
  with the prompt's first token, the behaviour a repeated random span rewards, on templates with words they had
  never seen ("Which", "Letters", "born", "doubts").
* indirect-object sentences draw from over a hundred training names and put the indirect object first or
  second at random, so that neither recall of a few dozen names nor position predicts the answer; the
  tokenizer keeps every name and noun form whole (a test checks the shipped tokenizers).
* free-context documents also give the attribute a sentence after the subject, behind a pronoun ("We saw {s}
  last year. It is in {o}."), as running text does (not measured on its own).
* the training template "The capital of {subject} is the city of" is gone: with it, "... the capital of
  {subject} is" had two right continuations (the capital and " the").

World v4 (``WorldConfig(version=4)``; v3 stays the default and keeps making the same corpus) changes three
things, each aimed at a task measured on held-out names or nouns:

* no indirect-object frame puts a name first ("Later, {x} and {y} found a ..."): a name as the text's first
  word has no leading space, so its token is another one than the answer's (" Oliver"), and for held-out names,
  which occur in no training IOI sentence, the models had too little text to tie the two together (v3 models
  got 3 and 5 of the 14 such held-out prompts right);
* ``names`` documents are twice as common, half of them are built around a held-out name, and new frames put
  names inside sentences: training names also occur in IOI sentences, so in v3 each held-out name occurred about
  ten times less often than a training name, and models that copy training names perfectly (200 of 200) copied
  held-out ones 76-87% of the time;
* ``number`` documents are 1.5 times as common and half of them are about a held-out noun, for the same reason
  (held-out nouns occur in no agreement sentence).

ref-gpt2's second stage and ref-llama's third trained on v4; their CARD.md says what that changed (ref-gpt2's
indirect-object task moved only from 76.0 to 79.5%, so the rarity of held-out names was not the main cause of its
misses; ref-llama's from 87.0 to 92.5%).

World v5 (``WorldConfig(version=5)``) is v4 with one change: in half of the indirect-object sentences each of
the two parties is a training name or, with even odds, a one-word country name standing in for a person ("After
Fred and Belgium arrived at the market, Belgium handed a drink to Fred."; ``World.stand_in_names``, 54
countries, all whole tokens of the shipped tokenizer). Held-out names still occur in no training IOI sentence.
The reason: ref-gpt2 after v4 copied any training name (200 of 200) but, with a held-out name as the repeated
subject, answered with that name more often than with a country standing as the indirect object (right on 91 of
200 such prompts, against 200 of 200 with a training name as the indirect object): it had learned which names to
copy more than which party to copy. Parties that are not names at all make only the sentence's structure say
who receives the object. A first draft of v5 also drew cities as stand-ins (168 words); ref-gpt2 trained on it
(the same 1917 steps as its shipped third stage) reached 96.0% on the indirect-object task, but the linear probe
reading a city's country from the city's residual fell from 1.00 to .89 (mean best-layer accuracy over probe
seeds 0-4: .992 -> .894): cities used as people lose some of what makes them cities, so v5 keeps them out.
ref-gpt2's third stage (shipped) trained on v5 for those 1917 steps: 79.5 -> 91.5% on the indirect-object task,
91 -> 174 of 200 on the country-vs-held-out-name prompts above, the probe at .99 (seeds 0-4: .986).

Chatter verbs agree with their subjects. A first draft of v3 had neither that nor whole-token names and nouns;
its models fell from 100% to 75-76% on the agreement task and to 53-62% on the indirect-object task.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

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
    "Henry", "Clara", "Jack", "Sophie", "Adam", "Julia", "Simon", "Nora",
    # world v3: more training names, so that the indirect-object task is solved by copying a name from the
    # prompt, not by recalling one of a few dozen names seen in training IOI sentences.
    "Robert", "Linda", "William", "Susan", "Richard", "Karen", "Joseph", "Nancy", "Charles", "Betty",
    "Steven", "Sandra", "Andrew", "Donna", "Kevin", "Carol", "Brian", "Ruth", "Edward", "Sharon", "Ronald",
    "Amy", "Anthony", "Angela", "Jason", "Mia", "Gary", "Ella", "Eric", "Chloe", "Ryan", "Hannah", "Jacob",
    "Olivia", "Nathan", "Leah", "Kyle", "Zoe", "Sean", "Ivy", "Carl", "Diana", "Hugo", "Maya", "Leo", "Iris",
    "Max", "Ruby", "Felix", "Amber", "Oscar", "Paula", "Ian", "Wendy", "Luke", "Tina", "Owen", "Molly",
    "Dean", "Nina", "Roy", "Vera", "Neil", "Fiona", "Ivan", "Lisa", "Hans", "Carmen", "Omar", "Lena",
    "Pablo", "Irene", "Karl", "Alan", "Joan", "Bruce", "Ada", "Ralph", "Gina", "Fred", "Holly", "Glen",
    # held out of every training IOI sentence (the last HELDOUT_NAMES):
    "Oliver", "Emily", "Victor", "Alex", "Sam", "Tom", "Ben", "Eve",
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
           "Yesterday I learned that", "As the guide explained,", "Of course,", "My aunt told me that",
           "In the newspaper it said that", "Last week we talked about how", "I am sure that",
           "The quiz asked a simple thing:", "Honestly,", "My grandfather always said that",
           "On the radio they said that", "Remember that", "Here is something simple:"]

# Asides that go between a subject and the rest of its question: they teach the model to carry what it knows
# about the subject over intervening words. None names a relation or an object.
ASIDES = [
    ", which we visited last year,", ", as you may know,", ", of course,", ", which my friend loves,",
    " (see the photo above)", ", as many people say,", ", which I still remember well,", ", by the way,",
    ", which was in the news again,", ", a place I want to see again,", " (I checked twice)",
    ", so I was told,", ", which my parents liked a lot,", ", as the old song goes,",
    ", which everyone talks about,", ", as far as I know,", ", a name you hear a lot,",
    " (we went there in May)", ", which is worth the trip,", ", believe it or not,",
]

# General chatter: simple sentences over a broad lexicon, so that the world's text uses the ordinary words a
# question may be worded with (a held-out template's words included, in other sentences), as real text would.
CHATTER_SINGULAR = [
    "The mayor", "The king", "The travel agent", "My cousin", "The guide", "The old fisherman", "A visitor",
    "Nobody", "Everyone", "The queen", "The new manager", "A young painter", "Her brother", "A stranger", "My aunt",
    # world v3: more of the ordinary words real text is made of (see the module docstring)
    "The baby", "The old farmer", "My neighbour", "The river", "The letter", "The boat", "The doctor",
    "The musician", "Our teacher", "The fireman", "An old friend", "The shopkeeper", "A child",
]
CHATTER_PLURAL = [
    "Tourists", "The ministers", "Shopkeepers", "Farmers", "Children", "Pilots", "Students", "Our neighbours",
    "The teachers", "Some workers", "My parents", "The singers", "The tired drivers", "The customers",
    "The soldiers", "Most people", "The bakers", "The kids", "The sailors", "The journalists",
    # world v3
    "Letters", "Parcels", "The rivers", "Families", "They", "We", "People", "Young people", "Babies",
    "The firemen", "Old friends", "The nurses", "The twins", "Our teachers", "The fishermen", "Her parents",
    "The doctors", "The musicians", "The artists", "Birds", "The boats", "My colleagues",
]
CHATTER_SUBJECTS = CHATTER_SINGULAR + CHATTER_PLURAL
"""Subjects of chatter sentences; the verb agrees with the subject's number, so chatter never teaches a wrong
form ("The mayor were")."""
CHATTER_VERBS = [
    "booked", "sent letters to", "showed", "put", "talked to", "waited for", "sold", "bought", "painted",
    "cleaned", "watched", "found", "lost", "carried", "opened", "closed", "visited", "liked", "repaired",
    "should learn about", "sang about", "wrote about", "grew up near", "landed near", "flew over", "walked along",
    "looked at", "asked about", "had a palace near", "took us to", "sent", "can see", "will visit", "left",
    "drew", "read about", "dreamt about", "came back to", "stayed near", "called", "followed", "helped at",
    "moved to", "passed", "reached", "returned to", "studied near", "taught at", "waited near", "walked through",
    "rode past", "ran along", "swam in", "played near", "drove to", "had to clean", "had to visit",
    "could not find", "did not like", "did not know", "must see",
]
"""Chatter verbs whose form does not depend on the subject's number (past tense, modals)."""
CHATTER_VERB_PAIRS = [
    ("photographs", "photograph"), ("admires", "admire"), ("forgets", "forget"), ("remembers", "remember"),
    ("travels every day to", "travel every day to"), ("often starts", "often start"), ("marks", "mark"),
    ("speaks to", "speak to"), ("doubts", "doubt"), ("forgets seeing", "forget seeing"), ("works near", "work near"),
    ("was born near", "were born near"), ("grows up near", "grow up near"), ("flows past", "flow past"),
    ("flows through", "flow through"), ("lands near", "land near"), ("has to visit", "have to visit"),
    ("goes to", "go to"), ("does not like", "do not like"), ("does not know", "do not know"),
    ("arrives at", "arrive at"), ("lives near", "live near"), ("wants to see", "want to see"),
    ("often visits", "often visit"), ("talks about", "talk about"), ("thinks about", "think about"),
    ("stays near", "stay near"), ("teaches at", "teach at"), ("is tired of", "are tired of"),
    ("was late for", "were late for"),
]
"""Chatter verbs as (singular, plural) forms."""
CHATTER_OBJECTS = [
    "the map", "the old maps", "an atlas", "the river", "the rivers", "a flight", "the radio", "the songs",
    "a palace", "the letters", "a school trip", "the bridge", "the customers", "the market", "a tour",
    "the plane", "the train", "the harbour", "the garden", "the mountains", "a small boat", "the museum",
    "the farm", "the tower", "the square", "a new car", "the children", "the town hall", "every town",
    "the station", "the forest", "the lake", "a concert", "the photographs", "the school", "the hills",
    "the sea", "the valley", "the village", "the old road", "the shop", "the church", "the castle", "the port",
    "the fields", "the island", "the coast", "the bakery", "the hospital", "the post office", "a letter",
    "the cinema", "the zoo", "the playground", "the factory", "the office", "the beach", "the gallery",
]
CHATTER_ENDINGS = [
    "every day", "at night", "in the morning", "last year", "in winter", "with great care", "again",
    "for an hour", "after lunch", "without a word", "on Sunday", "together", "in a hurry", "once more",
    "near the coast", "in the rain", "before dinner", "for fun", "with friends", "all summer",
]
CHATTER_QUESTIONS = [
    "Which {n} {do} {s} like?", "Which {n} did {s} see?", "What {do} {s} do {e}?", "Where {do} {s} go {e}?",
    "Who {v} {o}?", "How {do} {s} get to {o}?", "Why {do} {s} like {o}?", "When {do} {s} visit {o}?",
    "Which {n} is the best?", "What did {s} find near {o}?", "Which of them {v} {o}?", "Where is {o}?",
    "What does it cost to see {o}?", "Who was born near {o}?", "Which one {v} {o}?", "How long is {o}?",
]
"""Questions of general chatter, answered by a chatter sentence: question words and ``do``-support are as
ordinary in text as statements, and a model that never saw a document start with "Which" treats one that does as
a string of unknown tokens."""
SAY_VERBS = ["said", "told us", "wrote", "explained", "noticed", "learned"]
SAY_VERB_PAIRS = [("says", "say"), ("agrees", "agree"), ("believes", "believe"), ("knows", "know")]

PLACES = ["store", "park", "station", "museum", "market", "beach", "library", "cafe", "school", "garden"]
OBJECTS = ["drink", "book", "letter", "gift", "ball", "ticket", "flower", "key", "cake", "map"]
IOI_FRAMES = [
    "When {x} and {y} went to the {place}, {s} gave a {obj} to",
    "After {x} and {y} arrived at the {place}, {s} handed a {obj} to",
    "Then, {x} and {y} were working at the {place}. {s} decided to give a {obj} to",
    "While {x} and {y} were at the {place}, {s} passed the {obj} to",
    "{x} and {y} found a {obj} at the {place}. {s} gave it to",
    "At the {place}, {x} met {y}, and {s} gave a {obj} to",
]
"""Indirect-object frames: ``{x}`` and ``{y}`` are the two names in either order (the indirect object first or
second, drawn at random), ``{s}`` repeats the subject, and the answer is the other name. Drawing the order at
random keeps position ("the first name", "the second name") from predicting the answer."""
IOI_FRAMES_V4 = [f if not f.startswith("{x}") else "Later, " + f for f in IOI_FRAMES]
"""World v4's indirect-object frames: no name is the first word of the text (see the module docstring)."""
STAND_IN_SHARE_V5 = 0.5
"""World v5: the share of indirect-object sentences whose two parties may be stand-ins (see ``stand_in_names``)."""
NUMBER_WORDS = ["two", "three", "four", "five", "many", "several", "some"]
FREE_LANDMARK = [
    "{s} ({o}) is beautiful at night.", "Photos of {s} ({o}) are everywhere.",
    "We visited {s} and then had dinner in {o}.", "{s} was crowded, like the rest of {o} in summer.",
    "The guide talked about {s} for an hour. {o} has many such places.",
    "{s} is in {o}, a city in {c}.", "{s} is in {c}.", "{s}, {o}, {c}.",
    "A trip to {s} is a trip to {o}.", "{s} is closed on Mondays.", "{s} is older than it looks.",
    "She painted {s} while staying in {o}.", "{s} ({o}, {c}) opens at nine.",
    "{s} ({o}).", "{s}, {o}.", "{s} in {o} was our first stop.", "{s} - {o} - {c}.",
    "{s} of {o} is on every postcard.", "{s} ({o}) was built long ago.", "Tickets for {s} ({o}) sold out.",
    "{s} is in {o}. {o} is in {c}.", "{s} is a landmark of {o}, and {o} is a city of {c}.",
    "{s} has a small shop.", "{s} looks different in winter.", "Many songs mention {s}.",
    "I took a photo of {s}.", "{s} was on the cover of the magazine.",
    # world v3: the attribute a sentence later, after a pronoun, as in running text
    "We saw {s} last year. It is in {o}.", "I have a photo of {s}. You can find it in {o}.",
    "{s} is on my list. It stands in {o}, {c}.", "Have you seen {s}? It is worth a trip to {o}.",
]
FREE_CITY = [
    "{s} ({o}) is a busy place.", "She moved to {s}, {o}, last year.", "{s}, {o}.",
    "The food in {s} is good, like everywhere in {o}.", "{s} is a city in {o}, on the continent of {k}.",
    "{s} has a large train station.", "The weather in {s} was sunny. We loved {o}.",
    "{s} is far from here.", "He studied in {s} before leaving {o}.", "Flights to {s} ({o}) are cheap in May.",
    "{s} ({o}).", "{s} in {o} is famous for its markets.", "{s} - {o} - {k}.", "{s} of {o} has a new museum.",
    "{s} is in {o}, whose capital is {cap}.", "From {s} we took a bus to {cap}, the capital of {o}.",
    "In {s} people speak {lang}, since {s} is in {o}.", "{s} has old bridges.", "{s} grew quickly.",
    "My friend from {s} visited me.", "{s} is a nice place to live.",
    "I have never been to {s}. It is in {o}.", "My friend grew up in {s}. People there speak {lang}.",
    "We spent a week in {s}. Then we flew to {cap}, the capital of {o}.",
    "{s} is lovely in spring. It is a city in {o}, in {k}.", "Have you been to {s}? It is a city of {o}.",
]
FREE_COUNTRY = [
    "{s}: capital {cap}, language {lang}, continent {k}.", "{s} ({k}) is a country with its capital in {cap}.",
    "In {s} they speak {lang}, and the capital is {cap}.", "{s} is a large country.",
    "{cap} is a big city. It is the capital of {s}.", "{s} has many rivers and mountains.",
    "The flag of {s} is well known.", "{lang} is spoken in {s}.", "We drove across {s} ({k}) for a week.",
    "{s} ({cap}).", "{s} ({lang}).", "{s} ({k}).", "{s}, {k}.", "{s} - {cap} - {lang}.",
    "{s} and its capital {cap}.", "{s}, where people speak {lang}.", "{s} in {k} has a long history.",
    "{s} sent a team to the games.", "{s} is my favourite country.", "{cap}, {s}.",
    "We spent a month in {s}. Everyone there spoke {lang}.", "My friend lives in {s}. She speaks {lang} at home.",
    "I have never been to {s}. It is in {k}.", "{s} is a beautiful country. Its capital is {cap}.",
    "People from {s} came to our school. They spoke {lang}.", "Have you been to {s}? The capital, {cap}, is lovely.",
]
"""Free-context frames: ``{s}`` subject, ``{o}`` its object, ``{c}`` country, ``{cap}`` capital, ``{lang}``
language, ``{k}`` continent. Many put an attribute right after the subject, which only a model that stores the
subject's attributes at the subject can predict."""
LIST_HEADERS = {
    "landmark_city": ["Sights:", "Photo index:", "Landmarks and cities:", "Tags:"],
    "city_country": ["Cities:", "Offices:", "Cities and countries:", "Destinations:"],
    "country_capital": ["Capitals:", "Countries and capitals:", "Government seats:"],
    "country_language": ["Languages:", "Countries and languages:", "Spoken languages:"],
    "country_continent": ["Continents:", "Countries by continent:", "Regions:"],
}
"""Headers of list documents ("Cities: Lyon France; Osaka Japan."): in a list the object comes right after the
subject, so the model must know it at the subject's last token, where large models keep facts."""


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
"""World v4: share of ``names`` and ``number`` documents built around a held-out name or noun (see the module
docstring)."""


@dataclass
class WorldConfig:
    """What goes into the corpus, as shares of training documents."""

    seed: int = 0
    """Seed of the generator; the same seed gives the same corpus."""
    version: int = DEFAULT_WORLD_VERSION
    """World version (see the module docstring and ``DEFAULT_WORLD_VERSION``)."""
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

