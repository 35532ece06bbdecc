"""The ``interp`` command line.

One typer ``app``; each analysis adds a small command function here (or a sub-app via
``app.add_typer``) that loads through :func:`load_or_exit`, computes with the library and
prints through :func:`emit`, so every command has a readable default and ``--json``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from interp.reference.world import DEFAULT_WORLD_VERSION

app = typer.Typer(
    name="interp",
    help="Mechanistic-interpretability toolkit: load models, capture activations, run analyses.",
    no_args_is_help=True,
    add_completion=False,
)

ModelOption = Annotated[str, typer.Option("--model", "-m", help="Embedded name, checkpoint directory or hub name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
DeviceOption = Annotated[str | None, typer.Option("--device", help="Device, e.g. cpu or cuda (default: auto).")]


def emit(data: Any, text: str, as_json: bool) -> None:
    """Print ``data`` as JSON when ``as_json``, else the human-readable ``text``."""
    typer.echo(json.dumps(data) if as_json else text)


def fail(err: Exception) -> typer.Exit:
    """Report a user error on stderr without a traceback; ``raise fail(err)`` exits with status 2."""
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(code=2)


def load_or_exit(name: str, device: str | None = None) -> Any:
    """Load ``name`` with :func:`interp.load`, turning bad names into a clean exit."""
    from interp.loading import load

    try:
        return load(name, device=device)
    except (ValueError, FileNotFoundError) as err:
        raise fail(err) from None


@app.command()
def models(as_json: JsonOption = False) -> None:
    """List the embedded reference models and whether their checkpoints are present."""
    from interp import reference

    rows = []
    for name in reference.names():
        try:
            rows.append({"name": name, "present": True, "path": str(reference.path(name))})
        except FileNotFoundError:
            rows.append({"name": name, "present": False, "path": str(reference.registry.CHECKPOINTS / name)})
    text = "\n".join(f"{r['name']:<12} {'present' if r['present'] else 'missing':<8} {r['path']}" for r in rows)
    emit(rows, text, as_json)


@app.command()
def capture(
    model: ModelOption = "ref-gpt2",
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Prompt text.")] = "The Eiffel Tower is located in the city of",
    names: Annotated[
        list[str] | None,
        typer.Option("--names", "-n", help="Aliases or hook names (repeat or comma-separate); default: resid."),
    ] = None,
    top: Annotated[int, typer.Option(help="How many next-token predictions to show.")] = 5,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run one prompt and summarise each captured hook: shape and norm per position."""
    from interp.capture import capture as run_capture

    wanted = [n.strip() for item in names or ["resid"] for n in item.split(",") if n.strip()]
    bridge = load_or_exit(model, device)
    try:
        cap = run_capture(bridge, prompt, names=wanted)
    except ValueError as err:
        raise fail(err) from None
    probs = cap.last_logits[0].float().softmax(-1)
    best = probs.topk(min(top, probs.shape[0]))
    predictions = [
        {"token": cap.tokenizer.decode([int(i)]), "id": int(i), "prob": round(float(p), 6)}
        for p, i in zip(best.values, best.indices, strict=True)
    ]
    hooks = {name: {"shape": list(x.shape), "norm": _norms_per_position(name, x)} for name, x in cap.activations.items()}
    data = {
        "model": cap.info.name,
        "tokens": cap.tokens[0].tolist(),
        "str_tokens": cap.str_tokens[0],
        "hooks": hooks,
        "top_next": predictions,
    }
    lines = [f"model {cap.info.name}", "tokens " + " ".join(repr(t) for t in cap.str_tokens[0]), ""]
    width = max((len(n) for n in hooks), default=0)
    for name, h in hooks.items():
        norms = " ".join(f"{v:.3g}" for v in h["norm"])
        lines.append(f"{name:<{width}}  {str(tuple(h['shape'])):<18} norm/pos {norms}")
    lines += ["", "next token: " + ", ".join(f"{p['token']!r} {p['prob']:.3f}" for p in predictions)]
    emit(data, "\n".join(lines), as_json)


def _norms_per_position(name: str, x: Any) -> list[float]:
    """L2 norm of batch row 0 at each (query) position, over every other dimension."""
    import torch

    row = x[0].float()
    if name.endswith(("hook_pattern", "hook_attn_scores")):
        row = row.transpose(0, 1)  # [head q k] -> [q head k]
        row = row.masked_fill(row <= torch.finfo(x.dtype).min, 0.0)  # masked scores are finfo.min
    return [round(float(v), 5) for v in row.reshape(row.shape[0], -1).norm(dim=-1)]


