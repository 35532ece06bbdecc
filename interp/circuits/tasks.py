"""What a circuit is found for: clean prompts, corrupted prompts aligned with them position by position, a metric.

Built-in tasks (:func:`make_task`):

- ``"induction"``: ``[BOS] + x + x`` with ``len(x) = seq_len`` (default ``min(40, (n_ctx - 1) // 2)``) random
  non-special tokens; corrupted: a fresh random sequence of the same length with no repeat; metric: the mean
  next-token loss on the second copy (lower is better).
- ``"ioi"``: the reference world's indirect-object prompts (one token length, so no padding); corrupted: the
  same prompt with the two names swapped everywhere, which swaps the answer; metric: logit of the indirect
  object minus logit of the subject at the last position.
- ``"facts"``: the world's fact prompts (training templates, single-token objects); corrupted: the same template
  with another subject of the same relation whose object differs and whose prompt has the same token length;
  metric: logit of the clean object minus logit of the corrupted prompt's object.

A user's own pairs go through :func:`pairs_task`.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int

from interp.core.model_info import model_info
from interp.core.tokens import tokenize
from interp.heads.induction import repeated_random_tokens
from interp.reference import load_world

TASKS = ("facts", "induction", "ioi")
"""Names of the built-in tasks."""

Metric = Callable[[torch.Tensor], torch.Tensor]
"""``logits [batch pos vocab] -> scalar``: the task's number, averaged over the prompts."""


@dataclass(frozen=True)
class CircuitTask:
    """Clean and corrupted token batches of one shape, and the metric read from a run's logits.

    Attributes:
        name: The task's name (``"induction"``, ``"ioi"``, ``"facts"`` or ``"pairs"``).
        clean: Clean prompts ``[batch pos]``.
        corrupted: Corrupted prompts, aligned with ``clean`` position by position.
        metric: ``logits [batch pos vocab] -> scalar`` for runs on these prompts (a run on ``clean`` whose
            activations may be patched).
        higher_is_better: False for losses.
    """

    name: str
    clean: Int[torch.Tensor, "batch pos"]
    corrupted: Int[torch.Tensor, "batch pos"]
    metric: Metric
    higher_is_better: bool = True


def make_task(model: Any, task: str, *, seq_len: int | None = None, n_prompts: int = 32, seed: int = 0) -> CircuitTask:
    """Build a built-in task for ``model``.

    Raises:
        ValueError: an unknown task, or a ``seq_len`` that does not fit the model's context.
    """
    if n_prompts < 1:
        raise ValueError(f"n_prompts={n_prompts}; need at least 1")
    if task == "induction":
        return induction_task(model, seq_len=seq_len, n_prompts=n_prompts, seed=seed)
    if task == "ioi":
        return ioi_task(model, n_prompts=n_prompts, seed=seed)
    if task == "facts":
        return facts_task(model, n_prompts=n_prompts, seed=seed)
    raise ValueError(f"task={task!r}; built-in tasks are {', '.join(TASKS)} (or pass clean/corrupted pairs)")


def induction_task(model: Any, *, seq_len: int | None = None, n_prompts: int = 32, seed: int = 0) -> CircuitTask:
    """``[BOS] + x + x`` against ``[BOS] + y`` (``len(y) = 2 seq_len``, no repeat); metric: loss on the second copy."""
    info = model_info(model)
    most = (info.n_ctx - 1) // 2
    seq_len = min(40, most) if seq_len is None else seq_len
    if not 2 <= seq_len <= most:
        raise ValueError(f"seq_len={seq_len}; the model's context ({info.n_ctx}) allows 2..{most}")
    clean = repeated_random_tokens(model, seq_len, n_prompts, seed=seed)
    fresh = repeated_random_tokens(model, 2 * seq_len, n_prompts, seed=seed + 1)
    start = clean.shape[1] - 2 * seq_len  # 1 with BOS, 0 without
    corrupted = torch.cat([clean[:, :start], fresh[:, start : start + 2 * seq_len]], dim=1)
    targets = clean[:, start + seq_len + 1 :]

    def second_copy_loss(logits: torch.Tensor) -> torch.Tensor:
        pred = logits[:, start + seq_len : -1].float().log_softmax(-1)
        return -pred.gather(-1, targets[..., None].to(pred.device)).mean()

    return CircuitTask("induction", clean, corrupted, second_copy_loss, higher_is_better=False)


def logit_diff(answers: Sequence[int], wrong: Sequence[int]) -> Metric:
    """Metric: logit of ``answers[i]`` minus logit of ``wrong[i]`` at the last position, mean over prompts."""
    a, w = torch.tensor(list(answers)), torch.tensor(list(wrong))

    def metric(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1].float()
        rows = torch.arange(len(last), device=last.device)
        return (last[rows, a.to(last.device)] - last[rows, w.to(last.device)]).mean()

    return metric


