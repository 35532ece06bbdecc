"""What a probe is trained on: labelled (text, token position) examples, and how they are split.

A :class:`ProbeTask` is a list of :class:`ProbeExample` s. Each example names a prompt, the token
position whose activation is read, the label, and a *group* (the subject the example is about).
The train/test split keeps every group on one side, so a probe is always tested on subjects it
never saw; otherwise a probe could score by recognising the subject instead of reading the
property from the representation.

Positions index the prompt's tokens exactly as :func:`interp.tokenize` produces them, BOS included
when the model prepends one (so position 0 is BOS on the reference models); negative positions
count from the end (``-1`` is the last token).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from jaxtyping import Int

Label = str | int
"""A class label; stored and reported as its ``str``."""


class ProbeExample(NamedTuple):
    """One labelled activation to read."""

    text: str
    """The prompt."""
    position: int
    """Token index into the tokenized prompt (BOS included when the model prepends it); ``-1`` is the last token."""
    label: Label
    """The class the probe should predict."""
    group: str | None = None
    """Subject the example is about; all examples of a group land on the same side of the split
    (default: the text itself)."""


class Split(NamedTuple):
    """Example indices of the train and test sides of a group split."""

    train: Int[torch.Tensor, " batch"]
    """Indices of training examples, ascending."""
    test: Int[torch.Tensor, " batch"]
    """Indices of test examples, ascending."""


@dataclass
class ProbeTask:
    """A named set of labelled examples for a probe.

    Examples:
        >>> task = ProbeTask.from_examples(
        ...     [("The cat", -1, "singular"), ("The cats", -1, "plural")], name="number")
        >>> task.labels
        ['plural', 'singular']
        >>> ProbeTask.from_examples([("The cat", -1, "singular")])
        Traceback (most recent call last):
        ...
        ValueError: task 'custom' has a single class ('singular'); a probe needs examples of at least two labels
    """

    name: str
    """Short name, used in reports and file names."""
    examples: list[ProbeExample]
    """The labelled examples."""
    description: str = ""
    """One sentence on what is probed and where."""
    labels: list[str] = field(init=False)
    """Sorted distinct labels (as strings): the probe's classes."""

    def __post_init__(self) -> None:
        """Check every example and derive :attr:`labels`; refuse an empty task or a single class."""
        if not self.examples:
            raise ValueError(f"task {self.name!r} has no examples; pass a non-empty list of (text, position, label)")
        for i, ex in enumerate(self.examples):
            _check_example(self.name, i, ex)
        self.labels = sorted({str(ex.label) for ex in self.examples})
        if len(self.labels) < 2:
            raise ValueError(
                f"task {self.name!r} has a single class ({self.labels[0]!r}); "
                "a probe needs examples of at least two labels"
            )

    @classmethod
    def from_examples(
        cls, examples: Iterable[Sequence[Any]], name: str = "custom", description: str = ""
    ) -> ProbeTask:
        """Build a task from ``(text, position, label)`` or ``(text, position, label, group)`` tuples.

        Raises:
            ValueError: an example of the wrong length or types, no examples, or a single class.
        """
        rows = []
        for i, row in enumerate(examples):
            if isinstance(row, str) or not isinstance(row, Sequence) or len(row) not in (3, 4):
                raise ValueError(
                    f"task {name!r}, example {i}: {row!r} is not a (text, position, label[, group]) tuple"
                )
            rows.append(ProbeExample(*row))
        return cls(name=name, examples=rows, description=description)

    def __len__(self) -> int:
        """Number of examples."""
        return len(self.examples)

    @property
    def groups(self) -> list[str]:
        """Each example's group (its text when no group was given)."""
        return [ex.text if ex.group is None else str(ex.group) for ex in self.examples]

    @property
    def label_ids(self) -> Int[torch.Tensor, " batch"]:
        """Each example's class index into :attr:`labels`."""
        index = {label: i for i, label in enumerate(self.labels)}
        return torch.tensor([index[str(ex.label)] for ex in self.examples], dtype=torch.long)

    def to_frame(self) -> Any:
        """The examples as a ``pandas.DataFrame`` (text, position, label, group)."""
        import pandas as pd

        return pd.DataFrame(
            {
                "text": [ex.text for ex in self.examples],
                "position": [ex.position for ex in self.examples],
                "label": [str(ex.label) for ex in self.examples],
                "group": self.groups,
            }
        )


def _check_example(name: str, i: int, ex: ProbeExample) -> None:
    if not isinstance(ex.text, str) or ex.text == "":
        raise ValueError(f"task {name!r}, example {i}: text={ex.text!r}; it must be a non-empty string")
    if isinstance(ex.position, bool) or not isinstance(ex.position, int):
        raise ValueError(f"task {name!r}, example {i}: position={ex.position!r}; it must be an int token index")
    if isinstance(ex.label, bool) or not isinstance(ex.label, (str, int)):
        raise ValueError(f"task {name!r}, example {i}: label={ex.label!r}; labels must be str or int")


