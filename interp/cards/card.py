"""Model cards of the reference checkpoints: the loss curve figure and the CARD.md text.

The card is written from measurements only: the training log (``training.json``), the world scores
(:mod:`interp.cards.scoring`) and any further measured sections passed in by the caller, each with the
command that produced it.
"""

from __future__ import annotations

import json
import textwrap
import warnings
from dataclasses import asdict
from pathlib import Path

from interp.cards.scoring import WorldScores
from interp.core.files import atomic_write_text
from interp.reference.train import PRESETS, preset_name, stages
from interp.reference.world import DEFAULT_WORLD_VERSION


def loss_curve(training: dict) -> tuple[list[int], list[float], list[int]]:
    """The smoothed loss against the step, over every stage of the recipe, and the step where each stage starts."""
    steps, losses, starts, offset = [], [], [], 0
    for stage in stages(training):
        every = stage["log_every"]
        starts.append(offset)
        steps += [offset + min(i * every, stage["steps_done"] - 1) for i in range(len(stage["losses"]))]
        losses += stage["losses"]
        offset += stage["steps_done"]
    return steps, losses, starts


def loss_figure(training: dict):
    """Plotly figure of the training loss (smoothed) against the optimisation step, every stage of the recipe."""
    import plotly.graph_objects as go

    steps, losses, starts = loss_curve(training)
    fig = go.Figure(go.Scatter(x=steps, y=losses, mode="lines", name="training loss"))
    for i, start in enumerate(starts[1:], 2):
        fig.add_vline(x=start, line_dash="dot", annotation_text=f"stage {i} (continued training)")
    fig.update_layout(title=f"{training['arch']} training loss", xaxis_title="step", yaxis_title="loss (nats)",
                      template="plotly_white")
    return fig


def recipe(training: dict) -> str:
    """Markdown description of how a checkpoint was trained: one command and its settings per stage."""
    chain = stages(training)
    out = (lambda i: f"DIR{i}") if len(chain) > 1 else (lambda i: "DIR")
    parts = []
    for i, stage in enumerate(chain, 1):
        preset, name, source = stage["preset"], preset_name(stage["preset"]), stage.get("init_from")
        command = f"interp world train --arch {stage['arch']} --out {out(i)} --steps {stage['steps_done']}"
        command += f" --workers {stage.get('workers', 0)}"
        if name not in ("full", "custom"):
            command += f" --preset {name}"
        if stage["seed"] != 0:
            command += f" --seed {stage['seed']}"
        if source is not None:
            command += f" --init-from {out(i - 1) if i > 1 else source['path']}"
        named = asdict(PRESETS[name]) if name != "custom" else {}
        for key in ("lr", "warmup"):  # what the command line overrode (a preset name fixes the rest)
            if preset[key] != named.get(key):
                command += f" --{key} {preset[key]:g}"
        if "data_seed" in stage:
            command += f" --data-seed {stage['data_seed']}"
        version = stage.get("world_version", DEFAULT_WORLD_VERSION)  # logs name only a non-default world
        if version != DEFAULT_WORLD_VERSION:
            command += f" --world-version {version}"
        if source is None:
            start = "a new model"
        elif i > 1:
            start = f"continues the checkpoint of stage {i - 1}"
        else:
            start = f"continues {source['path']}, whose training log was not saved"
        kind = f"preset `{name}`" if name != "custom" else "a custom `Preset` given to `train()` (see `training.json`)"
        settings = (f"({start}; {kind}, seed {stage['seed']}, {stage['steps_done']} steps of {preset['batch']} "
                    f"sequences x {preset['n_ctx']} tokens = {_tokens(stage) / 1e6:.1f}M tokens of world "
                    f"v{version}, "
                    f"AdamW lr {preset['lr']:g} with "
                    f"{preset['warmup']} warm-up steps and cosine decay to 10%, weight decay "
                    f"{preset['weight_decay']}, {preset['repeat_share']:.0%} of sequences made of repeated "
                    f"random-token spans; trained on {stage['device']} in {_duration(stage['seconds'])}).")
        head = f"Stage {i}: " if len(chain) > 1 else "Recipe: "
        parts.append(f"{head}`{command}`\n{textwrap.fill(settings, width=116, break_on_hyphens=False)}")
    if len(chain) > 1:
        total = sum(_tokens(st) for st in chain) / 1e6
        parts.append(f"In all: {sum(st['steps_done'] for st in chain)} steps, {total:.1f}M tokens.")
    return "\n\n".join(parts)


