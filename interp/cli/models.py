"""CLI commands ``interp models`` and ``interp capture``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from interp.cli.common import (
    DEFAULT_PROMPT,
    DeviceOption,
    JsonOption,
    ModelOption,
    PromptOption,
    emit,
    load_or_exit,
    user_errors,
)


def models(as_json: JsonOption = False) -> None:
    """List the embedded reference models and whether their checkpoints are present."""
    from interp.reference import names, path
    from interp.reference.registry import CHECKPOINTS

    rows = []
    for name in names():
        try:
            rows.append({"name": name, "present": True, "path": str(path(name))})
        except FileNotFoundError:
            rows.append({"name": name, "present": False, "path": str(CHECKPOINTS / name)})
    text = "\n".join(f"{r['name']:<12} {'present' if r['present'] else 'missing':<8} {r['path']}" for r in rows)
    emit(rows, text, as_json)


def capture(
    model: ModelOption = "ref-gpt2",
    prompt: PromptOption = DEFAULT_PROMPT,
    names: Annotated[
        list[str] | None,
        typer.Option("--names", "-n", help="Aliases or hook names (repeat or comma-separate); default: resid."),
    ] = None,
    top: Annotated[int, typer.Option(help="How many next-token predictions to show.")] = 5,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run one prompt and summarise each captured hook: shape and norm per position."""
    from interp.core import capture as run_capture

    wanted = [n.strip() for item in names or ["resid"] for n in item.split(",") if n.strip()]
    bridge = load_or_exit(model, device)
    with user_errors():
        cap = run_capture(bridge, prompt, names=wanted)
    probs = cap.last_logits[0].float().softmax(-1)
    best = probs.topk(min(top, probs.shape[0]))
    predictions = [
        {"token": cap.tokenizer.decode([int(i)]), "id": int(i), "prob": round(float(p), 6)}
        for p, i in zip(best.values, best.indices, strict=True)
    ]
    hooks = {name: {"shape": list(x.shape), "norm": _norms_per_position(name, x)}
             for name, x in cap.activations.items()}
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

    from interp.core.hooks import site_of

    row = x[0].float()
    if site_of(name) in ("pattern", "scores"):
        row = row.transpose(0, 1)  # [head q k] -> [q head k]
        row = row.masked_fill(row <= torch.finfo(x.dtype).min, 0.0)  # masked scores are finfo.min
    return [round(float(v), 5) for v in row.reshape(row.shape[0], -1).norm(dim=-1)]


def register(app: typer.Typer) -> None:
    """Add ``models`` and ``capture`` to ``app``."""
    app.command()(models)
    app.command()(capture)
