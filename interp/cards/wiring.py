"""The card's "Circuits" section: how the heads are wired, each edge measured by path patching.

Two circuits, both found by measurement (no head index is assumed):

- **Induction**: on ``[BOS] + r + r`` (corrupted: ``[BOS]`` + a fresh random sequence of the same length, no
  repeat), the head whose path to the logits carries most of the second-copy log-probability is the induction
  head; the head whose path into that head's *keys* carries most is the previous-token head (K-composition).
- **Indirect object** (Wang et al. 2022): the world's IOI prompts against ABC prompts (the three names replaced by
  three other names). Name movers are the heads with the largest path to the logits (metric: logit difference
  indirect object - subject); S-inhibition heads are those with the largest paths into the name movers' queries.
  Attention at the last token checks the roles: name movers should attend to the indirect object, S-inhibition
  heads to the second mention of the subject.

``circuits_section`` returns ``(markdown_body, numbers)`` like the other sections (:mod:`interp.cards.measure`).
"""

from __future__ import annotations

import random
import re
from typing import Any

import torch

from interp.cards.tables import Section, dec, dec2, markdown_table, model_arg
from interp.core.capturing import capture
from interp.core.hooks import hook_name
from interp.core.model_info import model_info
from interp.core.tokens import to_single_token, tokenize
from interp.heads import find_induction_heads, repeated_random_tokens
from interp.patching import parse_receiver, path_patching
from interp.reference import load_world

_ROLE_SHARE = 0.05
"""Smallest share of the clean-corrupted gap for a head to be given a role (name mover, S-inhibition...)."""
_NAME_ATTENTION = 0.1
"""Least attention from the last token to the names for a head to be called a name mover or subject inhibitor."""


def circuits_section(
    model: Any, world: dict | None = None, *, n_prompts: int = 16, seq_len: int | None = None, seed: int = 0,
    top: int = 3, progress: bool = False,
) -> Section:
    """The induction circuit and the indirect-object circuit, each edge with its path-patching effect.

    Args:
        model: A ``TransformerBridge``.
        world: The world description (``world.json``); default :func:`interp.reference.load_world`.
        n_prompts: Prompts of each task.
        seq_len: Length of ``r`` in the induction prompts (default ``min(20, (n_ctx - 1) // 2)``).
        seed: Seed of the random sequences and of the ABC names.
        top: Most heads named per role.
        progress: Show the path-patching progress bars.

    Examples:
        >>> body, numbers = circuits_section(interp.load("ref-gpt2"))  # doctest: +SKIP
        >>> numbers["induction"]["previous_token_head"]  # doctest: +SKIP
    """
    world = load_world(model) if world is None else world
    induction_text, induction = _induction(model, n_prompts, seq_len, seed, top, progress)
    ioi_text, ioi = _ioi(model, world, n_prompts, seed, top, progress)
    name = model_arg(model)
    intro = (f"Edges measured by path patching (Wang et al. 2022: the clean run with one sender's output taken from "
             f"the corrupted run and every other head frozen, the change reaching only the receiver), "
             f"`interp.patching.path_patching(model, clean, corrupted, receivers, senders, metric)` on `{name}`. "
             "*Share* is (clean - patched) / (clean - corrupted): the part of the clean-corrupted gap the edge "
             "carries.")
    body = [intro, "**Induction circuit.** " + induction_text, "**Indirect-object circuit.** " + ioi_text]
    return "\n\n".join(body), {"induction": induction, "ioi": ioi}


