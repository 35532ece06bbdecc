"""CLI commands ``interp trace``, ``interp edit`` and ``interp edit-eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from interp.cli.common import (
    DeviceOption,
    JsonOption,
    ModelOption,
    OverwriteOption,
    emit,
    load_or_exit,
    refuse_existing,
    user_errors,
)

FactPromptOption = Annotated[str, typer.Option("--prompt", "-p", help="Prompt with {} where the subject goes.")]
SubjectOption = Annotated[str, typer.Option("--subject", "-s", help="The subject, e.g. 'the Eiffel Tower'.")]


def trace(
    prompt: FactPromptOption,
    subject: SubjectOption,
    model: ModelOption = "ref-gpt2",
    kind: Annotated[str, typer.Option(help="resid, mlp or attn.")] = "resid",
    noise: Annotated[float, typer.Option(help="Noise scale, in embedding standard deviations.")] = 3.0,
    samples: Annotated[int, typer.Option(help="Noise draws per score.")] = 10,
    window: Annotated[int | None, typer.Option(help="Layers restored together (mlp/attn).")] = None,
    html: Annotated[Path | None, typer.Option(help="Also write the heat map to this HTML file.")] = None,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Causal trace: answer probability with each (token, layer) state restored into a subject-corrupted run."""
    from interp.tracing import causal_trace

    bridge = load_or_exit(model, device)
    with user_errors():
        result = causal_trace(bridge, prompt, subject, kind=kind, noise=noise, samples=samples, window=window)
    if html is not None:
        from interp.core.files import atomic_write_text

        atomic_write_text(html, result.figure().to_html(include_plotlyjs="cdn"))
    data = {"tokens": result.tokens, "subject": list(result.subject), "answer": result.answer, "kind": result.kind,
            "window": result.window, "clean": result.clean, "corrupted": result.corrupted,
            "scores": [[round(float(x), 6) for x in row] for row in result.scores]}
    width = max(len(repr(t)) for t in result.tokens) + 2
    lines = [f"answer {result.answer!r}: clean p={result.clean:.4f}, corrupted p={result.corrupted:.4f} "
             f"(kind {result.kind}, window {result.window})",
             " " * width + "".join(f"{'L' + str(L):>8}" for L in range(result.scores.shape[1]))]
    for t, tok in enumerate(result.tokens):
        mark = "*" if result.subject[0] <= t < result.subject[1] else " "
        lines.append(f"{mark}{tok!r:<{width - 1}}" + "".join(f"{float(x):8.4f}" for x in result.scores[t]))
    emit(data, "\n".join(lines), as_json)


def edit(
    prompt: FactPromptOption,
    subject: SubjectOption,
    target: Annotated[str, typer.Option("--target", "-t", help="New answer, e.g. ' Rome' (leading space).")],
    model: ModelOption = "ref-gpt2",
    layer: Annotated[int | None, typer.Option(help="Block to edit (default: chosen by causal tracing).")] = None,
    save: Annotated[Path | None, typer.Option(help="Write the edit to this .safetensors file.")] = None,
    overwrite: OverwriteOption = False,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rewrite one fact with ROME and show the prompt, paraphrases and neighbours before and after."""
    from interp.reference import load_world
    from interp.rome import edit as rome_edit
    from interp.rome.counterfact import case_for, prompt_table

    refuse_existing(save, overwrite)  # before the edit is computed
    bridge = load_or_exit(model, device)
    case = case_for(load_world(bridge), prompt, subject, target)
    with user_errors():
        before = prompt_table(bridge, case)
        change = rome_edit(bridge, prompt=prompt, subject=subject, target=target, layer=layer)
    after = prompt_table(bridge, case)
    if save is not None:
        change.save(save, overwrite=overwrite)
    summary = change.to_dict()
    change.undo()
    rows = [{**b, "top_after": a["top"], "p_new_after": a["p_new"], "p_true_after": a["p_true"]}
            for b, a in zip(before, after, strict=True)]
    data = {"edit": summary, "saved": str(save) if save else None, "prompts": rows}
    lines = [f"edited layer {change.layer}: {prompt.replace('{}', subject)!r} -> {target!r}"
             + (f" (saved to {save})" if save else ""), ""]
    lines.append(f"{'kind':<11}{'top before':<16}{'top after':<16}{'p(new) before':>14}{'p(new) after':>13}"
                 f"{'p(true) before':>15}{'p(true) after':>14}  prompt")
    for r in rows:
        p_true = (f"{r['p_true']:15.3f}{r['p_true_after']:14.3f}" if r["p_true"] is not None else " " * 29)
        lines.append(f"{r['kind']:<11}{r['top']!r:<16}{r['top_after']!r:<16}{r['p_new']:14.3f}"
                     f"{r['p_new_after']:13.3f}{p_true}  {r['prompt']}")
    emit(data, "\n".join(lines), as_json)


def edit_eval(
    model: ModelOption = "ref-gpt2",
    n: Annotated[int, typer.Option(help="Number of counterfactual cases.")] = 100,
    method: Annotated[str, typer.Option(help="rome, ft (constrained fine-tuning) or none (unedited).")] = "rome",
    layer: Annotated[int | None, typer.Option(
        help="Block to edit (default: chosen by causal tracing, interp.rome.choose_layer).")] = None,
    split: Annotated[str | None, typer.Option(help="dev or test split of the facts (default: all).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the case draw.")] = 0,
    fluency_tokens: Annotated[int, typer.Option(help="Tokens sampled per fluency prompt (0: skip).")] = 30,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """CounterFact-style evaluation over random counterfactual edits of reference-world facts."""
    from interp.reference import load_world
    from interp.rome import evaluate, make_cases

    bridge = load_or_exit(model, device)
    with user_errors():
        cases = make_cases(load_world(bridge), n, seed=seed, split=split)
        result = evaluate(bridge, cases, method=method, layer=layer, fluency_tokens=fluency_tokens)
    overall = result.summary()
    text = "\n\n".join([overall.to_string(index=False), result.summary("relation").to_string(),
                        result.summary("layer").to_string()])
    emit(result.to_dict(), text, as_json)


def register(app: typer.Typer) -> None:
    """Add ``trace``, ``edit`` and ``edit-eval`` to ``app``."""
    app.command()(trace)
    app.command()(edit)
    app.command("edit-eval")(edit_eval)
