"""CounterFact-style evaluation of fact edits on the reference world, ROME against a fine-tuning baseline.

A case rewrites one planted fact ``(relation, subject, true object)`` to a new object of the same relation. It is
scored before and after the edit (Meng et al. 2022, CounterFact):

* **efficacy**: on the rewrite prompt, ``P(new) > P(true)`` (score) and ``P(new) - P(true)`` (magnitude);
* **paraphrase**: the same comparison on the relation's *held-out* templates, which never occur in training text;
* **neighbourhood**: other subjects of the same relation (those sharing the true object first), asked with the
  rewrite template; the score is the share where each keeps its own true object above the new one;
* **token accuracy**: share of target tokens that are the top-1 prediction under teacher forcing (new object on
  rewrite and paraphrase prompts, the own true object on neighbour prompts);
* **fluency**: n-gram entropy of sampled generations about the subject (CounterFact's weighting of bi- and
  tri-gram entropies); it falls when an edit makes the model repeat itself.

Probabilities of multi-token objects are ``exp(-mean token NLL)``, as in CounterFact. The baseline
(:func:`finetune`, :class:`FinetuneConfig`) lives in :mod:`interp.rome.baseline` and is re-exported here.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from interp.core.capturing import capture
from interp.core.locking import holds_model
from interp.core.model_info import model_info
from interp.core.tokens import pad_id, pad_right, tokenize
from interp.generation.decoding import generate
from interp.reference.registry import load_world
from interp.rome.apply import edit
from interp.rome.baseline import FinetuneConfig, finetune
from interp.rome.layers import choose_layer

METRICS = ("efficacy", "efficacy_magnitude", "paraphrase", "neighbourhood", "rewrite_acc", "paraphrase_acc",
           "neighbourhood_acc", "fluency")
"""Per-case metrics, each reported ``pre_`` (unedited) and ``post_`` (edited)."""


@dataclass
class EditCase:
    """One counterfactual rewrite and the prompts that check it."""

    relation: str
    """Relation of the fact, e.g. ``"landmark_city"``."""
    subject: str
    """Subject whose fact is rewritten."""
    prompt: str
    """Rewrite prompt with ``{}`` for the subject (a training template)."""
    target_true: str
    """The planted object, with a leading space."""
    target_new: str
    """The counterfactual object (another object of the same relation), with a leading space."""
    paraphrases: list[str] = field(default_factory=list)
    """Full prompts from the relation's held-out templates."""
    neighbours: list[tuple[str, str]] = field(default_factory=list)
    """``(full prompt, its own true object)`` for other subjects of the same relation."""
    generation_prompts: list[str] = field(default_factory=list)
    """Prompts about the subject whose sampled continuations measure fluency."""


@dataclass
class EditEvalResult:
    """Per-case metrics before and after editing."""

    rows: list[dict[str, Any]]
    """One dict per case: case fields, ``layer``, ``seconds``, and ``pre_``/``post_`` of every metric."""
    method: str
    """``"rome"``, ``"ft"`` (constrained fine-tuning) or ``"none"`` (unedited)."""

    def to_frame(self) -> Any:
        """One row per case."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def summary(self, by: str | None = None) -> Any:
        """Means of every metric (and ``fluency_drop``, relative), overall or grouped by ``"relation"``/``"layer"``."""
        frame = self.to_frame()
        cols = [f"{s}_{m}" for m in METRICS for s in ("pre", "post") if f"{s}_{m}" in frame]
        if by is None:
            out = frame[cols].mean().to_frame().T
            out.insert(0, "n", len(frame))
        else:
            out = frame.groupby(by)[cols].mean()
            out.insert(0, "n", frame.groupby(by).size())
        if "pre_fluency" in out and "post_fluency" in out:
            out["fluency_drop"] = (out["pre_fluency"] - out["post_fluency"]) / out["pre_fluency"]
        out.insert(0, "method", self.method)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Overall summary plus per-relation and per-layer summaries, JSON-ready."""
        return {
            "method": self.method, "overall": self.summary().iloc[0].to_dict(),
            "by_relation": self.summary("relation").drop(columns="method").to_dict(orient="index"),
            "by_layer": {
                str(k): v for k, v in self.summary("layer").drop(columns="method").to_dict(orient="index").items()
            },
        }

    def figure(self) -> Any:
        """Bar chart of efficacy, paraphrase and neighbourhood scores before and after, per relation."""
        import plotly.graph_objects as go

        table = self.summary("relation")
        fig = go.Figure()
        for metric in ("efficacy", "paraphrase", "neighbourhood"):
            for stage in ("pre", "post"):
                fig.add_bar(name=f"{metric} ({'before' if stage == 'pre' else 'after'})", x=list(table.index),
                            y=table[f"{stage}_{metric}"].tolist())
        fig.update_layout(barmode="group", title=f"Edit evaluation ({self.method}, {len(self.rows)} cases)",
                          yaxis={"title": "score", "range": [0, 1]})
        return fig


