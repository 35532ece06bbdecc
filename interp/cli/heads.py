"""CLI commands ``interp induction``, ``interp heads`` and ``interp lens``."""

from __future__ import annotations

from typing import Annotated

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


def induction(
    model: ModelOption = "ref-gpt2",
    seq_len: Annotated[int | None, typer.Option(
        help="Random span length (default: longest that fits, <= 32).")] = None,
    batch: Annotated[int, typer.Option(help="Number of random sequences.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the random spans.")] = 0,
    ablation: Annotated[str, typer.Option(help="'mean' or 'zero' ablation.")] = "mean",
    no_ablate: Annotated[bool, typer.Option("--no-ablate", help="Skip the ablation passes.")] = False,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rank attention heads as induction heads on [BOS] + r + r random-token sequences."""
    from interp.heads import find_induction_heads

    bridge = load_or_exit(model, device)
    with user_errors():
        report = find_induction_heads(bridge, seq_len=seq_len, batch=batch, seed=seed, ablate=not no_ablate,
                                      ablation=ablation)
    emit(report.to_json(), str(report), as_json)


def heads(
    model: ModelOption = "ref-gpt2",
    prompt: Annotated[list[str] | None, typer.Option(
        "--prompt", "-p", help="Prompt(s); default: reference-world text.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the default text.")] = 0,
    threshold: Annotated[float, typer.Option(help="Score a behaviour needs to enter a label.")] = 0.4,
    no_importance: Annotated[bool, typer.Option("--no-importance", help="Skip the ablation passes.")] = False,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Label every attention head (previous-token, duplicate, induction, BOS, self, local, other)."""
    from interp.heads import head_census

    bridge = load_or_exit(model, device)
    with user_errors():
        census = head_census(bridge, prompt or None, seed=seed, threshold=threshold, importance=not no_importance)
    emit(census.to_json(), str(census), as_json)


def lens(
    model: ModelOption = "ref-gpt2",
    prompt: PromptOption = DEFAULT_PROMPT,
    target: Annotated[str | None, typer.Option(help="One-token target to follow across layers, e.g. ' Paris'.")] = None,
    tuned: Annotated[bool, typer.Option("--tuned", help="Use the tuned lens shipped beside the checkpoint.")] = False,
    top: Annotated[int, typer.Option(help="Top tokens shown per layer.")] = 3,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """What each layer predicts at the last position (logit lens, or tuned lens with --tuned)."""
    from interp.lens import TunedLens, logit_lens

    bridge = load_or_exit(model, device)
    with user_errors(ValueError, FileNotFoundError):
        if tuned:
            result = TunedLens.load_for(bridge).apply(bridge, prompt, target=target)
        else:
            result = logit_lens(bridge, prompt, target=target)
    kl = result.kl_to_final().tolist()
    tops = result.top_tokens(top)
    prob = result.prob()[:, 0, -1].tolist() if target is not None else None
    rank = result.rank()[:, 0, -1].tolist() if target is not None else None
    layers = []
    for i, name in enumerate(result.layer_names):
        row = {"layer": name, "top": [{"token": t, "prob": round(p, 6)} for t, p in tops[i]],
               "kl_to_final": round(kl[i], 6)}
        if target is not None:
            row |= {"target_prob": round(prob[i], 6), "target_rank": int(rank[i])}
        layers.append(row)
    data = {"model": bridge.cfg.model_name, "lens": result.lens, "prompt": prompt, "target": target,
            "final_norm_applied": result.final_norm_applied, "str_tokens": result.str_tokens[0], "layers": layers}
    if target is not None:
        data["first_top1_layer"] = _name(result.layer_names, result.first_top1_layer()[0])
    lines = [f"{result.lens} lens of {bridge.cfg.model_name} on {prompt!r} (last position)"]
    for row in layers:
        best = ", ".join(f"{t['token']!r} {t['prob']:.3f}" for t in row["top"])
        extra = f"  target p={row['target_prob']:.3f} rank={row['target_rank']}" if target is not None else ""
        lines.append(f"{row['layer']:>6}  KL {row['kl_to_final']:.3f}  {best}{extra}")
    if target is not None:
        lines.append(f"{target!r} is top-1 from layer {data['first_top1_layer']} on")
    emit(data, "\n".join(lines), as_json)


def _name(names: list[str], index: int | None) -> str | None:
    return None if index is None else names[index]


def register(app: typer.Typer) -> None:
    """Add ``induction``, ``heads`` and ``lens`` to ``app``."""
    app.command()(induction)
    app.command()(heads)
    app.command()(lens)