def ioi_task(model: Any, *, n_prompts: int = 32, seed: int = 0, world: dict | None = None) -> CircuitTask:
    """The world's IOI prompts against the same prompts with the two names swapped; metric: logit(IO) - logit(S)."""
    data = load_world(model, world)["tasks"]["ioi"]
    rows = []
    for prompt, io, s in zip(data["prompts"], data["answers"], data["wrong"], strict=True):
        a, b = io.strip(), s.strip()
        swapped = re.sub(rf"\b({re.escape(a)}|{re.escape(b)})\b", lambda m, a=a, b=b: b if m[0] == a else a, prompt)
        ids = [_single(model, io), _single(model, s)]
        rows.append((prompt, swapped, ids))
    return _same_length_task(model, "ioi", rows, n_prompts, seed)


def facts_task(model: Any, *, n_prompts: int = 32, seed: int = 0, world: dict | None = None) -> CircuitTask:
    """The world's fact prompts against the same template with another subject; metric: logit difference."""
    data = load_world(model, world)
    rng = random.Random(seed)
    facts = [f for f in data["facts"] if _single(model, " " + f["object"]) is not None]
    prompts = [data["templates"][f["relation"]]["train"][0].format(subject=f["subject"]) for f in facts]
    lengths = [len(model.tokenizer.encode(p, add_special_tokens=False)) for p in prompts]
    rows = []
    for i, fact in enumerate(facts):
        others = [j for j, g in enumerate(facts) if g["relation"] == fact["relation"]
                  and g["object"] != fact["object"] and lengths[j] == lengths[i]]
        if others:
            j = rng.choice(others)
            ids = [_single(model, " " + fact["object"]), _single(model, " " + facts[j]["object"])]
            rows.append((prompts[i], prompts[j], ids))
    return _same_length_task(model, "facts", rows, n_prompts, seed)


def pairs_task(
    model: Any, clean: str | Sequence[str], corrupted: str | Sequence[str], metric: Metric | None = None
) -> CircuitTask:
    """A user's clean/corrupted prompts (each pair the same token length, all pairs one length) and metric.

    Without ``metric`` it is the logit difference, at the last position, between the clean run's top token and
    the corrupted run's top token.

    Raises:
        ValueError: different numbers of clean and corrupted prompts, or prompts of different token lengths.
    """
    clean = [clean] if isinstance(clean, str) else list(clean)
    corrupted = [corrupted] if isinstance(corrupted, str) else list(corrupted)
    if len(clean) != len(corrupted):
        raise ValueError(f"{len(clean)} clean prompts but {len(corrupted)} corrupted; pass one corrupted per clean")
    rows = [tokenize(model, p).tokens[0] for p in clean + corrupted]
    lengths = sorted({len(r) for r in rows})
    if len(lengths) > 1:
        raise ValueError(f"prompts tokenize to lengths {lengths}; clean and corrupted must align position by "
                         "position, so every prompt needs the same number of tokens")
    tokens = torch.stack(rows)
    clean_t, corrupted_t = tokens[: len(clean)], tokens[len(clean) :]
    if metric is None:
        with torch.no_grad():
            answers = model(clean_t)[:, -1].argmax(-1).tolist()
            wrong = model(corrupted_t)[:, -1].argmax(-1).tolist()
        metric = logit_diff(answers, wrong)
    return CircuitTask("pairs", clean_t, corrupted_t, metric)


def _single(model: Any, text: str) -> int | None:
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def _same_length_task(model: Any, name: str, rows: list, n_prompts: int, seed: int) -> CircuitTask:
    """Keep the rows whose prompts share the most common token length (no padding), sample ``n_prompts``."""
    if not rows:
        raise ValueError(f"the world has no usable {name} prompts for this model's tokenizer")
    clean_b, corrupted_b = (tokenize(model, [row[i] for row in rows]) for i in (0, 1))
    encoded = []
    for c, c_mask, x, x_mask, (_, _, ids) in zip(clean_b.tokens, clean_b.attention_mask, corrupted_b.tokens,
                                                 corrupted_b.attention_mask, rows, strict=True):
        n = int(c_mask.sum())
        if n == int(x_mask.sum()) and None not in ids and ids[0] != ids[1]:
            encoded.append((c[:n], x[:n], ids))
    if not encoded:
        raise ValueError(f"the world has no usable {name} prompts for this model's tokenizer")
    length = Counter(len(c) for c, _, _ in encoded).most_common(1)[0][0]
    keep = [row for row in encoded if len(row[0]) == length]
    keep = random.Random(seed).sample(keep, min(n_prompts, len(keep)))
    clean = torch.stack([c for c, _, _ in keep])
    corrupted = torch.stack([x for _, x, _ in keep])
    metric = logit_diff([ids[0] for _, _, ids in keep], [ids[1] for _, _, ids in keep])
    return CircuitTask(name, clean, corrupted, metric)