def split_facts(world: dict[str, Any], split: str | None, dev_share: float = 0.3) -> list[dict[str, str]]:
    """Facts of one split: ``"dev"`` (a seeded ``dev_share`` of each relation), ``"test"`` (the rest),
    ``None`` (all)."""
    if split not in (None, "dev", "test"):
        raise ValueError(f"split={split!r}; use 'dev', 'test' or None")
    chosen = []
    for relation in sorted({f["relation"] for f in world["facts"]}):
        facts = [f for f in world["facts"] if f["relation"] == relation]
        random.Random(relation).shuffle(facts)
        cut = round(dev_share * len(facts))
        chosen += facts if split is None else facts[:cut] if split == "dev" else facts[cut:]
    return chosen


def make_cases(
    world: dict[str, Any] | None = None,
    n: int = 100,
    *,
    seed: int = 0,
    split: str | None = None,
    relations: Sequence[str] | None = None,
    n_neighbours: int = 5,
) -> list[EditCase]:
    """Draw ``n`` counterfactual cases from a world description (``world.json``).

    Each case picks a fact at random (relations in turn, so all are covered), a new object among the relation's
    other objects, and a training template as rewrite prompt.

    Examples:
        >>> cases = make_cases(n=5, seed=0)
        >>> len(cases), all(c.target_new != c.target_true for c in cases)
        (5, True)
    """
    world = world or load_world()
    rng = random.Random(seed)
    facts = split_facts(world, split)
    rels = sorted({f["relation"] for f in facts} if relations is None else relations)
    by_rel = {r: [f for f in world["facts"] if f["relation"] == r] for r in rels}
    pool = {r: [f for f in facts if f["relation"] == r] for r in rels}
    if any(not pool[r] for r in rels):
        raise ValueError(f"relations={list(rels)}: some have no facts in split {split!r}")
    cases = []
    for i in range(n):
        relation = rels[i % len(rels)]
        fact = rng.choice(pool[relation])
        objects = sorted({f["object"] for f in by_rel[relation]} - {fact["object"]})
        new = rng.choice(objects)
        templates = world["templates"][relation]
        prompt = rng.choice(templates["train"]).replace("{subject}", "{}")
        others = [f for f in by_rel[relation] if f["subject"] != fact["subject"] and f["object"] != new]
        rng.shuffle(others)
        others.sort(key=lambda f: f["object"] != fact["object"])  # same true object first (CounterFact)
        cases.append(EditCase(
            relation=relation, subject=fact["subject"], prompt=prompt, target_true=" " + fact["object"],
            target_new=" " + new,
            paraphrases=[t.replace("{subject}", fact["subject"]) for t in templates["heldout"]],
            neighbours=[(prompt.replace("{}", f["subject"]), " " + f["object"]) for f in others[:n_neighbours]],
            generation_prompts=[f"{fact['subject']} is", prompt.replace("{}", fact["subject"])],
        ))
    return cases


def score_targets(model: Any, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, float]]:
    """For each ``(prompt, target)``: mean token NLL of the target and the share of its tokens that are top-1.

    Raises:
        ValueError: a target that encodes to no token (its mean NLL would be NaN), or a prompt plus target
            longer than the model's context window ``n_ctx``.
    """
    info = model_info(model)
    rows, spans = [], []
    for i, (prompt, target) in enumerate(pairs):
        p = tokenize(model, prompt).tokens[0].tolist()
        t = model.tokenizer.encode(target, add_special_tokens=False)
        if not t:
            raise ValueError(f"pair {i}: target={target!r} encodes to no token; there is nothing to score")
        if len(p) + len(t) > info.n_ctx:
            raise ValueError(
                f"pair {i}: prompt plus target is {len(p) + len(t)} tokens; the model's context window is "
                f"n_ctx={info.n_ctx} tokens"
            )
        rows.append(p + t)
        spans.append((len(p), len(t)))
    tokens = pad_right(rows, pad_id(model.tokenizer)).tokens
    with torch.no_grad():
        logp = model(tokens.to(info.device)).float().log_softmax(-1).cpu()
    out = []
    for i, (start, length) in enumerate(spans):
        pos = torch.arange(start - 1, start - 1 + length)
        ids = tokens[i, start : start + length]
        nll = -logp[i, pos, ids].mean()
        acc = (logp[i, pos].argmax(-1) == ids).float().mean()
        out.append((float(nll), float(acc)))
    return out