def _induction(model: Any, n: int, seq_len: int | None, seed: int, top: int, progress: bool) -> tuple[str, dict]:
    info = model_info(model)
    length = min(20, (info.n_ctx - 1) // 2) if seq_len is None else seq_len
    clean = repeated_random_tokens(model, length, n, seed=seed)
    corrupted = repeated_random_tokens(model, 2 * length, n, seed=seed + 1)[:, : 2 * length + 1]
    targets = clean[:, length + 2:]  # the second copy's tokens after its first, predicted from position length + 1

    def second_copy_logit(logits: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        # The centred logit, not the log-probability: the clean model predicts the second copy almost surely, and
        # a saturated softmax would hide what any one path adds.
        scores = logits[:, length + 1:-1].float()
        picked = scores.gather(-1, targets.to(logits.device)[..., None])[..., 0]
        return (picked - scores.mean(-1)).mean(-1)

    heads = [f"a{layer}.h{h}" for layer in range(info.n_layers) for h in range(info.n_heads)]
    kw = dict(metric=second_copy_logit, progress=progress)
    to_logits = path_patching(model, clean, corrupted, "logits", heads, **kw)
    gap = to_logits.clean_metric - to_logits.corrupted_metric
    # The induction heads are the detector's (interp.find_induction_heads on the same kind of prompt); they back
    # each other up, so the card follows the best few rather than looking for one that carries everything.
    report = find_induction_heads(model, seq_len=length, batch=n, seed=seed, ablate=False, progress=progress)
    direct = dict(to_logits.ranked())
    induction_scores = {f"a{layer}.h{head}": score for layer, head, score in report.ranked()}
    inductors = [(f"a{layer}.h{head}", direct[f"a{layer}.h{head}"])
                 for layer, head in report.heads(0.5) if layer > 0][:top]
    numbers: dict[str, Any] = {"seq_len": length, "n_prompts": n, "clean": to_logits.clean_metric,
                               "corrupted": to_logits.corrupted_metric, "to_logits": to_logits.ranked()[:top],
                               "induction_heads": inductors, "previous_token_head": None, "keys": {}}
    prose = (f"Metric: the second copy's next-token logits, each minus the mean logit (clean "
             f"{to_logits.clean_metric:.2f}, corrupted {to_logits.corrupted_metric:.2f}; |r| = {length}, {n} prompts, "
             f"seed {seed}). Induction heads (`interp.find_induction_heads`, score above 0.5, best first, outside "
             "layer 0): " + (", ".join(f"**{_head(h)}** (induction score {induction_scores[h]:.2f}, direct path share "
                                      f"{share3(s)})" for h, s in inductors) or "none") + ". "
             "Largest direct paths to the logits of any head: "
             + ", ".join(f"{_head(h)} ({share3(s)})" for h, s in to_logits.ranked()[:top]) + ".")
    if not inductors:
        return prose, numbers
    inputs = {kind: {h: parse_receiver(info, f"{h}<{kind}>").name for h, _ in inductors} for kind in "qkv"}
    receivers = list(dict.fromkeys(r for per_head in inputs.values() for r in per_head.values()))
    earlier = [h for h in heads if _layer(h) < max(_layer(h) for h, _ in inductors)]
    into = path_patching(model, clean, corrupted, receivers, earlier, **kw)
    key_totals: dict[str, float] = {}
    for receiver in dict.fromkeys(inputs["k"].values()):  # once per key/value head, however many heads read it
        for sender, share in into.ranked(receiver):
            key_totals[sender] = key_totals.get(sender, 0.0) + share
    previous = max(key_totals, key=key_totals.get)
    numbers["previous_token_head"] = previous
    rows: list[list[str]] = []
    for h, share in inductors:
        best = {kind: into.ranked(inputs[kind][h]) for kind in "qkv"}
        numbers["keys"][h] = best["k"][:3]
        own = dict(best["k"]).get(previous, float("nan"))
        rows.append([_edge(previous, inputs["k"][h]), "K-composition", dec2(own * gap), share3(own)])
        rows.append([_edge(h, "logits"), "direct", dec2(share * gap), share3(share)])
        for kind, label in (("k", "best other key"), ("q", "best query"), ("v", "best value")):
            others = [(sender, share) for sender, share in best[kind] if kind != "k" or sender != previous]
            if others:
                rows.append([_edge(others[0][0], inputs[kind][h]), label, dec2(others[0][1] * gap),
                             share3(others[0][1])])
    tops = {h: into.ranked(inputs["k"][h])[0][0] for h, _ in inductors}
    agree = sum(sender == previous for sender in tops.values())
    prose += (f" Into their keys, the largest summed path comes from **{_head(previous)}** (summed share "
              f"{share3(key_totals[previous])}); it is the largest key input of {agree} of the {len(inductors)} "
              "heads" + (": the previous-token → induction K-composition." if 2 * agree > len(inductors) else "."))
    rows = [row for i, row in enumerate(rows) if row not in rows[:i]]  # grouped heads share their key/value rows
    table = markdown_table(["edge", "path", "effect (logit)", "share"], rows)
    return prose + "\n\n" + table, numbers


def _ioi(model: Any, world: dict, n: int, seed: int, top: int, progress: bool) -> tuple[str, dict]:
    info = model_info(model)
    clean, corrupted, answers, wrongs = _abc_pairs(model, world["tasks"]["ioi"], n, seed)
    if not clean:
        return "No indirect-object prompt could be corrupted without changing its token count.", {}
    kw = dict(answer=answers, wrong=wrongs, progress=progress)
    heads = [f"a{layer}.h{h}" for layer in range(info.n_layers) for h in range(info.n_heads)]
    to_logits = path_patching(model, clean, corrupted, "logits", heads, **kw)
    gap = to_logits.clean_metric - to_logits.corrupted_metric
    ranked = to_logits.ranked()
    attention = _attention_to_names(model, clean, answers, wrongs)
    # A head that raises logit(IO) - logit(S) straight at the logits either copies the indirect object (it attends
    # to it: a name mover) or pushes the subject down (it attends to the subject): its attention says which.
    direct = [(h, s) for h, s in ranked[:top] if s >= _ROLE_SHARE]
    role = {h: ("attends to neither name" if max(attention(h)[:2]) < _NAME_ATTENTION else
                "name mover" if attention(h)[0] >= attention(h)[1] else "subject inhibitor") for h, _ in direct}
    negative = [(h, s) for h, s in ranked[::-1][:top] if s <= -_ROLE_SHARE]
    cells = {h: [dec2(x) for x in attention(h)] for h in heads}
    rows = [[_edge(h, "logits"), role[h], dec2(s * gap), share3(s), *cells[h]] for h, s in direct]
    rows += [[_edge(h, "logits"), "negative (works against the answer)", dec2(s * gap), share3(s), *cells[h]]
             for h, s in negative]
    numbers = {"n_prompts": len(clean), "clean": to_logits.clean_metric, "corrupted": to_logits.corrupted_metric,
               "direct": [(h, s, role[h], attention(h)) for h, s in direct], "negative": negative, "upstream": [],
               "s_inhibition": []}
    prose = (f"Metric: logit difference indirect object - subject at the last token ({len(clean)} world IOI prompts "
             f"against ABC prompts, every name mention replaced by one of three other names; clean "
             f"{to_logits.clean_metric:.2f}, corrupted {to_logits.corrupted_metric:.2f}). ")
    if not direct:
        return prose + f"No head's path to the logits carries a share of {_ROLE_SHARE} or more.", numbers
    prose += "Heads with the largest paths to the logits: " + ", ".join(
        f"**{_head(h)}** ({role[h]}: share {share3(s)}; attention from the last token to IO {cells[h][0]}, to S "
        f"{cells[h][1]})" for h, s in direct) + "."
    if negative:
        prose += " Working against the answer: " + ", ".join(f"{_head(h)} ({share3(s)})" for h, s in negative) + "."
    readers = [h for h, _ in direct if _layer(h) > 0]
    if readers:
        queries = [f"{h}<q>" for h in readers]
        earlier = [h for h in heads if _layer(h) < max(_layer(r) for r in readers)]
        into = path_patching(model, clean, corrupted, queries, earlier, **kw)
        total = into.normalised.nansum(dim=1)
        order = [i for i in total.argsort(descending=True).tolist() if total[i] > 0][:top]
        numbers["upstream"] = [(into.senders[i], float(total[i]), attention(into.senders[i])) for i in order]
        inhibitors = [i for i in order if total[i] >= _ROLE_SHARE
                      and attention(into.senders[i])[2] > attention(into.senders[i])[0]]
        numbers["s_inhibition"] = [into.senders[i] for i in inhibitors]
        for i in order:
            for j, receiver in enumerate(into.receivers):
                share = float(into.normalised[i, j])
                if share == share:
                    label = "S-inhibition" if i in inhibitors else "into the query"
                    rows.append([_edge(into.senders[i], receiver), label, dec2(share * gap), share3(share),
                                 *cells[into.senders[i]]])
        prose += (" Into the queries of " + ", ".join(map(_head, readers)) + ", the largest paths come from "
                  + (", ".join(f"**{_head(into.senders[i])}** (summed share {share3(float(total[i]))}; attention to S2 "
                               f"{cells[into.senders[i]][2]}, to IO {cells[into.senders[i]][0]})" for i in order)
                     if order else "no head (every path into them lowers the logit difference)") + ". "
                  + (f"S-inhibition heads (share at least {share3(_ROLE_SHARE)}, attending to S2 more than to IO): "
                     + ", ".join(f"**{_head(into.senders[i])}**" for i in inhibitors) + "." if inhibitors else
                     f"None carries a share of {share3(_ROLE_SHARE)} while attending to S2 more than to IO: this test "
                     "finds no S-inhibition heads."))
    table = markdown_table(["edge", "role", "effect (logit diff)", "share", "attn → IO", "attn → S", "attn → S2"],
                           rows)
    return prose + "\n\n" + table, numbers


def _abc_pairs(model: Any, task: dict, n: int, seed: int) -> tuple[list[str], list[str], list[str], list[str]]:
    """The first ``n`` IOI prompts whose ABC version (every name mention replaced by another name, three distinct
    names not in the prompt) keeps the token count."""
    rng = random.Random(seed)
    pool = list(task["heldout_names"])
    clean, corrupted, answers, wrongs = [], [], [], []
    for prompt, answer, wrong in zip(task["prompts"], task["answers"], task["wrong"], strict=True):
        io, s = answer.strip(), wrong.strip()
        others = [name for name in pool if name not in (io, s)]
        if len(others) < 3:
            continue
        replacements = iter(rng.sample(others, 3))
        abc = re.sub(rf"\b({re.escape(io)}|{re.escape(s)})\b", lambda m, names=replacements: next(names), prompt)
        if tokenize(model, [prompt]).tokens.shape != tokenize(model, [abc]).tokens.shape:
            continue
        clean.append(prompt), corrupted.append(abc), answers.append(answer), wrongs.append(wrong)
        if len(clean) == n:
            break
    return clean, corrupted, answers, wrongs


def _attention_to_names(model: Any, prompts: list[str], answers: list[str], wrongs: list[str]) -> Any:
    """A function ``head name -> [attention to IO, to S (both mentions), to S2]`` at the last token, prompt mean."""
    info = model_info(model)
    batch = tokenize(model, prompts)
    cap = capture(model, batch, names=[hook_name("pattern", layer) for layer in range(info.n_layers)])
    last = cap.last_positions
    io_ids = torch.tensor([to_single_token(model, a) for a in answers])
    s_ids = torch.tensor([to_single_token(model, w) for w in wrongs])
    io_mask = batch.tokens == io_ids[:, None]
    s_mask = batch.tokens == s_ids[:, None]
    s2_mask = s_mask & (s_mask.long().cumsum(1) == 2)

    def cells(head: str) -> list[float]:
        layer, h = (int(t) for t in head[1:].split(".h"))
        rows = cap.pattern(layer, h)[torch.arange(len(prompts)), last]  # [batch key]
        return [float((rows * mask).sum(1).mean()) for mask in (io_mask, s_mask, s2_mask)]

    return cells


def share3(x: float) -> str:
    """A share with three decimals (single paths of a redundant circuit carry small shares)."""
    return dec(x, 3, "0")


def _head(name: str) -> str:
    """``a1.h2`` -> ``L1H2`` (the card's head names)."""
    layer, head = name[1:].split(".h")
    return f"L{layer}H{head}"


def _layer(name: str) -> int:
    return int(name[1:].split(".")[0])


def _edge(sender: str, receiver: str) -> str:
    """``a0.h2``, ``a1.h3<k>`` -> ``L0H2 → L1H3 keys`` (``L1 kv-head 1 keys`` for a grouped key/value head)."""
    if receiver == "logits":
        return f"{_head(sender)} → logits"
    node, kind = receiver[:-3], {"q": "queries", "k": "keys", "v": "values"}[receiver[-2]]
    target = _head(node) if ".h" in node else f"L{node[1:].split('.kv')[0]} kv-head {node.split('.kv')[1]}"
    return f"{_head(sender)} → {target} {kind}"
