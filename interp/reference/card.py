"""Model cards of the reference checkpoints: the loss curve figure and the CARD.md text.

The card is written from measurements only: the training log (``training.json``), the world scores
(:mod:`interp.reference.evaluate`) and any further measured sections passed in by the caller, each with the
command that produced it.
"""

from __future__ import annotations

import json
from pathlib import Path

from interp.reference.evaluate import WorldScores


def loss_figure(training: dict):
    """Plotly figure of the training loss (smoothed) against the optimisation step."""
    import plotly.graph_objects as go

    every = training["log_every"]
    steps = [min(i * every, training["steps_done"] - 1) for i in range(len(training["losses"]))]
    fig = go.Figure(go.Scatter(x=steps, y=training["losses"], mode="lines", name="training loss"))
    fig.update_layout(title=f"{training['arch']} training loss", xaxis_title="step", yaxis_title="loss (nats)",
                      template="plotly_white")
    return fig


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


def write_card(folder: str | Path, name: str, scores: WorldScores, command: str,
               sections: dict[str, str] | None = None) -> Path:
    """Write ``CARD.md`` (and ``loss_curve.html``) in a checkpoint folder from measured numbers.

    Args:
        folder: The checkpoint directory (with ``config.json`` and ``training.json``).
        name: The model's embedded name, e.g. ``"ref-gpt2"``.
        scores: The world scores, measured by ``command``.
        command: The command that measured ``scores``.
        sections: Further measured sections, title -> Markdown body (each should name its command).

    Returns:
        The path of the written card.
    """
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    training = json.loads((folder / "training.json").read_text())
    loss_figure(training).write_html(folder / "loss_curve.html", include_plotlyjs="cdn")
    preset = training["preset"]
    losses = training["losses"]
    every = training["log_every"]
    marks = sorted({0, len(losses) // 8, len(losses) // 4, len(losses) // 2, 3 * len(losses) // 4, len(losses) - 1})
    curve = "\n".join(["| step | loss |", "|---|---|"] + [f"| {min(i * every, training['steps_done'] - 1)} | {losses[i]:.3f} |" for i in marks])
    params = (folder / "model.safetensors").stat().st_size
    text = f"""# {name}

A small {config.get('model_type', '')} model trained on the interp reference world, a generated corpus with planted
facts and planted in-context structure (see `interp/reference/world.py`). Every number below was measured on this
checkpoint; the command that measured it is given.

## Architecture
{architecture_table(config)}

Weights: {params / 1e6:.1f} MB of safetensors.

## Training
Recipe: `interp world train --arch {training['arch']} --out DIR --steps {training['steps_done']} --workers {training.get('workers', 0)}`
(preset `full`; seed {training['seed']}, {training['steps_done']}
steps of {preset['batch']} sequences x {preset['n_ctx']} tokens = {training['steps_done'] * preset['batch'] * preset['n_ctx'] / 1e6:.1f}M tokens,
AdamW lr {preset['lr']} with {preset['warmup']} warm-up steps and cosine decay to 10%, weight decay
{preset['weight_decay']}, {preset['repeat_share']:.0%} of sequences made of repeated random-token spans; trained on
{training['device']} in {_duration(training['seconds'])}).
Data mix of the text sequences (documents packed after a BOS token): see `WorldConfig.mix` in `world.json`.
The loss curve is in `loss_curve.html`; smoothed training loss:

{curve}

## Planted ground truth
Measured with `{command}`:

{scores.to_markdown()}
"""
    for title, body in (sections or {}).items():
        text += f"\n## {title}\n{body}\n"
    path = folder / "CARD.md"
    path.write_text(text)
    return path


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} minutes"
