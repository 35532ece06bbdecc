"""Measure the analysis sections of a reference checkpoint's CARD.md, for any number of layers and heads.

Each ``*_section`` function runs one analysis with the library calls the CLI uses and returns
``(markdown_body, numbers)``: the body names the call or command that reproduces it, and every head, layer and
sentence in it is written from the measured ``numbers`` (nothing about a particular checkpoint is assumed).
:func:`measure_all` runs them in turn for ``interp world card --measure``.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from interp.model_info import model_info
from interp.reference.evaluate import WorldScores
from interp.reference.registry import CHECKPOINTS

Section = tuple[str, dict[str, Any]]
"""``(markdown_body, numbers)`` returned by every section function."""


def heads_section(model: Any, world: dict | None = None, *, batch: int = 16, seed: int = 0, top: int = 3) -> Section:
    """Induction heads (scores, single and joint ablation) and the best previous-token head.

    Uses the defaults of ``interp induction`` (:func:`interp.find_induction_heads`: ``[BOS] + r + r``, mean
    ablation) and ``interp heads`` (:func:`interp.head_census`). ``world`` is not used; it is accepted so every
    section has the same signature.

    Args:
        model: A ``TransformerBridge``.
        world: Ignored.
        batch: Random sequences of the induction probe.
        seed: Seed of the induction probe and of the census text.
        top: Fewest heads listed (the detected induction heads and the next-best one are always listed).

    Examples:
        >>> body, numbers = heads_section(interp.load("ref-gpt2"))  # doctest: +SKIP
        >>> numbers["previous_token"]["head"]  # doctest: +SKIP
        'L0H2'
    """
    from interp.heads import head_census
    from interp.induction import find_induction_heads

    report = find_induction_heads(model, batch=batch, seed=seed)
    census = head_census(model, seed=seed)
    ranked = report.ranked()
    detected = report.heads(0.5)
    shown = ranked[: max(top, len(detected) + 1)]
    rows = [[_head(layer, head), f"{score:.3f}", f"{float(report.copying[layer, head]):.3f}",
             f"{float(report.ablation[layer, head]):+.3f}", census.labels[(layer, head)]]
            for layer, head, score in shown]
    name = _model_arg(model)
    text = [f"Measured with `interp induction --model {name}` and `interp heads --model {name}` "
            f"(`interp.find_induction_heads(model)`, `interp.head_census(model)`; [BOS] + r + r, |r| = "
            f"{report.seq_len}, batch {batch}, {report.ablation_method} ablation, seed {seed}).", "",
            _table(["head", "induction score", "copying score", "ablation alone (nats)", "census label"], rows)]

    prose = []
    singles = [float(report.ablation[layer, head]) for layer, head in detected]
    if detected:
        layers = sorted({layer for layer, _ in detected})
        prose.append(f"{len(detected)} head{'s' if len(detected) > 1 else ''} score above 0.5 as induction heads "
                     f"({', '.join(_head(*h) for h in detected)}; layer{'s' if len(layers) > 1 else ''} "
                     f"{', '.join(map(str, layers))}). Ablated together (the report's `joint_ablation`) they raise "
                     f"the second-copy loss by {report.joint_ablation:+.2f} nats (clean: {report.clean_loss:.3f} "
                     f"nats); one at a time by at most {max(singles):+.3f} nats.")
        if len(detected) > 1 and report.joint_ablation > 2 * max(max(singles), 0.0):
            prose[-1] += " They back each other up: the group matters far more than any one of them."
        if len(ranked) > len(detected):
            layer, head, score = ranked[len(detected)]
            prose[-1] += f" The next-best head, {_head(layer, head)}, scores {score:.3f}."
    else:
        layer, head, score = ranked[0]
        prose.append(f"No head scores above 0.5 as an induction head (best: {_head(layer, head)}, {score:.3f}; "
                     f"clean second-copy loss {report.clean_loss:.3f} nats).")

    prev = torch.nan_to_num(census.score("previous_token"), nan=-1.0)
    p_layer, p_head = divmod(int(prev.argmax()), prev.shape[1])
    previous = {"head": _head(p_layer, p_head), "score": float(prev[p_layer, p_head]),
                "importance": float(census.importance[p_layer, p_head]),
                "ablation": float(report.ablation[p_layer, p_head])}
    sentence = (f"The previous-token head is **{previous['head']}** (previous-token score {previous['score']:.3f}; "
                f"census importance {previous['importance']:.2f} nats; ablating it raises the second-copy loss by "
                f"{previous['ablation']:+.2f} nats)")
    if detected:
        first = min(layer for layer, _ in detected)
        sentence += (f", in layer {p_layer}, {'before' if p_layer < first else 'not before'} the earliest "
                     f"induction head (layer {first})")
    prose.append(sentence + ".")
    others = [(layer, head) for (layer, head), label in census.labels.items()
              if "previous_token" in label and (layer, head) != (p_layer, p_head)]
    if others:
        prose.append("Other heads labelled previous-token by the census: "
                     + ", ".join(f"{_head(*h)} ({float(prev[h]):.3f})" for h in others) + ".")
    counts = Counter(label.split("+")[0] for label in census.labels.values())
    prose.append(f"Census labels (threshold {census.threshold}, best behaviour first): "
                 + ", ".join(f"{n} {label}" for label, n in counts.most_common()) + ".")

    numbers = {
        "seq_len": report.seq_len, "batch": batch, "clean_loss": report.clean_loss,
        "joint_ablation": report.joint_ablation, "induction_heads": [_head(*h) for h in detected],
        "heads": [{"head": _head(layer, head), "induction": score, "copying": float(report.copying[layer, head]),
                   "ablation": float(report.ablation[layer, head]), "label": census.labels[(layer, head)]}
                  for layer, head, score in shown],
        "previous_token": previous, "labels": dict(counts),
    }
    return "\n".join(text) + "\n\n" + " ".join(prose), numbers


def lens_section(model: Any, world: dict, *, n_seqs: int = 64, seed: int = 12345, tuned: Any = None) -> Section:
    """Mean KL to the final distribution per layer (logit and tuned lens) and where facts become top-1.

    Args:
        model: A ``TransformerBridge``.
        world: The world description (``world.json``): facts and templates.
        n_seqs: Held-out sequences of world text for the KL table.
        seed: World seed of the held-out text.
        tuned: A :class:`interp.TunedLens`; default the one shipped beside the checkpoint. Without one, the
            tuned-lens rows are left out and the body says why.
    """
    from interp.lens import logit_lens
    from interp.tuned_lens import TunedLens
    from interp.world_text import world_tokens

    info = model_info(model)
    missing = None
    if tuned is None:
        try:
            tuned = TunedLens.load_for(model)
        except (FileNotFoundError, ValueError) as err:
            missing = str(err)
    lenses = {"logit": lambda prompts, **kw: logit_lens(model, prompts, **kw)}
    if tuned is not None:
        lenses["tuned"] = lambda prompts, **kw: tuned.apply(model, prompts, **kw)
    held = world_tokens(model, n_seqs, seed=seed)
    kl = {kind: [float(x) for x in run(held).kl_to_final()] for kind, run in lenses.items()}
    columns = ["embed"] + [f"after block {layer}" for layer in range(info.n_layers)]

    text = [f"Mean KL (nats) to the final distribution on held-out world text ({n_seqs} x {held.shape[1]} tokens, "
            f"world seed {seed}): `interp.logit_lens(model, held).kl_to_final()` and "
            f"`interp.TunedLens.load_for(model).apply(model, held).kl_to_final()` on "
            f"`held = interp.world_text.world_tokens(model, {n_seqs}, seed={seed})`."]
    if tuned is not None:
        meta = tuned.meta.get("training", {})
        text[0] += (f" The tuned lens was trained on {meta.get('texts', 'unknown text')}, {meta.get('tokens', '?')} "
                    f"tokens, {meta.get('steps', '?')} Adam steps at lr {meta.get('lr', '?')}.")
    else:
        text[0] += f" No tuned lens: {missing}"
    text += ["", _table(["lens", *columns], [[kind, *map(_kl, values)] for kind, values in kl.items()]), ""]
    for kind, values in kl.items():
        below = next((i for i, v in enumerate(values) if v < 1.0), None)
        if below is not None:
            text.append(f"The {kind} lens is within 1 nat of the final distribution from {columns[below]} on.")

    first_top1 = {}
    rows, modes = [], []
    for split, label in (("train", "first training template"), ("heldout", "first held-out template")):
        prompts, targets = _one_token_facts(model, world, split)
        firsts = {kind: [] for kind in lenses}
        for start in range(0, len(prompts), 128):
            chunk, ids = prompts[start:start + 128], targets[start:start + 128]
            for kind, run in lenses.items():
                firsts[kind] += run(chunk, target=ids, positions=[-1]).first_top1_layer()
        recalled = [i for i, layer in enumerate(firsts["logit"]) if layer is not None]  # the final layer is shared
        counts = {kind: [sum(values[i] == layer for i in recalled) for layer in range(len(columns))]
                  for kind, values in firsts.items()}
        first_top1[split] = {"prompts": len(prompts), "recalled": len(recalled), **counts}
        rows += [[label, kind, f"{len(recalled)}/{len(prompts)}", *map(str, counts[kind])] for kind in counts]
        for kind, values in counts.items():
            if recalled:
                mode = max(range(len(columns)), key=values.__getitem__)
                modes.append(f"{label}, {kind} lens: {columns[mode]} ({values[mode]} of {len(recalled)})")
    text += ["", "Lens layer after which the object first becomes top-1 and stays there (last token; facts with a "
             "one-token object, first template of each relation; only prompts the model answers right), with "
             "`.first_top1_layer()` of the same lenses:", "",
             _table(["templates", "lens", "recalled", *columns], rows)]
    if modes:
        text += ["", "Where most recalled facts become top-1: " + "; ".join(modes) + "."]
    numbers = {"layers": columns, "kl_logit": kl["logit"], "kl_tuned": kl.get("tuned"), "first_top1": first_top1}
    return "\n".join(text), numbers


def tracing_section(
    model: Any, world: dict, *, n_facts: int = 30, seed: int = 0, noise: float = 3.0, samples: int = 5
) -> Section:
    """Average indirect effect per layer of restoring residual and MLP states at the subject's last and last token.

    Args:
        model: A ``TransformerBridge``.
        world: The world description (``world.json``): facts and templates.
        n_facts: Facts drawn at random (seeded), each with a random training template.
        seed: Seed of the draw and of the noise.
        noise: Noise scale in embedding standard deviations.
        samples: Noise draws per score.
    """
    from interp.tracing import causal_trace

    info = model_info(model)
    rng = random.Random(seed)
    facts = rng.sample(world["facts"], min(n_facts, len(world["facts"])))
    prompts = [(rng.choice(world["templates"][f["relation"]]["train"]).replace("{subject}", "{}"), f["subject"])
               for f in facts]
    effects = {key: [] for key in ("resid_subject", "mlp_subject", "resid_last", "mlp_last")}
    clean, corrupted, window = [], [], 1
    for prompt, subject in prompts:
        for kind in ("resid", "mlp"):
            trace = causal_trace(model, prompt, subject, kind=kind, noise=noise, samples=samples, seed=seed)
            effects[f"{kind}_subject"].append(trace.indirect_effect[trace.subject_last])
            effects[f"{kind}_last"].append(trace.indirect_effect[-1])
            if kind == "resid":
                clean.append(trace.clean)
                corrupted.append(trace.corrupted)
            else:
                window = trace.window
    mean = {key: [float(x) for x in torch.stack(values).mean(0)] for key, values in effects.items()}
    labels = {"resid_subject": "residual at the subject's last token", "mlp_subject": "MLP at the subject's last token",
              "resid_last": "residual at the last token", "mlp_last": "MLP at the last token"}
    columns = [f"L{layer}" for layer in range(info.n_layers)]
    p_clean, p_corrupted = sum(clean) / len(clean), sum(corrupted) / len(corrupted)
    text = [f"Average indirect effect per layer ({len(prompts)} random facts, seed {seed}, training templates, noise "
            f"{noise:g} x std of embeddings, {samples} samples, MLP window {window}, traced answer: the model's own "
            f"top prediction; clean p = {p_clean:.3f}, corrupted p = {p_corrupted:.3f}): mean of "
            f"`interp.tracing.causal_trace(model, prompt, subject, kind=K, noise={noise:g}, samples={samples}, "
            f"seed={seed}).indirect_effect` at the subject's last token and at the last token, K = resid or mlp "
            f"(the subject rows are `interp.tracing.average_indirect_effect`).", "",
            _table(["restored state", *columns], [[labels[key], *map(_dec2, values)] for key, values in mean.items()]),
            ""]
    peak = {key: max(range(info.n_layers), key=lambda layer, k=key: mean[k][layer]) for key in mean}
    subject_mlp, last_mlp = mean["mlp_subject"][peak["mlp_subject"]], mean["mlp_last"][peak["mlp_last"]]
    early = peak["mlp_subject"] < max(1, info.n_layers // 2)
    if subject_mlp < 0.05:
        verdict = "no MLP output at the subject's last token matters much: there is no subject-site store for ROME."
    elif early and subject_mlp >= 0.3:
        verdict = (f"an early MLP at the subject's last token carries much of the fact: the site ROME edits "
                   f"(layer {peak['mlp_subject']}).")
    else:
        verdict = (f"the subject-site MLPs carry only part of the fact (best: layer {peak['mlp_subject']}).")
    text.append(f"Restoring one MLP output at the subject's last token brings back up to {subject_mlp:.2f} of the "
                f"answer probability (layer {peak['mlp_subject']}); at the last token up to {last_mlp:.2f} (layer "
                f"{peak['mlp_last']}, the late site that reads the answer out). So {verdict}")
    numbers = {"facts": prompts, "clean": p_clean, "corrupted": p_corrupted, "window": window, **mean,
               "peak_layer": peak}
    return "\n".join(text), numbers


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
        ft_config: :class:`interp.edit_eval.FinetuneConfig` (default when ``None``).
        layer_n: Cases of the per-layer table (0 leaves it out); fluency is not measured there.
        progress: Show progress bars.
    """
    from interp import edit_eval

    cases = edit_eval.make_cases(world, n, seed=seed, split=split)
    results = {method: edit_eval.evaluate(model, cases, method=method, layer=layer, config=config,
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
    rows = [[names[method], _pct(v["efficacy"], 1), f"{v['efficacy_magnitude']:.2f}", _pct(v["paraphrase"], 1),
             _pct(v["neighbourhood"], 1), _pct(v["rewrite_acc"], 1), _pct(v["fluency_drop"], 1)]
            for method, v in table.items()]
    layer_arg = "" if layer is None else f" --layer {layer}"
    split_arg = "" if split is None else f" --split {split}"
    text = [f"`interp edit-eval --model {_model_arg(model)} --n {n}{split_arg}{layer_arg} --seed {seed} "
            f"--method rome|ft|none` (`interp.edit_eval.evaluate(model, make_cases(world, {n}, seed={seed}, "
            f"split={split!r}), method=...)`; {len(cases)} counterfactual cases"
            + ("" if layer is not None else "; the edited layer chosen by `interp.rome.choose_layer`")
            + "):", "",
            _table(["method", "efficacy", "efficacy magnitude", "paraphrase", "neighbourhood", "rewrite token acc.",
                    "fluency drop"], rows), "",
            f"ROME makes the new object win on {_pct(table['rome']['efficacy'], 1)} of the rewrite prompts and "
            f"{_pct(table['rome']['paraphrase'], 1)} of the paraphrases, keeping "
            f"{_pct(table['rome']['neighbourhood'], 1)} of the neighbours; constrained fine-tuning reaches "
            f"{_pct(table['ft']['efficacy'], 1)} / {_pct(table['ft']['paraphrase'], 1)} / "
            f"{_pct(table['ft']['neighbourhood'], 1)}."]
    if any(errors.values()):
        text[-1] += (f" Edits refused (the model already answered the new object; left out of the means): "
                     f"ROME {errors['rome']}, fine-tuning {errors['ft']}.")
    scores = ("efficacy", "paraphrase", "neighbourhood")
    by_relation = results["rome"].summary(by="relation")
    per_relation = {str(rel): {m: float(row[f"post_{m}"]) for m in scores} | {"n": int(row["n"])}
                    for rel, row in by_relation.iterrows()}
    text += ["", "ROME per relation (same cases):", "",
             _table(["relation", "cases", *scores],
                    [[rel, str(v["n"]), *(_pct(v[m]) for m in scores)] for rel, v in per_relation.items()])]
    per_layer = {}
    if layer_n:
        few = edit_eval.make_cases(world, layer_n, seed=seed, split=split)
        for candidate in range(model_info(model).n_layers - 1):  # the last block cannot reach the prediction
            if candidate == layer:  # the main run's first cases are these cases, edited at this layer
                frame = results["rome"].to_frame().head(len(few))
                per_layer[candidate] = {m: float(frame[f"post_{m}"].mean()) for m in scores}
                continue
            summary = edit_eval.evaluate(model, few, layer=candidate, config=rome_config, fluency_tokens=0,
                                         progress=progress).summary().iloc[0]
            per_layer[candidate] = {m: float(summary[f"post_{m}"]) for m in scores}
        text += ["", f"ROME at each layer, first {len(few)} cases (`interp edit-eval --model {_model_arg(model)} "
                     f"--n {layer_n}{split_arg} --layer L --seed {seed} --fluency-tokens 0`):", "",
                 _table(["layer", *scores], [[str(k), *(_pct(v[m]) for m in scores)] for k, v in per_layer.items()])]
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
    import probes

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
        cells = [f"{_dec3(a)}/{_dec3(c)}/{_dec3(s)}" for a, c, s in zip(report.accuracy, control, selectivity,
                                                                          strict=True)]
        rows.append([f"{name} ({len(report.labels)} classes, majority {report.majority:.3f})", *cells,
                     str(report.best_layer)])
        numbers[name] = {"layers": report.layers, "accuracy": report.accuracy, "control": control,
                         "selectivity": selectivity, "peak": report.best_layer, "classes": len(report.labels),
                         "majority": report.majority}
    text = [f"`interp probe --model {_model_arg(model)} --task T --site {site} --seed {seed}` "
            f"(`probes.fit(model, T)`; accuracy / control accuracy / selectivity per layer, peak = the layer of "
            f"highest test accuracy; the `min_subjects=2` row is `--task city_country --min-subjects 2`, which "
            f"also keeps countries with two cities, so that each of those is learnt from one training city):", "",
            _table(["task", *[f"L{layer}" for layer in range(info.n_layers)], "peak"], rows), "",
            "Peak accuracies: " + "; ".join(
                f"{name} {_dec3(v['accuracy'][v['layers'].index(v['peak'])])} at layer {v['peak']} (selectivity "
                f"{_dec3(v['selectivity'][v['layers'].index(v['peak'])])})" for name, v in numbers.items()) + "."]
    return "\n".join(text), numbers


def embeddings_section(model: Any, world: dict, *, k: int = 5) -> Section:
    """Analogy accuracy over the world's gender pairs and the top answers to king - man + woman.

    Args:
        model: A ``TransformerBridge``.
        world: The world description (``world["tasks"]["gender_pairs"]["pairs"]``).
        k: The ``k`` of top-k accuracy and the number of answers listed.
    """
    from interp.journey.embeddings import analogy, analogy_accuracy, resolve_token

    pairs = [tuple(p) for p in world["tasks"]["gender_pairs"]["pairs"]]
    score = analogy_accuracy(model, pairs, k=k)
    skipped = f"; not single tokens, left out: {', '.join(score.skipped)}" if score.skipped else ""
    name = _model_arg(model)
    text = [f"Analogies over the world's {len(pairs)} gender pairs ({score.n} ordered questions{skipped}; "
            f"`interp.journey.analogy_accuracy(model, world['tasks']['gender_pairs']['pairs'], k={k})`):", "",
            _table(["measure", "value"], [["top-1", _pct(score.top1, 1)], [f"top-{k}", _pct(score.topk, 1)]]), ""]
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


TARGETS = {"recall_train": 0.98, "recall_heldout": 0.80, "repeat_second": 0.1, "repeat_first": 3.0,
           "agreement": 0.90, "ioi": 0.90, "efficacy": 0.99, "paraphrase": 0.85, "neighbourhood": 0.90,
           "probe_accuracy": 0.9, "probe_selectivity": 0.3}
"""Thresholds of the reference checkpoints' targets (see :func:`targets_section`)."""


def targets_section(scores: WorldScores, numbers: dict[str, dict[str, Any]]) -> Section:
    """Measured values against the reference checkpoints' targets, each marked met or missed.

    Args:
        scores: The world scores (:func:`interp.reference.evaluate.evaluate`).
        numbers: Section key -> the numbers a section returned (``"rome"`` and ``"probes"`` are read); a
            missing section's targets are marked "not measured".
    """
    t = TARGETS
    rows: list[tuple[str, str, float, bool | None, str]] = []  # what, target, value, met, how shown
    for rel, value in scores.recall_train.items():
        rows.append((f"fact recall, {rel}, training templates", f">= {t['recall_train']:.0%}", value,
                     _at_least(value, t["recall_train"]), _pct(value, 1)))
    for rel, value in scores.recall_heldout.items():
        rows.append((f"fact recall, {rel}, held-out templates", f">= {t['recall_heldout']:.0%}", value,
                     _at_least(value, t["recall_heldout"]), _pct(value, 1)))
    second, first = scores.repeat_loss_second, scores.repeat_loss_first
    rows.append(("repeated tokens, second-copy loss", f"< {t['repeat_second']} nats", second,
                 None if math.isnan(second) else second < t["repeat_second"], f"{second:.3f} nats"))
    rows.append(("repeated tokens, first-copy loss", f">= {t['repeat_first']:g} nats", first,
                 _at_least(first, t["repeat_first"]), f"{first:.3f} nats"))
    rows.append(("agreement (held-out nouns)", f">= {t['agreement']:.0%}", scores.agreement,
                 _at_least(scores.agreement, t["agreement"]), _pct(scores.agreement, 1)))
    rows.append(("indirect object, P(IO) > P(S) (held-out names)", f">= {t['ioi']:.0%}", scores.ioi,
                 _at_least(scores.ioi, t["ioi"]), _pct(scores.ioi, 1)))
    rome = numbers.get("rome", {}).get("rome", {})
    for metric in ("efficacy", "paraphrase", "neighbourhood"):
        value = rome.get(metric, math.nan)
        rows.append((f"ROME {metric}", f">= {t[metric]:.0%}", value, _at_least(value, t[metric]), _pct(value, 1)))
    probe = numbers.get("probes", {}).get("city_country")
    acc = sel = math.nan
    if probe is not None:
        i = probe["layers"].index(probe["peak"])
        acc, sel = probe["accuracy"][i], probe["selectivity"][i]
    rows.append(("city_country probe accuracy (peak layer)", f">= {t['probe_accuracy']}", acc,
                 _at_least(acc, t["probe_accuracy"]), _dec3(acc)))
    rows.append(("city_country probe selectivity (peak layer)", f">= {t['probe_selectivity']}", sel,
                 _at_least(sel, t["probe_selectivity"]), _dec3(sel)))

    status = {True: "met", False: "missed", None: "not measured"}
    table = _table(["target", "threshold", "measured", "status"],
                   [[what, target, shown if met is not None else "n/a", status[met]]
                    for what, target, _, met, shown in rows])
    missed = [what for what, _, _, met, _ in rows if met is False]
    measured = [row for row in rows if row[3] is not None]
    text = [f"Measured values from the sections above and `interp world eval` against the targets; "
            f"{len(measured) - len(missed)} of {len(measured)} measured targets are met.", "", table]
    if missed:
        text += ["", "Missed: " + "; ".join(missed) + "."]
    out = {"targets": [{"target": what, "threshold": target, "value": None if math.isnan(value) else value,
                        "status": status[met]} for what, target, value, met, _ in rows],
           "met": len(measured) - len(missed), "measured": len(measured)}
    return "\n".join(text), out


SECTIONS = {
    "heads": ("Attention heads", heads_section),
    "lens": ("Logit lens and tuned lens", lens_section),
    "tracing": ("Where facts are stored (causal tracing)", tracing_section),
    "rome": ("ROME fact edits", rome_section),
    "probes": ("Probes", probes_section),
    "embeddings": ("Embeddings", embeddings_section),
    "targets": ("Targets", targets_section),
}
"""Section key -> (card title, function), in card order."""


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
            :func:`interp.reference.evaluate.evaluate` when ``None`` and needed.

    Raises:
        ValueError: an unknown section key.

    Examples:
        >>> model = interp.load("ref-gpt2")  # doctest: +SKIP
        >>> measure_all(model, interp.reference.load_world(model), sections=["heads", "embeddings"])  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

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
                from interp.reference.evaluate import evaluate

                scores = evaluate(model, world)
            body, numbers[key] = targets_section(scores, numbers)
        elif key == "rome":
            body, numbers[key] = rome_section(model, world, layer=rome_layer, n=rome_n, progress=progress)
        else:
            body, numbers[key] = function(model, world)
        bodies[title] = body
    return bodies


def _model_arg(model: Any) -> str:
    """How the CLI names the model: the embedded name for shipped checkpoints, else the path."""
    folder = Path(str(model.cfg.model_name))
    return folder.name if folder.parent == CHECKPOINTS else str(folder)


def _one_token_facts(model: Any, world: dict, split: str) -> tuple[list[str], list[int]]:
    """Prompts from each relation's first ``split`` template for the facts whose object is one token."""
    prompts, targets = [], []
    for fact in world["facts"]:
        ids = model.tokenizer.encode(" " + fact["object"], add_special_tokens=False)
        if len(ids) == 1:
            prompts.append(world["templates"][fact["relation"]][split][0].format(subject=fact["subject"]))
            targets.append(ids[0])
    return prompts, targets


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _head(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def _at_least(value: float, threshold: float) -> bool | None:
    return None if math.isnan(value) else value >= threshold


def _pct(x: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}%}"


def _kl(x: float) -> str:
    # The last lens layer is the model's output: its KL is 0 up to rounding, shown as 0.
    return "0" if abs(x) < 5e-4 else f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.2g}"


def _dec(x: float, digits: int, zero: str) -> str:
    """``0.75`` -> ``.75``, ``-0.001`` -> ``-.001``, a value that rounds to zero -> ``zero`` (the tables' style)."""
    if math.isnan(x):
        return "n/a"
    text = f"{x:.{digits}f}"
    if float(text) == 0:
        return zero
    sign, digits_text = ("-", text[1:]) if text.startswith("-") else ("", text)
    return sign + (digits_text[1:] if digits_text.startswith("0.") else digits_text)


def _dec2(x: float) -> str:
    return _dec(x, 2, "0")


def _dec3(x: float) -> str:
    return _dec(x, 3, ".000")
