"""Measure a model against the reference world's ground truth: the numbers of each checkpoint's CARD.md.

* fact recall: top-1 of the object's first token after a template prompt, per relation, on training and on
  held-out templates;
* repeated random tokens: mean loss on the first and on the second copy of ``BOS + r + r``;
* agreement and indirect-object tasks: share of prompts where the right answer outscores the wrong one, on
  nouns and names held out of those tasks in training.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from interp.core.locking import holds_model
from interp.core.tokens import tokenize


@dataclass
class WorldScores:
    """A model's scores on the reference world's planted ground truth."""

    recall_train: dict[str, float] = field(default_factory=dict)
    """Relation -> top-1 accuracy of the object's first token on training templates."""
    recall_heldout: dict[str, float] = field(default_factory=dict)
    """Relation -> top-1 accuracy of the object's first token on held-out templates."""
    repeat_loss_first: float = float("nan")
    """Mean loss (nats) on the first copy of a random span (chance is about log of the vocabulary size)."""
    repeat_loss_second: float = float("nan")
    """Mean loss (nats) on the second copy: low when the model copies from context (induction)."""
    agreement: float = float("nan")
    """Share of held-out-noun agreement prompts where the right verb form outscores the wrong one."""
    ioi: float = float("nan")
    """Share of held-out-name indirect-object prompts where the indirect object outscores the subject."""
    ioi_top1: float = float("nan")
    """Share of those prompts where the indirect object is the top-1 token."""

    def to_json(self) -> str:
        """Scores as a JSON string."""
        return json.dumps(asdict(self), indent=1)

    def to_markdown(self) -> str:
        """Scores as the Markdown tables of a model card."""
        lines = ["| relation | training templates | held-out templates |", "|---|---|---|"]
        for rel in self.recall_train:
            lines.append(f"| {rel} | {self.recall_train[rel]:.1%} | {self.recall_heldout.get(rel, float('nan')):.1%} |")
        lines += [
            "",
            "| task | score |",
            "|---|---|",
            f"| repeated random tokens, loss on first copy | {self.repeat_loss_first:.3f} nats |",
            f"| repeated random tokens, loss on second copy | {self.repeat_loss_second:.3f} nats |",
            f"| agreement across a relative clause (held-out nouns) | {self.agreement:.1%} |",
            f"| indirect object, P(IO) > P(S) (held-out names) | {self.ioi:.1%} |",
            f"| indirect object, IO is top-1 (held-out names) | {self.ioi_top1:.1%} |",
        ]
        return "\n".join(lines)


def last_logprobs(model: Any, prompts: list[str], batch: int = 256, desc: str | None = None) -> torch.Tensor:
    """Log-probabilities of the next token after each prompt, ``[len(prompts), vocab]``."""
    out = []
    chunks = range(0, len(prompts), batch)
    for start in tqdm(chunks, desc=desc, disable=desc is None, leave=False):
        tokens, mask = tokenize(model, prompts[start:start + batch])
        with torch.inference_mode():
            logits = model(tokens, attention_mask=mask)
        last = mask.sum(-1) - 1
        out.append(logits[torch.arange(len(last)), last].float().log_softmax(-1).cpu())
    return torch.cat(out)


def first_token(model: Any, text: str) -> int:
    """Id of the first token of ``text`` (tokenised without BOS)."""
    return model.tokenizer(text, add_special_tokens=False)["input_ids"][0]


def fact_recall(model: Any, world: dict, split: str) -> dict[str, float]:
    """Top-1 accuracy of each fact's first object token, per relation, over the ``split`` templates."""
    scores = {}
    for rel, templates in world["templates"].items():
        facts = [f for f in world["facts"] if f["relation"] == rel]
        prompts = [t.format(subject=f["subject"]) for f in facts for t in templates[split]]
        targets = torch.tensor([first_token(model, " " + f["object"]) for f in facts for _ in templates[split]])
        top = last_logprobs(model, prompts, desc=f"{rel} ({split})").argmax(-1)
        scores[rel] = (top == targets).float().mean().item()
    return scores


def repeat_losses(model: Any, span: int = 30, n: int = 200, seed: int = 0) -> tuple[float, float]:
    """Mean loss on the first and second copy of ``BOS + r + r`` with ``r`` uniform over non-special tokens."""
    gen = torch.Generator().manual_seed(seed)
    vocab = model.cfg.d_vocab
    special = set(model.tokenizer.all_special_ids)
    allowed = torch.tensor([i for i in range(vocab) if i not in special])
    r = allowed[torch.randint(len(allowed), (n, span), generator=gen)]
    bos = torch.full((n, 1), model.tokenizer.bos_token_id)
    tokens = torch.cat([bos, r, r], dim=1).to(model.cfg.device)
    with torch.inference_mode():
        logp = model(tokens).float().log_softmax(-1)
    nll = -logp[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]  # nll[:, i] is the loss of token i + 1
    first = nll[:, 1:span].mean().item()  # the first token of the copy cannot be predicted by anything
    second = nll[:, span:].mean().item()
    return first, second


def pairwise_accuracy(model: Any, task: dict) -> tuple[float, float]:
    """Share of prompts whose answer outscores the wrong answer, and share whose answer is top-1."""
    logp = last_logprobs(model, task["prompts"])
    right = torch.tensor([first_token(model, a) for a in task["answers"]])
    wrong = torch.tensor([first_token(model, a) for a in task["wrong"]])
    idx = torch.arange(len(right))
    beats = (logp[idx, right] > logp[idx, wrong]).float().mean().item()
    top1 = (logp.argmax(-1) == right).float().mean().item()
    return beats, top1


@holds_model
def evaluate(model: Any, world: dict | str | Path) -> WorldScores:
    """Score ``model`` on every planted ground truth of ``world`` (a ``world.json`` dict or path)."""
    if not isinstance(world, dict):
        world = json.loads(Path(world).read_text())
    scores = WorldScores(recall_train=fact_recall(model, world, "train"),
                         recall_heldout=fact_recall(model, world, "heldout"))
    scores.repeat_loss_first, scores.repeat_loss_second = repeat_losses(model)
    scores.agreement, _ = pairwise_accuracy(model, world["tasks"]["agreement"])
    scores.ioi, scores.ioi_top1 = pairwise_accuracy(model, world["tasks"]["ioi"])
    return scores
