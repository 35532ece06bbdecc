"""The card's sections on what a reference model stores: ROME fact edits, linear probes, and embedding analogies.

Each ``*_section`` function runs one analysis with the library calls the CLI uses and returns
``(markdown_body, numbers)`` (:data:`interp.cards.tables.Section`); :data:`interp.cards.measure.SECTIONS` lists
them in card order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import probes
from interp.cards.tables import Section, dec3, markdown_table, model_arg, pct
from interp.core.model_info import model_info
from interp.journey import analogy, analogy_accuracy
from interp.journey.embeddings import resolve_token
from interp.rome import counterfact


def rome_section(
    model: Any,
    world: dict,
    *,
    layer: int | None = None,
    n: int = 100,
    split: str = "test",
    seed: int = 0,
    fluency_tokens: int = 30,
    rome_config: Any = None,
    ft_config: Any = None,
    layer_n: int = 25,
    progress: bool = True,
) -> Section:
    """The edit-eval table (unedited, ROME, constrained fine-tuning), ROME per relation, and ROME per layer.

    The first table is what ``interp edit-eval`` measures; the per-layer one edits every layer but the last on
    the first ``layer_n`` cases (at ``layer`` it reuses those cases' rows of the main run instead of editing again).

    The unedited row is the ``pre_`` scores of the ROME run (the same cases scored before editing, which is
    what ``--method none`` reports).

    Args:
        model: A ``TransformerBridge``; every edit is undone.
        world: The world description (``world.json``).
        layer: Block to edit; ``None`` (the CLI's default) lets :func:`interp.rome.choose_layer` choose.
        n: Counterfactual cases.
        split: ``"dev"``, ``"test"`` or ``None`` (all facts).
        seed: Seed of the case draw.
        fluency_tokens: Tokens sampled per fluency prompt (0 skips fluency).
        rome_config: :class:`interp.rome.RomeConfig` (default hyperparameters when ``None``).
        ft_config: :class:`interp.rome.counterfact.FinetuneConfig` (default when ``None``).
        layer_n: Cases of the per-layer table (0 leaves it out); fluency is not measured there.
        progress: Show progress bars.
    """
    cases = counterfact.make_cases(world, n, seed=seed, split=split)
    results = {method: counterfact.evaluate(model, cases, method=method, layer=layer, config=config,
                                            fluency_tokens=fluency_tokens, progress=progress)
               for method, config in (("rome", rome_config), ("ft", ft_config))}
    metrics = ("efficacy", "efficacy_magnitude", "paraphrase", "neighbourhood", "rewrite_acc")
    rome_summary = results["rome"].summary().iloc[0]
    table = {"unedited": {m: float(rome_summary[f"pre_{m}"]) for m in metrics}}
    table["unedited"]["fluency_drop"] = 0.0 if fluency_tokens else math.nan
    for method, result in results.items():
        summary = result.summary().iloc[0]
        table[method] = {m: float(summary[f"post_{m}"]) for m in metrics}
        table[method]["fluency_drop"] = float(summary["fluency_drop"]) if "fluency_drop" in summary else math.nan
    used = Counter(int(row["layer"]) for row in results["rome"].rows)
    where = f"layer {layer}" if layer is not None else "layers chosen by tracing: " + ", ".join(
        f"L{k} x{v}" for k, v in sorted(used.items()))
    errors = {method: sum(bool(row["error"]) for row in result.rows) for method, result in results.items()}
    names = {"unedited": "unedited", "rome": f"ROME ({where})", "ft": "constrained fine-tuning"}
    rows = [[names[method], pct(v["efficacy"], 1), f"{v['efficacy_magnitude']:.2f}", pct(v["paraphrase"], 1),
             pct(v["neighbourhood"], 1), pct(v["rewrite_acc"], 1), pct(v["fluency_drop"], 1)]
            for method, v in table.items()]
    layer_arg = "" if layer is None else f" --layer {layer}"
    split_arg = "" if split is None else f" --split {split}"
    text = [f"`interp edit-eval --model {model_arg(model)} --n {n}{split_arg}{layer_arg} --seed {seed} "
            f"--method rome|ft|none` (`interp.rome.counterfact.evaluate(model, make_cases(world, {n}, seed={seed}, "
            f"split={split!r}), method=...)`; {len(cases)} counterfactual cases"
            + ("" if layer is not None else "; the edited layer chosen by `interp.rome.choose_layer`")
            + "):", "",
            markdown_table(["method", "efficacy", "efficacy magnitude", "paraphrase", "neighbourhood",
                            "rewrite token acc.", "fluency drop"], rows), "",
            f"ROME makes the new object win on {pct(table['rome']['efficacy'], 1)} of the rewrite prompts and "
            f"{pct(table['rome']['paraphrase'], 1)} of the paraphrases, keeping "
            f"{pct(table['rome']['neighbourhood'], 1)} of the neighbours; constrained fine-tuning reaches "
            f"{pct(table['ft']['efficacy'], 1)} / {pct(table['ft']['paraphrase'], 1)} / "
            f"{pct(table['ft']['neighbourhood'], 1)}."]
    if any(errors.values()):
        text[-1] += (f" Edits refused (the model already answered the new object; left out of the means): "
                     f"ROME {errors['rome']}, fine-tuning {errors['ft']}.")
    scores = ("efficacy", "paraphrase", "neighbourhood")
    by_relation = results["rome"].summary(by="relation")
    per_relation = {str(rel): {m: float(row[f"post_{m}"]) for m in scores} | {"n": int(row["n"])}
                    for rel, row in by_relation.iterrows()}
    text += ["", "ROME per relation (same cases):", "",
             markdown_table(["relation", "cases", *scores],
                            [[rel, str(v["n"]), *(pct(v[m]) for m in scores)] for rel, v in per_relation.items()])]
    per_layer = {}
    if layer_n:
        few = counterfact.make_cases(world, layer_n, seed=seed, split=split)
        for candidate in range(model_info(model).n_layers - 1):  # the last block cannot reach the prediction
            if candidate == layer:  # the main run's first cases are these cases, edited at this layer
                frame = results["rome"].to_frame().head(len(few))
                per_layer[candidate] = {m: float(frame[f"post_{m}"].mean()) for m in scores}
                continue
            summary = counterfact.evaluate(model, few, layer=candidate, config=rome_config, fluency_tokens=0,
                                           progress=progress).summary().iloc[0]
            per_layer[candidate] = {m: float(summary[f"post_{m}"]) for m in scores}
        text += ["", f"ROME at each layer, first {len(few)} cases (`interp edit-eval --model {model_arg(model)} "
                     f"--n {layer_n}{split_arg} --layer L --seed {seed} --fluency-tokens 0`):", "",
                 markdown_table(["layer", *scores],
                                [[str(k), *(pct(v[m]) for m in scores)] for k, v in per_layer.items()])]
    numbers = {"n": len(cases), "split": split, "seed": seed, "layer": layer, "layers_used": dict(used),
               "errors": errors, **table, "per_relation": per_relation, "per_layer": per_layer}
    return "\n".join(text), numbers


def probes_section(model: Any, world: dict, *, site: str = "resid_post", seed: int = 0,
                   tasks: Sequence[str] | None = None) -> Section:
    """Probe accuracy, control accuracy and selectivity per layer for each reference-world task (``interp probe``).

    Args:
        model: A ``TransformerBridge``.
        world: The world description the tasks are built from.
        site: Where the probes read (``interp probe --site``).
        seed: Seed of the prompts, split and control labels.
        tasks: Task names; default all of :data:`probes.TASKS`.
    """
    info = model_info(model)
    rows, numbers = [], {}
    # city_country is also measured with countries of two cities kept, so the card shows what a
    # probe learnt from a single training city does (the task's default needs two, see probes.world_tasks).
    runs = []  # (row name, task, options)
    for task_name in tasks or probes.TASKS:
        runs.append((task_name, task_name, {}))
        if task_name == "city_country":
            runs.append(("city_country, min_subjects=2", task_name, {"min_subjects": 2}))
    for name, task_name, options in runs:
        task = probes.world_task(task_name, model, world=world, seed=seed, **options)
        report = probes.fit(model, task, site=site, seed=seed)
        control = report.control_accuracy
        selectivity = report.selectivity
        cells = [f"{dec3(a)}/{dec3(c)}/{dec3(s)}" for a, c, s in zip(report.accuracy, control, selectivity,
                                                                          strict=True)]
        rows.append([f"{name} ({len(report.labels)} classes, majority {report.majority:.3f})", *cells,
                     str(report.best_layer)])
        numbers[name] = {"layers": report.layers, "accuracy": report.accuracy, "control": control,
                         "selectivity": selectivity, "peak": report.best_layer, "classes": len(report.labels),
                         "majority": report.majority}
    text = [f"`interp probe --model {model_arg(model)} --task T --site {site} --seed {seed}` "
            f"(`probes.fit(model, T)`; accuracy / control accuracy / selectivity per layer, peak = the layer of "
            f"highest test accuracy; the `min_subjects=2` row is `--task city_country --min-subjects 2`, which "
            f"also keeps countries with two cities, so that each of those is learnt from one training city):", "",
            markdown_table(["task", *[f"L{layer}" for layer in range(info.n_layers)], "peak"], rows), "",
            "Peak accuracies: " + "; ".join(
                f"{name} {dec3(v['accuracy'][v['layers'].index(v['peak'])])} at layer {v['peak']} (selectivity "
                f"{dec3(v['selectivity'][v['layers'].index(v['peak'])])})" for name, v in numbers.items()) + "."]
    return "\n".join(text), numbers


def embeddings_section(model: Any, world: dict, *, k: int = 5) -> Section:
    """Analogy accuracy over the world's gender pairs and the top answers to king - man + woman.

    Args:
        model: A ``TransformerBridge``.
        world: The world description (``world["tasks"]["gender_pairs"]["pairs"]``).
        k: The ``k`` of top-k accuracy and the number of answers listed.
    """
    pairs = [tuple(p) for p in world["tasks"]["gender_pairs"]["pairs"]]
    score = analogy_accuracy(model, pairs, k=k)
    skipped = f"; not single tokens, left out: {', '.join(score.skipped)}" if score.skipped else ""
    name = model_arg(model)
    text = [f"Analogies over the world's {len(pairs)} gender pairs ({score.n} ordered questions{skipped}; "
            f"`interp.journey.analogy_accuracy(model, world['tasks']['gender_pairs']['pairs'], k={k})`):", "",
            markdown_table(["measure", "value"], [["top-1", pct(score.top1, 1)], [f"top-{k}", pct(score.topk, 1)]]), ""]
    numbers: dict[str, Any] = {"pairs": len(pairs), "questions": score.n, "top1": score.top1, "topk": score.topk,
                               "k": k, "king_man_woman": None, "queen_rank": None}
    try:
        ranked = analogy(model, "king", "man", "woman", k=int(model.cfg.d_vocab))
    except ValueError as err:
        text.append(f"`interp analogy king man woman --model {name}`: not measurable ({err}).")
    else:
        numbers["king_man_woman"] = [t.strip() for t in ranked.tokens[:k]]
        try:
            queen = ranked.ids.tolist().index(resolve_token(model, "queen")) + 1
        except ValueError:
            queen = None
        numbers["queen_rank"] = queen
        text.append(f"`interp analogy king man woman --model {name}`: {', '.join(numbers['king_man_woman'])}"
                    + ("" if queen is None else f" (queen ranks {queen})") + ".")
    return "\n".join(text), numbers