def check_positions(task: ProbeTask, lengths: Sequence[int], bos: bool) -> list[int]:
    """Resolve every example's position against its prompt's token count, naming any bad one.

    Args:
        task: The task.
        lengths: Token count of each example's prompt (BOS included when prepended).
        bos: Whether the counts include a BOS token (only used in the message).

    Returns:
        Non-negative positions, one per example.

    Raises:
        ValueError: a position outside ``-n..n-1`` for its prompt of ``n`` tokens.

    Examples:
        >>> task = ProbeTask.from_examples([("a b", 5, "x"), ("c", 0, "y")])
        >>> check_positions(task, [3, 2], bos=True)  # doctest: +NORMALIZE_WHITESPACE
        Traceback (most recent call last):
        ...
        ValueError: task 'custom', example 0 ('a b'): position=5, but the prompt is 3 tokens (BOS included);
        valid positions are -3..2
    """
    resolved = []
    for i, (ex, n) in enumerate(zip(task.examples, lengths, strict=True)):
        if not -n <= ex.position < n:
            raise ValueError(
                f"task {task.name!r}, example {i} ({ex.text!r}): position={ex.position}, but the prompt is "
                f"{n} tokens{' (BOS included)' if bos else ''}; valid positions are {-n}..{n - 1}"
            )
        resolved.append(ex.position % n)
    return resolved


def split_by_group(groups: Sequence[str], labels: Sequence[Label], test_size: float = 0.25, seed: int = 0) -> Split:
    """Split examples into train and test so that no group appears on both sides.

    When every group has a single label (each city has one country), the split is stratified: each
    label with ``k >= 2`` groups sends about ``test_size * k`` of them (at least one, at most
    ``k - 1``) to test, so every tested class was also trained on; a label with one group stays in
    train. Otherwise (a subject carries several labels) groups are shuffled and split as a whole.

    Args:
        groups: Group of each example.
        labels: Label of each example.
        test_size: Share of groups held out, in ``(0, 1)``.
        seed: Seed of the shuffle.

    Returns:
        The :class:`Split`.

    Raises:
        ValueError: ``test_size`` out of range, fewer than two groups, or a split that leaves the
            test side empty or the train side with a single class.

    Examples:
        >>> s = split_by_group(["a", "a", "b", "c", "d"], [0, 0, 1, 0, 1], test_size=0.5)
        >>> sorted(s.train.tolist() + s.test.tolist())
        [0, 1, 2, 3, 4]
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size={test_size}; it must be in (0, 1)")
    if len(groups) != len(labels):
        raise ValueError(f"{len(groups)} groups for {len(labels)} labels; give one of each per example")
    labels_of: dict[str, set[str]] = defaultdict(set)
    for g, y in zip(groups, labels, strict=True):
        labels_of[g].add(str(y))
    if len(labels_of) < 2:
        raise ValueError(
            f"all examples share one group ({next(iter(labels_of))!r}); a split by group needs at least two groups"
        )
    rng = random.Random(seed)
    test_groups: set[str] = set()
    if all(len(ys) == 1 for ys in labels_of.values()):
        by_label: dict[str, list[str]] = defaultdict(list)
        for g, ys in labels_of.items():
            by_label[next(iter(ys))].append(g)
        for label in sorted(by_label):
            members = sorted(by_label[label])
            rng.shuffle(members)
            k = len(members)
            n_test = min(k - 1, max(1, round(test_size * k))) if k >= 2 else 0
            test_groups.update(members[:n_test])
    else:
        members = sorted(labels_of)
        rng.shuffle(members)
        n_test = min(len(members) - 1, max(1, round(test_size * len(members))))
        test_groups.update(members[:n_test])
    is_test = torch.tensor([g in test_groups for g in groups])
    split = Split(train=(~is_test).nonzero().flatten(), test=is_test.nonzero().flatten())
    if len(split.test) == 0:
        raise ValueError(
            "the split by group left no test examples: every label has a single group; "
            "give at least two groups (subjects) for some label"
        )
    train_labels = Counter(str(labels[i]) for i in split.train.tolist())
    if len(train_labels) < 2:
        raise ValueError(f"the split by group left a single class ({next(iter(train_labels))!r}) in train")
    return split


def control_labels(types: Sequence[int], labels: Sequence[Label], n_classes: int, seed: int = 0) -> list[int]:
    """Hewitt & Liang control labels: one random class per word type, drawn from the label distribution.

    Every example of the same type gets the same control label, so a probe can only score on the
    control task by memorising types; its accuracy there measures what the probe can memorise
    rather than what the representation encodes.

    Args:
        types: Word type of each example (the token id at the probed position).
        labels: Class index of each example (``0..n_classes-1``); their frequencies are the
            distribution control labels are drawn from.
        n_classes: Number of classes.
        seed: Seed of the draw.

    Returns:
        A control class index per example.

    Examples:
        >>> c = control_labels([5, 7, 5, 5], [0, 1, 1, 0], n_classes=2)
        >>> c[0] == c[2] == c[3]
        True
    """
    counts = Counter(int(y) for y in labels)
    weights = [counts.get(c, 0) for c in range(n_classes)]
    rng = random.Random(seed)
    assigned = {t: rng.choices(range(n_classes), weights)[0] for t in sorted(set(int(t) for t in types))}
    return [assigned[int(t)] for t in types]
