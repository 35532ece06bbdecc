"""The card's sections on how a reference model computes: attention heads, the logit and tuned lens, and tracing.

Each ``*_section`` function runs one analysis with the library calls the CLI uses and returns
``(markdown_body, numbers)`` (:data:`interp.cards.tables.Section`); :data:`interp.cards.measure.SECTIONS` lists
them in card order.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import torch

from interp.cards.tables import Section, dec2, head_label, kl_cell, markdown_table, model_arg
from interp.core.model_info import model_info
from interp.heads import find_induction_heads, head_census
from interp.lens import TunedLens, logit_lens
from interp.reference.world_text import world_tokens
from interp.tracing import causal_trace


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
    report = find_induction_heads(model, batch=batch, seed=seed)
    census = head_census(model, seed=seed)
    ranked = report.ranked()
    detected = report.heads(0.5)
    shown = ranked[: max(top, len(detected) + 1)]
    rows = [[head_label(layer, head), f"{score:.3f}", f"{float(report.copying[layer, head]):.3f}",
             f"{float(report.ablation[layer, head]):+.3f}", census.labels[(layer, head)]]
            for layer, head, score in shown]
    name = model_arg(model)
    text = [f"Measured with `interp induction --model {name}` and `interp heads --model {name}` "
            f"(`interp.find_induction_heads(model)`, `interp.head_census(model)`; [BOS] + r + r, |r| = "
            f"{report.seq_len}, batch {batch}, {report.ablation_method} ablation, seed {seed}).", "",
            markdown_table(["head", "induction score", "copying score", "ablation alone (nats)", "census label"],
                           rows)]

    prose = []
    singles = [float(report.ablation[layer, head]) for layer, head in detected]
    if detected:
        layers = sorted({layer for layer, _ in detected})
        prose.append(f"{len(detected)} head{'s' if len(detected) > 1 else ''} score above 0.5 as induction heads "
                     f"({', '.join(head_label(*h) for h in detected)}; layer{'s' if len(layers) > 1 else ''} "
                     f"{', '.join(map(str, layers))}). Ablated together (the report's `joint_ablation`) they raise "
                     f"the second-copy loss by {report.joint_ablation:+.2f} nats (clean: {report.clean_loss:.3f} "
                     f"nats); one at a time by at most {max(singles):+.3f} nats.")
        if len(detected) > 1 and report.joint_ablation > 2 * max(max(singles), 0.0):
            prose[-1] += " They back each other up: the group matters far more than any one of them."
        if len(ranked) > len(detected):
            layer, head, score = ranked[len(detected)]
            prose[-1] += f" The next-best head, {head_label(layer, head)}, scores {score:.3f}."
    else:
        layer, head, score = ranked[0]
        prose.append(f"No head scores above 0.5 as an induction head (best: {head_label(layer, head)}, {score:.3f}; "
                     f"clean second-copy loss {report.clean_loss:.3f} nats).")

    prev = torch.nan_to_num(census.score("previous_token"), nan=-1.0)
    p_layer, p_head = divmod(int(prev.argmax()), prev.shape[1])
    previous = {"head": head_label(p_layer, p_head), "score": float(prev[p_layer, p_head]),
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
                     + ", ".join(f"{head_label(*h)} ({float(prev[h]):.3f})" for h in others) + ".")
    counts = Counter(label.split("+")[0] for label in census.labels.values())
    prose.append(f"Census labels (threshold {census.threshold}, best behaviour first): "
                 + ", ".join(f"{n} {label}" for label, n in counts.most_common()) + ".")

    numbers = {
        "seq_len": report.seq_len, "batch": batch, "clean_loss": report.clean_loss,
        "joint_ablation": report.joint_ablation, "induction_heads": [head_label(*h) for h in detected],
        "heads": [{"head": head_label(layer, head), "induction": score, "copying": float(report.copying[layer, head]),
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
            f"`held = interp.reference.world_text.world_tokens(model, {n_seqs}, seed={seed})`."]
    if tuned is not None:
        meta = tuned.meta.get("training", {})
        text[0] += (f" The tuned lens was trained on {meta.get('texts', 'unknown text')}, {meta.get('tokens', '?')} "
                    f"tokens, {meta.get('steps', '?')} Adam steps at lr {meta.get('lr', '?')}.")
    else:
        text[0] += f" No tuned lens: {missing}"
    kl_rows = [[kind, *map(kl_cell, values)] for kind, values in kl.items()]
    text += ["", markdown_table(["lens", *columns], kl_rows), ""]
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
             markdown_table(["templates", "lens", "recalled", *columns], rows)]
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
            markdown_table(["restored state", *columns],
                           [[labels[key], *map(dec2, values)] for key, values in mean.items()]),
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


def _one_token_facts(model: Any, world: dict, split: str) -> tuple[list[str], list[int]]:
    """Prompts from each relation's first ``split`` template for the facts whose object is one token."""
    prompts, targets = [], []
    for fact in world["facts"]:
        ids = model.tokenizer.encode(" " + fact["object"], add_special_tokens=False)
        if len(ids) == 1:
            prompts.append(world["templates"][fact["relation"]][split][0].format(subject=fact["subject"]))
            targets.append(ids[0])
    return prompts, targets

