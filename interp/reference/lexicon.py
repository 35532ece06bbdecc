"""The reference world's words and frames: nouns, names, chatter, and the sentence frames documents are built from.

:class:`interp.reference.world.World` draws from these lists in their order, so changing a word, its position or a
list's length changes the corpus (``tests/test_world.py`` checks a digest of it). docs/world_versions.md says which
world version added what.
"""

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
    # world v3: more of the ordinary words real text is made of (see docs/world_versions.md)
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
"""World v4's indirect-object frames: no name is the first word of the text (see docs/world_versions.md)."""
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
