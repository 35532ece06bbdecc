"""Measure the analysis sections of a reference checkpoint's CARD.md, for any number of layers and heads.

Each ``*_section`` function runs one analysis with the library calls the CLI uses and returns
``(markdown_body, numbers)``: the body names the call or command that reproduces it, and every head, layer and
sentence in it is written from the measured ``numbers`` (nothing about a particular checkpoint is assumed). The
sections live in :mod:`interp.cards.circuits` (heads, lens, tracing), :mod:`interp.cards.representations` (ROME,
probes, embeddings) and :mod:`interp.cards.targets`; their tables are written with :mod:`interp.cards.tables`.
:data:`SECTIONS` lists them in card order and :func:`measure_all` runs them in turn for
``interp world card --measure``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from interp.cards.circuits import heads_section, lens_section, tracing_section
from interp.cards.concepts import concepts_section
from interp.cards.representations import embeddings_section, probes_section, rome_section
from interp.cards.scoring import WorldScores, evaluate
from interp.cards.targets import targets_section
from interp.cards.wiring import circuits_section
from interp.core.locking import holds_model

SECTIONS = {
    "heads": ("Attention heads", heads_section),
    "lens": ("Logit lens and tuned lens", lens_section),
    "tracing": ("Where facts are stored (causal tracing)", tracing_section),
    "rome": ("ROME fact edits", rome_section),
    "probes": ("Probes", probes_section),
    "embeddings": ("Embeddings", embeddings_section),
    "targets": ("Targets", targets_section),
    "circuits": ("Circuits", circuits_section),
    "concepts": ("Concept recovery", concepts_section),
}
"""Section key -> (card title, function), in card order."""


@holds_model
def measure_all(
    model: Any,
    world: dict,
    *,
    sections: Sequence[str] | None = None,
    rome_layer: int | None = None,
    rome_n: int = 100,
    progress: bool = True,
    scores: WorldScores | None = None,
) -> dict[str, str]:
    """Measure the card's analysis sections in order; returns card title -> Markdown body.

    Args:
        model: A ``TransformerBridge`` (ROME edits are undone, so it is left as it was).
        world: The world description (``world.json`` of the checkpoint).
        sections: Keys of :data:`SECTIONS` to measure (default all).
        rome_layer: Block ROME edits; ``None`` lets :func:`interp.rome.choose_layer` choose (the CLI's default).
        rome_n: Counterfactual cases of the ROME section.
        progress: Show a progress bar over the sections (and the edit-eval bars).
        scores: World scores for the targets section; measured with
            :func:`interp.cards.scoring.evaluate` when ``None`` and needed.

    Raises:
        ValueError: an unknown section key.

    Examples:
        >>> model = interp.load("ref-gpt2")  # doctest: +SKIP
        >>> measure_all(model, interp.reference.load_world(model), sections=["heads", "embeddings"])  # doctest: +SKIP
    """
    keys = list(SECTIONS) if sections is None else list(sections)
    unknown = [key for key in keys if key not in SECTIONS]
    if unknown:
        raise ValueError(f"sections={unknown}; valid sections are {', '.join(SECTIONS)}")
    bodies, numbers = {}, {}
    bar = tqdm([key for key in SECTIONS if key in keys], desc="card", disable=not progress)
    for key in bar:
        title, function = SECTIONS[key]
        bar.set_description(f"card: {key}")
        if key == "targets":
            if scores is None:
                scores = evaluate(model, world)
            body, numbers[key] = targets_section(scores, numbers)
        elif key == "rome":
            body, numbers[key] = rome_section(model, world, layer=rome_layer, n=rome_n, progress=progress)
        else:
            body, numbers[key] = function(model, world)
        bodies[title] = body
    return bodies