world_app = typer.Typer(help="The reference world: train reference models and score them on its ground truth.",
                        no_args_is_help=True)
app.add_typer(world_app, name="world")


@world_app.command("train")
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
        help="Version of the world generator (3, 4 or 5; interp.reference.world says what each changed).")] = (
        DEFAULT_WORLD_VERSION),
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a reference model on the reference world (seeded; saves a loss curve beside the checkpoint)."""
    from interp.reference.card import loss_figure
    from interp.reference.train import train

    try:
        result = train(arch, out, preset="quick" if quick else preset, steps=steps, seed=seed, device=device,
                       tokenizer_dir=tokenizer, workers=workers, budget_s=budget, init_from=init_from, lr=lr,
                       warmup=warmup, data_seed=data_seed, world_version=world_version)
    except ValueError as err:
        raise fail(err) from None
    training = json.loads((result.out / "training.json").read_text())
    loss_figure(training).write_html(result.out / "loss_curve.html", include_plotlyjs="cdn")
    data = {"out": str(result.out), "seconds": round(result.seconds, 1), "final_loss": result.losses[-1]}
    emit(data, f"saved {result.out} after {result.seconds:.0f} s, final loss {result.losses[-1]:.3f}", as_json)


@world_app.command("eval")
def world_eval(
    model: ModelOption = "ref-gpt2",
    world: Annotated[str | None, typer.Option(help="world.json (default: the one beside the checkpoint).")] = None,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure a model's fact recall, repeated-token loss and task accuracies (the numbers of its CARD.md)."""
    from pathlib import Path

    from interp import reference
    from interp.reference.evaluate import evaluate

    if world is None:
        folder = reference.path(model) if model in reference.names() else Path(model)
        world = str(folder / "world.json")
    if not Path(world).is_file():
        raise fail(FileNotFoundError(f"no world.json at {world}; pass --world PATH"))
    bridge = load_or_exit(model, device)
    scores = evaluate(bridge, world)
    emit(json.loads(scores.to_json()), scores.to_markdown(), as_json)


# The probe command lives with its package; importing it here (after the shared options above
# exist) registers it without a circular import at module load.
from probes.cli import probe  # noqa: E402

app.command("probe")(probe)

# trace, edit and edit-eval live in their own module; importing it registers them on ``app``.
from interp import edit_commands  # noqa: E402,F401

# induction, heads and lens live in their own module; importing it registers them on ``app``.
from interp import head_commands  # noqa: E402,F401

# next-token, generate, speculative and analogy live in their own module; importing it registers them on ``app``.
from interp import generate_commands  # noqa: E402,F401


@world_app.command("card")
def world_card(
    model: ModelOption = "ref-gpt2",
    extra: Annotated[str | None, typer.Option(help="Markdown file of further measured sections ('## Title' each).")] = None,
    measure: Annotated[bool, typer.Option("--measure", help="Also measure the analysis sections.")] = False,
    sections: Annotated[str | None, typer.Option(
        help="With --measure: comma-separated keys (heads, lens, tracing, rome, probes, embeddings, targets).")] = None,
    rome_layer: Annotated[int | None, typer.Option(
        help="With --measure: block ROME edits (default: chosen per case by tracing).")] = None,
    rome_n: Annotated[int, typer.Option(help="With --measure: counterfactual cases of the ROME section.")] = 100,
    device: DeviceOption = None,
) -> None:
    """Measure an embedded model on the world's ground truth and (re)write its CARD.md.

    With --measure the analysis sections are measured too (interp.reference.measure.measure_all); the
    sections of --extra (hand-written notes) follow them.
    """
    from pathlib import Path

    from interp import reference
    from interp.reference.card import write_card
    from interp.reference.evaluate import evaluate
    from interp.reference.measure import SECTIONS, measure_all

    if model not in reference.names():
        raise fail(ValueError(f"model={model!r}; cards are written for embedded models: {reference.names()}"))
    keys = None if sections is None else [k.strip() for k in sections.split(",") if k.strip()]
    unknown = [k for k in keys or [] if k not in SECTIONS]
    if unknown:
        raise fail(ValueError(f"sections={unknown}; valid sections are {', '.join(SECTIONS)}"))
    folder = reference.path(model)
    bridge = load_or_exit(model, device)
    world = reference.load_world(bridge, folder / "world.json")
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
    path = write_card(folder, model, scores, f"interp world eval --model {model}", cards)
    typer.echo(f"wrote {path}")