def ngram_entropy(text: str, ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)) -> float:
    """CounterFact's fluency measure: weighted mean of the word n-gram entropies (bits) of ``text``.

    Examples:
        >>> ngram_entropy("a a a a a") < ngram_entropy("the cat sat on a mat")
        True
    """
    words = text.split()
    values = []
    for n in ns:
        grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        total = sum(grams.values())
        values.append(-sum(c / total * math.log2(c / total) for c in grams.values()) if total else 0.0)
    return sum(w * v for w, v in zip(weights, values, strict=True)) / len(values)


def case_metrics(model: Any, case: EditCase, *, fluency_tokens: int = 30, seed: int = 0) -> dict[str, float]:
    """Every metric of one case on the model as it is now."""
    prompt = case.prompt.replace("{}", case.subject)
    pairs = [(prompt, case.target_new), (prompt, case.target_true)]
    pairs += [(p, t) for p in case.paraphrases for t in (case.target_new, case.target_true)]
    pairs += [(p, t) for p, own in case.neighbours for t in (own, case.target_new)]
    scores = score_targets(model, pairs)
    (new_nll, new_acc), (true_nll, _) = scores[0], scores[1]
    para = [(scores[2 + 2 * i], scores[3 + 2 * i]) for i in range(len(case.paraphrases))]
    base = 2 + 2 * len(case.paraphrases)
    neigh = [(scores[base + 2 * i], scores[base + 2 * i + 1]) for i in range(len(case.neighbours))]
    metrics = {
        "efficacy": float(new_nll < true_nll),
        "efficacy_magnitude": math.exp(-new_nll) - math.exp(-true_nll),
        "paraphrase": _mean([float(n[0] < t[0]) for n, t in para]),
        "neighbourhood": _mean([float(own[0] < new[0]) for own, new in neigh]),
        "rewrite_acc": new_acc,
        "paraphrase_acc": _mean([n[1] for n, _ in para]),
        "neighbourhood_acc": _mean([own[1] for own, _ in neigh]),
    }
    if fluency_tokens and case.generation_prompts:
        texts = [
            p + generate(model, p, max_new_tokens=fluency_tokens, top_k=5, seed=seed, stop_at_eos=False,
                         use_cache=False).text
            for p in case.generation_prompts
        ]
        metrics["fluency"] = _mean([ngram_entropy(t) for t in texts])
    return metrics


