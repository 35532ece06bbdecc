"""The ``interp world`` sub-app: ``train``, ``eval`` and ``card`` for the reference models."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from interp.cli.common import DeviceOption, JsonOption, ModelOption, emit, fail, load_or_exit, user_errors
from interp.reference.world import DEFAULT_WORLD_VERSION


def world_train(
    arch: Annotated[str, typer.Option(help="gpt2 or llama.")],
    out: Annotated[str, typer.Option(help="Output checkpoint directory.")],
    quick: Annotated[bool, typer.Option("--quick", help="A small model in about a minute (for tests).")] = False,
    preset: Annotated[str, typer.Option(help="full (the shipped checkpoints), deep, v1 or quick.")] = "full",
    steps: Annotated[int | None, typer.Option(help="Override the preset's number of steps.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the world, tokenizer, initialisation and batches.")] = 0,
    tokenizer: Annotated[str | None, typer.Option(help="Reuse the tokenizer saved in this directory.")] = None,
    workers: Annotated[int, typer.Option(help="Data-loader processes (0: draw batches in this process).")] = 0,
    budget: Annotated[float | None, typer.Option(
        help="Seconds for the optimisation loop: the first steps' speed fixes the step count.")] = None,
    init_from: Annotated[str | None, typer.Option(
        help="Continue training this checkpoint (its weights and tokenizer) instead of a new model.")] = None,
    lr: Annotated[float | None, typer.Option(help="Override the preset's peak learning rate.")] = None,
    warmup: Annotated[int | None, typer.Option(help="Override the preset's warm-up steps.")] = None,
    data_seed: Annotated[int | None, typer.Option(
        help="Seed of the batch stream (default: --seed); give a continuation a new one.")] = None,
    world_version: Annotated[int, typer.Option(
        help="Version of the world generator (3, 4 or 5; docs/world_versions.md says what each changed).")] = (
        DEFAULT_WORLD_VERSION),
    save_every: Annotated[int, typer.Option(
        help="Steps between intermediate saves to --out (each replaces the last one whole).")] = 2000,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace what a non-empty --out holds (at the first save).")] = False,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a reference model on the reference world (seeded; saves a loss curve beside the checkpoint).

    Checkpoints are saved whole or not at all: a run stopped at any moment leaves --out loadable.
    """
    from pathlib import Path

    from interp.cards.card import loss_figure
    from interp.core.files import atomic_write_text, check_can_write
    from interp.reference.train import train

    with user_errors(ValueError, FileExistsError):
        if init_from is None or Path(out).resolve() != Path(init_from).resolve():  # else train() names both
            check_can_write(out, overwrite, "--overwrite")  # refused here to name the command-line flag
        result = train(arch, out, preset="quick" if quick else preset, steps=steps, seed=seed, device=device,
                       tokenizer_dir=tokenizer, workers=workers, budget_s=budget, init_from=init_from, lr=lr,
                       warmup=warmup, data_seed=data_seed, world_version=world_version, save_every=save_every,
                       overwrite=overwrite)
    training = json.loads((result.out / "training.json").read_text())
    atomic_write_text(result.out / "loss_curve.html", loss_figure(training).to_html(include_plotlyjs="cdn"))
    data = {"out": str(result.out), "seconds": round(result.seconds, 1), "final_loss": result.losses[-1]}
    emit(data, f"saved {result.out} after {result.seconds:.0f} s, final loss {result.losses[-1]:.3f}", as_json)


def world_eval(
    model: ModelOption = "ref-gpt2",
    world: Annotated[str | None, typer.Option(help="world.json (default: the one beside the checkpoint).")] = None,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure a model's fact recall, repeated-token loss and task accuracies (the numbers of its CARD.md)."""
    from pathlib import Path

    from interp.cards.scoring import evaluate
    from interp.reference import names, path

    if world is None:
        folder = path(model) if model in names() else Path(model)
        world = str(folder / "world.json")
    if not Path(world).is_file():
        raise fail(FileNotFoundError(f"no world.json at {world}; pass --world PATH"))
    bridge = load_or_exit(model, device)
    scores = evaluate(bridge, world)
    emit(json.loads(scores.to_json()), scores.to_markdown(), as_json)


def world_card(
    model: ModelOption = "ref-gpt2",
    extra: Annotated[str | None, typer.Option(
        help="Markdown file of further measured sections ('## Title' each).")] = None,
    measure: Annotated[bool, typer.Option("--measure", help="Also measure the analysis sections.")] = False,
    sections: Annotated[str | None, typer.Option(
        help="With --measure: comma-separated keys (heads, lens, tracing, rome, probes, embeddings, targets, "
             "circuits, concepts).")] = None,
    rome_layer: Annotated[int | None, typer.Option(
        help="With --measure: block ROME edits (default: chosen per case by tracing).")] = None,
    rome_n: Annotated[int, typer.Option(help="With --measure: counterfactual cases of the ROME section.")] = 100,
    device: DeviceOption = None,
) -> None:
    """Measure an embedded model on the world's ground truth and (re)write its CARD.md.

    With --measure the analysis sections are measured too (interp.cards.measure.measure_all); the
    sections of --extra (hand-written notes) follow them.
    """
    from pathlib import Path

    from interp.cards.card import write_card
    from interp.cards.measure import SECTIONS, measure_all
    from interp.cards.scoring import evaluate
    from interp.reference import load_world, names, path

    if model not in names():
        raise fail(ValueError(f"model={model!r}; cards are written for embedded models: {names()}"))
    keys = None if sections is None else [k.strip() for k in sections.split(",") if k.strip()]
    unknown = [k for k in keys or [] if k not in SECTIONS]
    if unknown:
        raise fail(ValueError(f"sections={unknown}; valid sections are {', '.join(SECTIONS)}"))
    folder = path(model)
    bridge = load_or_exit(model, device)
    world = load_world(bridge, folder / "world.json")
    scores = evaluate(bridge, world)
    cards = {}
    if measure:
        cards = measure_all(bridge, world, sections=keys, rome_layer=rome_layer, rome_n=rome_n, scores=scores)
    if extra is not None:
        for chunk in ("\n" + Path(extra).read_text()).split("\n## ")[1:]:
            title, _, body = chunk.partition("\n")
            if title.strip() in cards:
                raise fail(ValueError(f"section {title.strip()!r} of {extra} is also measured; rename it"))
            cards[title.strip()] = body.strip()
    card_path = write_card(folder, model, scores, f"interp world eval --model {model}", cards)
    typer.echo(f"wrote {card_path}")


def register(app: typer.Typer) -> None:
    """Add the ``world`` sub-app (``train``, ``eval``, ``card``) to ``app``."""
    world_app = typer.Typer(help="The reference world: train reference models and score them on its ground truth.",
                            no_args_is_help=True)
    world_app.command("train")(world_train)
    world_app.command("eval")(world_eval)
    world_app.command("card")(world_card)
    app.add_typer(world_app, name="world")
