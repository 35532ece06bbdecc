"""Probe tasks built from the reference world's ``world.json``.

``city_country``
    The country of a city, read at the city's last token in ``city_country`` template prompts
    (train and held-out templates). Only countries with at least ``min_subjects`` cities (default
    3) are kept, so that every tested country was learnt from at least two training cities. With
    a single training city a probe cannot tell the country's direction from that city's own
    identity: on both reference models, with countries of two cities kept as well, nearly every
    test error was a country the probe had seen one city of (``interp world card --measure``
    reports that variant too).
``relation``
    Which of the five relations a fact prompt asks about, read at the last token (where the
    model must predict the object).
``in_subject``
    Whether a token is part of the subject's name, at every token after BOS of fact prompts.
``number``
    Whether the subject of an agreement sentence ("The cats that the dog chased") is singular or
    plural, read at the last token (where the verb comes next), for every noun of the world.

Every task groups examples by subject (the noun lemma for ``number``), so the split never puts
one subject on both sides. Prompts are sampled with a seed; tokens are located with the model's
own tokenizer, so a task is built for one model (both reference models share one tokenizer).
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from interp.reference.registry import load_world
from probes.task import ProbeExample, ProbeTask

TASKS = ("city_country", "in_subject", "number", "relation")
"""Names of the reference-world tasks."""


def world_task(
    name: str,
    model: Any,
    *,
    world: dict | str | Path | None = None,
    per_subject: int = 8,
    min_subjects: int = 3,
    seed: int = 0,
) -> ProbeTask:
    """Build a reference-world probe task for ``model``'s tokenizer.

    Args:
        name: One of :data:`TASKS`.
        model: A ``TransformerBridge`` (its tokenizer locates subject tokens; its checkpoint's
            ``world.json`` is used when present).
        world: A ``world.json`` dict or path, overriding the model's.
        per_subject: Prompts per subject (per fact for ``relation``, per noun and number for
            ``number``; ``in_subject`` uses a quarter of it, as each prompt gives many positions).
        min_subjects: ``city_country`` only: keep countries with at least this many cities (>= 2, so
            that a tested country also has a training city).
        seed: Seed of the prompt sampling.

    Returns:
        The :class:`ProbeTask`.

    Raises:
        ValueError: an unknown task name, ``per_subject < 1`` or ``min_subjects < 2``.

    Examples:
        >>> task = probes.world_task("city_country", interp.load("ref-gpt2"))  # doctest: +SKIP
        >>> task.to_frame().head()  # doctest: +SKIP
    """
    if name not in TASKS:
        raise ValueError(f"task={name!r}; reference-world tasks are {', '.join(TASKS)}")
    if isinstance(per_subject, bool) or not isinstance(per_subject, int) or per_subject < 1:
        raise ValueError(f"per_subject={per_subject!r}; it must be an int >= 1")
    if isinstance(min_subjects, bool) or not isinstance(min_subjects, int) or min_subjects < 2:
        raise ValueError(
            f"min_subjects={min_subjects!r}; it must be an int >= 2 (a tested country needs a training city)"
        )
    data = load_world(model, world)
    rng = random.Random(seed)
    if name == "city_country":
        return _city_country(data, model, per_subject, rng, min_subjects)
    builder = {"relation": _relation, "in_subject": _in_subject, "number": _number}
    return builder[name](data, model, per_subject, rng)


def _templates(data: dict, relation: str) -> list[str]:
    t = data["templates"][relation]
    return list(t["train"]) + list(t["heldout"])


def _prompts(data: dict, relation: str, subject: str, k: int, rng: random.Random) -> list[tuple[str, int, int]]:
    """Up to ``k`` template prompts about ``subject``, each with the character span of the subject."""
    chosen = rng.sample(_templates(data, relation), min(k, len(_templates(data, relation))))
    out = []
    for template in chosen:
        start = template.index("{subject}")
        # Filled in verbatim (no capitalisation at the start), exactly as the training text is.
        text = template.replace("{subject}", subject)
        out.append((text, start, start + len(subject)))
    return out


def _token_spans(model: Any, text: str) -> list[tuple[int, int]]:
    """Character span of each token of ``text`` as :func:`interp.tokenize` lays it out (BOS first)."""
    enc = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = [tuple(span) for span in enc["offset_mapping"]]
    return [(0, 0), *spans] if model.cfg.default_prepend_bos else spans


def _subject_positions(model: Any, text: str, start: int, end: int) -> list[int]:
    # Byte-level BPE folds the leading space into the token (" Paris" spans the space too), so a
    # token belongs to the subject when its span overlaps the subject's characters at all.
    return [i for i, (s, e) in enumerate(_token_spans(model, text)) if s < end and e > start and e > s]


def _city_country(data: dict, model: Any, k: int, rng: random.Random, min_subjects: int) -> ProbeTask:
    cities = defaultdict(list)
    for fact in data["facts"]:
        if fact["relation"] == "city_country":
            cities[fact["object"]].append(fact["subject"])
    examples = []
    for country in sorted(cities):
        if len(cities[country]) < min_subjects:
            continue
        for city in cities[country]:
            for text, start, end in _prompts(data, "city_country", city, k, rng):
                last = _subject_positions(model, text, start, end)[-1]
                examples.append(ProbeExample(text, last, country, city))
    if not examples:
        most = max((len(v) for v in cities.values()), default=0)
        raise ValueError(f"min_subjects={min_subjects}: no country of this world has that many cities (most: {most})")
    return ProbeTask(
        "city_country",
        examples,
        f"country of the city named in the prompt, read at the city's last token (countries with >= {min_subjects} "
        "cities)",
    )


def _relation(data: dict, model: Any, k: int, rng: random.Random) -> ProbeTask:
    examples = []
    for fact in data["facts"]:
        for text, _, _ in _prompts(data, fact["relation"], fact["subject"], k, rng):
            examples.append(ProbeExample(text, -1, fact["relation"], fact["subject"]))
    return ProbeTask("relation", examples, "which relation a fact prompt asks about, read at the last token")


def _in_subject(data: dict, model: Any, k: int, rng: random.Random) -> ProbeTask:
    examples = []
    for fact in data["facts"]:
        for text, start, end in _prompts(data, fact["relation"], fact["subject"], max(1, k // 4), rng):
            inside = set(_subject_positions(model, text, start, end))
            first = 1 if model.cfg.default_prepend_bos else 0
            for pos in range(first, len(_token_spans(model, text))):
                examples.append(
                    ProbeExample(text, pos, "subject" if pos in inside else "other", fact["subject"])
                )
    return ProbeTask("in_subject", examples, "whether the token is part of the subject's name, at every token")


def _number(data: dict, model: Any, k: int, rng: random.Random) -> ProbeTask:
    agreement = data["tasks"]["agreement"]
    # Clauses keep their attractor noun of the opposite number to the subject they were written for.
    clauses: dict[bool, list[str]] = {False: [], True: []}
    for prompt, answer in zip(agreement["prompts"], agreement["answers"], strict=True):
        if " that " in prompt:
            clauses[answer.strip() == "were"].append(prompt.split(" that ", 1)[1])
    examples = []
    for singular, plural in data["tasks"]["nouns"]["pairs"]:
        for is_plural, word in ((False, singular), (True, plural)):
            pool = sorted(set(clauses[is_plural]))
            for clause in rng.sample(pool, min(k, len(pool))):
                examples.append(
                    ProbeExample(f"The {word} that {clause}", -1, "plural" if is_plural else "singular", singular)
                )
    return ProbeTask(
        "number", examples, "singular or plural subject of an agreement sentence, read at the last token"
    )