@holds_model
def evaluate(
    model: Any,
    cases: Sequence[EditCase],
    *,
    method: str = "rome",
    layer: int | None = None,
    config: Any = None,
    fluency_tokens: int = 30,
    progress: bool = True,
) -> EditEvalResult:
    """Edit each case in turn, score it before and after, and undo the edit.

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`; left as it was.
        cases: From :func:`make_cases`.
        method: ``"rome"`` (:func:`interp.rome.edit`), ``"ft"`` (:func:`finetune`) or ``"none"`` (scores the
            unedited model twice: the baseline).
        layer: Block to edit; ``None`` lets ROME choose (:func:`interp.rome.choose_layer`: causal tracing); the
            fine-tuning baseline then uses that same rule.
        config: :class:`interp.rome.RomeConfig` or :class:`FinetuneConfig`.
        fluency_tokens: Tokens sampled per generation prompt for fluency (0 skips fluency).
        progress: Show a progress bar.

    Examples:
        >>> result = evaluate(model, make_cases(n=10))  # doctest: +SKIP
        >>> result.summary()  # doctest: +SKIP
    """
    if method not in ("rome", "ft", "none"):
        raise ValueError(f"method={method!r}; use 'rome', 'ft' or 'none'")
    if not cases:
        raise ValueError("cases=[] is empty; build some with make_cases()")
    rows = []
    for case in tqdm(cases, desc=f"edit-eval ({method})", disable=not progress):
        pre = case_metrics(model, case, fluency_tokens=fluency_tokens)
        start = time.perf_counter()
        kwargs = {"prompt": case.prompt, "subject": case.subject, "target": case.target_new}
        chosen = layer if layer is not None or method == "none" else choose_layer(model, case.prompt, case.subject)
        change, error = None, ""
        try:
            if method == "rome":
                change = edit(model, layer=chosen, config=config, **kwargs)
            elif method == "ft":
                change = finetune(model, layer=chosen, config=config, **kwargs)
        except ValueError as err:  # e.g. the model already answers the new object: nothing to edit
            error = str(err)
        seconds = time.perf_counter() - start
        try:
            post = (
                case_metrics(model, case, fluency_tokens=fluency_tokens) if not error else dict.fromkeys(pre, math.nan)
            )
        finally:
            if change is not None:
                change.undo()
        row = {"relation": case.relation, "subject": case.subject, "prompt": case.prompt,
               "target_true": case.target_true, "target_new": case.target_new, "layer": chosen, "seconds": seconds,
               "error": error}
        row.update({f"pre_{k}": v for k, v in pre.items()})
        row.update({f"post_{k}": v for k, v in post.items()})
        rows.append(row)
    return EditEvalResult(rows=rows, method=method)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def case_for(world: dict[str, Any], prompt: str, subject: str, target: str, n_neighbours: int = 5) -> EditCase:
    """An :class:`EditCase` for a free-form request: paraphrases and neighbours come from ``world`` when the
    prompt is one of a relation's templates and the subject one of its facts, else the case has only the prompt.
    """
    template = prompt.replace("{}", "{subject}")
    for relation, templates in world["templates"].items():
        facts = {f["subject"]: f["object"] for f in world["facts"] if f["relation"] == relation}
        if template in templates["train"] + templates["heldout"] and subject in facts:
            others = [s for s, o in facts.items() if s != subject and " " + o != target]
            others.sort(key=lambda s: facts[s] != facts[subject])
            return EditCase(
                relation=relation, subject=subject, prompt=prompt, target_true=" " + facts[subject], target_new=target,
                paraphrases=[t.replace("{subject}", subject) for t in templates["heldout"] if t != template],
                neighbours=[(prompt.replace("{}", s), " " + facts[s]) for s in others[:n_neighbours]],
                generation_prompts=[f"{subject} is"],
            )
    return EditCase(relation="", subject=subject, prompt=prompt, target_true="", target_new=target)


def prompt_table(model: Any, case: EditCase) -> list[dict[str, Any]]:
    """Each prompt of a case (rewrite, paraphrases, neighbours) with the model's top token and the probabilities
    (``exp(-mean token NLL)``) of the new object and of the prompt's true object, where known."""
    prompts = [("rewrite", case.prompt.replace("{}", case.subject), case.target_true)]
    prompts += [("paraphrase", p, case.target_true) for p in case.paraphrases]
    prompts += [("neighbour", p, own) for p, own in case.neighbours]
    pairs = [(p, case.target_new) for _, p, _ in prompts] + [(p, t) for _, p, t in prompts if t]
    scores = score_targets(model, pairs)
    true_scores = iter(scores[len(prompts) :])
    top = [_top_token(model, p) for _, p, _ in prompts]
    rows = []
    for (kind, prompt, true), (nll_new, _), best in zip(prompts, scores[: len(prompts)], top, strict=True):
        row = {"kind": kind, "prompt": prompt, "top": best, "p_new": math.exp(-nll_new), "true": true}
        row["p_true"] = math.exp(-next(true_scores)[0]) if true else None
        rows.append(row)
    return rows


def _top_token(model: Any, prompt: str) -> str:
    """The model's most likely next token after ``prompt``."""
    return model.tokenizer.decode([int(capture(model, prompt, names=[]).last_logits[0].argmax())])


__all__ = [
    "METRICS",
    "EditCase",
    "EditEvalResult",
    "FinetuneConfig",
    "case_for",
    "case_metrics",
    "evaluate",
    "finetune",
    "make_cases",
    "ngram_entropy",
    "prompt_table",
    "score_targets",
    "split_facts",
]