def architecture_table(config: dict) -> str:
    """Markdown table of the architecture read from a Hugging Face ``config.json``."""
    get = lambda *keys: next((config[k] for k in keys if k in config), "n/a")  # noqa: E731
    rows = [
        ("class", ", ".join(config.get("architectures", []))),
        ("layers", get("n_layer", "num_hidden_layers")),
        ("d_model", get("n_embd", "hidden_size")),
        ("heads", get("n_head", "num_attention_heads")),
        ("key/value heads", get("num_key_value_heads", "n_head")),
        ("MLP width", get("n_inner", "intermediate_size")),
        ("context", get("n_positions", "max_position_embeddings")),
        ("vocabulary", get("vocab_size")),
        ("positions", "RoPE" if "rope_theta" in config or "rope_parameters" in config else "learned absolute"),
        ("norm", "RMSNorm" if "rms_norm_eps" in config else "LayerNorm"),
        ("MLP", "SwiGLU" if config.get("hidden_act") == "silu" else "GELU"),
        ("tied embeddings", config.get("tie_word_embeddings", True)),
    ]
    return "\n".join(["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


GENERATED = ("Architecture", "Training", "Planted ground truth")
"""The sections :func:`write_card` always writes afresh; every other section of a card is a further section."""


def card_sections(text: str) -> dict[str, str]:
    """The further sections of a card's text (title -> body, in order): every ``## `` section but :data:`GENERATED`."""
    found = {}
    for chunk in text.split("\n## ")[1:]:
        title, _, body = chunk.partition("\n")
        if title.strip() not in GENERATED:
            found[title.strip()] = body.strip()
    return found


def write_card(folder: str | Path, name: str, scores: WorldScores, command: str,
               sections: dict[str, str] | None = None, *, keep: bool = True) -> Path:
    """Write ``CARD.md`` (and ``loss_curve.html``) in a checkpoint folder from measured numbers.

    The card is rewritten on purpose (it is made from the checkpoint), each file through a temporary and a rename.
    The further sections of the card already there are kept in their place unless ``sections`` gives them anew,
    so re-scoring a model does not lose the sections measured before; new titles follow them.

    Args:
        folder: The checkpoint directory (with ``config.json`` and ``training.json``).
        name: The model's embedded name, e.g. ``"ref-gpt2"``.
        scores: The world scores, measured by ``command``.
        command: The command that measured ``scores``.
        sections: Further measured sections, title -> Markdown body (each should name its command).
        keep: Keep the further sections of the existing ``CARD.md`` (False: write only ``sections``).

    Returns:
        The path of the written card.
    """
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    training = json.loads((folder / "training.json").read_text())
    atomic_write_text(folder / "loss_curve.html", loss_figure(training).to_html(include_plotlyjs="cdn"))
    steps, losses, _ = loss_curve(training)
    marks = sorted({0, len(losses) // 8, len(losses) // 4, len(losses) // 2, 3 * len(losses) // 4, len(losses) - 1})
    curve = "\n".join(["| step | loss |", "|---|---|"] + [f"| {steps[i]} | {losses[i]:.3f} |" for i in marks])
    params = (folder / "model.safetensors").stat().st_size
    text = f"""# {name}

A small {config.get('model_type', '')} model trained on the interp reference world, a generated corpus with planted
facts and planted in-context structure (see `interp/reference/world.py`). Every number below was measured on this
checkpoint; the command that measured it is given.

## Architecture
{architecture_table(config)}

Weights: {params / 1e6:.1f} MB of safetensors.

## Training
{recipe(training)}
Data mix of the text sequences (documents packed after a BOS token): see `WorldConfig.mix` in `world.json`.
The loss curve is in `loss_curve.html`; smoothed training loss:

{curve}

## Planted ground truth
Measured with `{command}`:

{scores.to_markdown()}
"""
    path = folder / "CARD.md"
    further = _old_sections(path) if keep else {}
    further.update(sections or {})  # a title given anew replaces the old body in its place
    for title, body in further.items():
        text += f"\n## {title}\n{body}\n"
    atomic_write_text(path, text)
    return path


def _old_sections(path: Path) -> dict[str, str]:
    """The further sections of the card at ``path``; none, with a warning, when it is not a readable card."""
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
        if not text.startswith("# ") or "\n## Planted ground truth\n" not in text:
            raise ValueError("no title or no 'Planted ground truth' section: damaged or not written by write_card")
    except (OSError, UnicodeDecodeError, ValueError) as err:
        warnings.warn(f"{path} is not a readable card ({err}); its further sections are not kept", stacklevel=3)
        return {}
    return card_sections(text)


def _tokens(stage: dict) -> int:
    return stage["steps_done"] * stage["preset"]["batch"] * stage["preset"]["n_ctx"]


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} minutes"
