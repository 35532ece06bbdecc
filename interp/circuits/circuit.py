"""Find a circuit: score every edge of the model's graph on a task, keep the strongest, and check what they recover.

:func:`find_circuit` scores edges by EAP-IG (default), EAP, exact patching, ACDC or Edge Pruning and returns a
:class:`Circuit`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from jaxtyping import Bool, Float

from interp.circuits.acdc import DEFAULT_THRESHOLD, acdc_scores
from interp.circuits.attribution import eap_scores
from interp.circuits.edge_patching import exact_scores, patched_metrics
from interp.circuits.edge_pruning import edge_pruning_scores
from interp.circuits.graph import EdgeGraph
from interp.circuits.plots import circuit_figure, faithfulness_figure
from interp.circuits.tasks import CircuitTask, make_task, pairs_task
from interp.core.locking import holds_model
from interp.core.model_info import model_info

METHODS = ("eap", "eap-ig", "patching", "acdc", "edge-pruning")
"""Edge-scoring methods of :func:`find_circuit`."""


@dataclass(frozen=True)
class Faithfulness:
    """The metric of the circuit's top ``n`` edges alone, for several ``n``.

    Attributes:
        n_edges: Edges kept, increasing.
        metric: The task's metric with only those edges clean (every other edge patched with its corrupted value).
        clean: The metric on the clean run (no edge patched).
        corrupted: The metric on the corrupted run (every edge patched).
        total: Edges in the model's graph.
    """

    n_edges: list[int]
    metric: list[float]
    clean: float
    corrupted: float
    total: int

    @property
    def recovered(self) -> list[float]:
        """``(metric - corrupted) / (clean - corrupted)`` per point: 1 is the clean run, 0 the corrupted one."""
        gap = self.clean - self.corrupted
        return [(m - self.corrupted) / gap if gap else float("nan") for m in self.metric]

    def to_frame(self) -> Any:
        """One row per point: ``n_edges``, ``fraction`` (of the graph's edges), ``metric``, ``recovered``."""
        import pandas as pd

        return pd.DataFrame({"n_edges": self.n_edges, "fraction": [n / self.total for n in self.n_edges],
                             "metric": self.metric, "recovered": self.recovered})

    def figure(self) -> Any:
        """The faithfulness curve (plotly)."""
        return faithfulness_figure(self.n_edges, self.recovered, self.total, "Faithfulness: circuit alone")


@dataclass(frozen=True, eq=False)
class Circuit:
    """Scored edges of a model's graph on a task, and the edges kept (all of them until :meth:`prune`).

    Attributes:
        graph: The model's :class:`~interp.circuits.graph.EdgeGraph` (node names as in the public EAP-IG code).
        task: The clean/corrupted prompts and metric the scores were computed on.
        method: ``"eap"``, ``"eap-ig"``, ``"patching"``, ``"acdc"`` or ``"edge-pruning"``.
        scores: ``[sender receiver]`` estimated (or, for ``"patching"``, measured) metric change when the edge
            alone carries its corrupted value; for ``"acdc"``, the measured change when its removal was tried in
            the circuit left at that point; for ``"edge-pruning"``, the learned keep-probability (positive,
            higher = keep; not a metric change). 0 where no edge exists. The sign is kept: with a loss metric
            (induction) important edges score positive, with a logit difference negative.
        kept: ``[sender receiver]`` edges in the circuit: every edge, except after :meth:`prune` and for
            ``"acdc"``, whose circuit is the edges it kept.
    """

    graph: EdgeGraph
    task: CircuitTask
    method: str
    scores: Float[torch.Tensor, "sender receiver"]
    kept: Bool[torch.Tensor, "sender receiver"]
    model: Any = field(repr=False, compare=False, default=None)

    @property
    def n_edges(self) -> int:
        """Edges in the circuit."""
        return int(self.kept.sum())

    def edges(self) -> list[tuple[str, str, float]]:
        """``(sender, receiver, score)`` of the circuit's edges, strongest (largest |score|) first."""
        pairs = self.kept.nonzero().tolist()
        values = self.scores[self.kept].tolist()
        order = sorted(range(len(pairs)), key=lambda i: (-abs(values[i]), i))
        return [(self.graph.senders[pairs[i][0]], self.graph.receivers[pairs[i][1]], values[i]) for i in order]

    def to_frame(self) -> Any:
        """Every edge of the circuit (all scored edges before pruning): ``sender``, ``receiver``, ``score``,
        strongest first by |score|, the sign kept."""
        import pandas as pd

        return pd.DataFrame(self.edges(), columns=["sender", "receiver", "score"])

    def prune(self, n_edges: int | None = None, threshold: float | None = None) -> Circuit:
        """A new circuit with the ``n_edges`` strongest edges, or those with ``|score| >= threshold``.

        Raises:
            ValueError: neither or both given, or a negative count or threshold.
        """
        if (n_edges is None) == (threshold is None):
            raise ValueError("pass exactly one of n_edges=... or threshold=...")
        kept = torch.zeros_like(self.kept)
        if n_edges is not None:
            if n_edges < 0:
                raise ValueError(f"n_edges={n_edges}; must be >= 0 (the circuit has {self.n_edges})")
            for sender, receiver, _ in self.edges()[:n_edges]:
                kept[self.graph.edge(sender, receiver)] = True
        else:
            if threshold < 0:
                raise ValueError(f"threshold={threshold}; must be >= 0")
            kept = self.kept & (self.scores.abs() >= threshold)
        return replace(self, kept=kept)

    def faithfulness(self, counts: Sequence[int] | None = None, *, progress: bool = False) -> Faithfulness:
        """The metric recovered by the circuit's top ``n`` edges alone, for each ``n`` in ``counts``.

        Every edge outside the top ``n`` (including the edges pruned from this circuit) is patched: its receiver
        reads the sender's output from the corrupted run instead of the one in this run (see
        :mod:`interp.circuits.edge_patching`). ``counts`` defaults to 0, roughly log-spaced sizes, and all of the
        circuit's edges.

        Raises:
            ValueError: a count outside ``0..n_edges``.
        """
        order = self.edges()
        total = len(order)
        if counts is None:
            grid = torch.logspace(0, torch.log10(torch.tensor(float(max(total, 1)))), 14).round().int().tolist()
            counts = sorted({0, total, *grid})
        counts = sorted({int(c) for c in counts})
        if counts and not 0 <= counts[0] <= counts[-1] <= total:
            raise ValueError(f"counts={counts}; each must be in 0..{total} (the circuit's edges)")
        masks = [torch.zeros_like(self.kept), self.graph.valid.clone()]
        index = [self.graph.edge(s, r) for s, r, _ in order]
        for n in counts:
            removed = self.graph.valid.clone()
            for s, r in index[:n]:
                removed[s, r] = False
            masks.append(removed)
        values = patched_metrics(self.model, self.graph, self.task, torch.stack(masks), progress=progress).tolist()
        return Faithfulness(counts, values[2:], values[0], values[1], self.graph.n_edges)

    def figure(self, max_edges: int = 60) -> Any:
        """The circuit as a plotly network of its ``max_edges`` strongest edges, widths by |score|."""
        shown = self.edges()[:max_edges]
        title = (f"{self.task.name} circuit ({self.method}), {len(shown)} of {self.n_edges} edges on "
                 f"{model_info(self.model).display_name if self.model is not None else 'model'}")
        return circuit_figure(self.graph, shown, title)

    def to_json(self, top: int | None = None) -> dict[str, Any]:
        """``{"task", "method", "n_edges", "edges": [{"sender", "receiver", "score"}, ...]}``, strongest first."""
        edges = self.edges()[:top] if top is not None else self.edges()
        return {"task": self.task.name, "method": self.method, "n_edges": self.n_edges,
                "edges": [{"sender": s, "receiver": r, "score": v} for s, r, v in edges]}


@holds_model
def find_circuit(
    model: Any,
    task: str | CircuitTask | tuple[str | Sequence[str], str | Sequence[str]],
    method: str = "eap-ig",
    *,
    seq_len: int | None = None,
    n_prompts: int = 32,
    seed: int = 0,
    steps: int = 5,
    metric: Callable[[torch.Tensor], torch.Tensor] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    n_edges: int | None = None,
    progress: bool = True,
) -> Circuit:
    """Score every edge of ``model``'s graph on ``task`` and return the :class:`Circuit` (unpruned, except by ACDC).

    Args:
        model: A ``TransformerBridge`` with LayerNorm or RMSNorm.
        task: ``"induction"``, ``"ioi"``, ``"facts"`` (see :mod:`interp.circuits.tasks`), a
            :class:`~interp.circuits.tasks.CircuitTask`, or ``(clean, corrupted)`` prompts (each a string or a
            list; all the same token length) scored by ``metric``.
        method: ``"eap-ig"`` (EAP with integrated gradients, ``steps`` steps), ``"eap"`` (one gradient), or
            ``"patching"`` (exact: one patched run per edge; for small graphs), or ``"acdc"`` (edges removed one
            at a time in the circuit left so far, see :mod:`interp.circuits.acdc`; one run per edge, for small
            graphs; the circuit returned holds the edges ACDC kept), or ``"edge-pruning"`` (a mask over all
            edges learned by gradient descent, see :mod:`interp.circuits.edge_pruning`; scores are keep-probabilities,
            every edge stays in the circuit: :meth:`Circuit.prune` to the target).
        seq_len: Length of the repeated span for ``"induction"`` (default ``min(40, (n_ctx - 1) // 2)``).
        n_prompts: Prompts of a built-in task.
        seed: Seed of the task's prompts.
        steps: EAP-IG's interpolation steps.
        metric: ``logits [batch pos vocab] -> scalar`` for ``(clean, corrupted)`` prompts (default: logit of the
            clean run's top next token minus that of the corrupted run's, at the last position).
        threshold: ACDC's share of the clean-corrupted gap that removing one edge may cost (``"acdc"`` only).
        n_edges: Edge Pruning's target circuit size (``"edge-pruning"`` only; default 5% of the graph's edges).
        progress: Show progress bars.

    Raises:
        ValueError: an unknown task or method, prompts that do not align, or a threshold outside [0, 1).

    Examples:
        >>> from interp.core.toy_models import load_toy
        >>> circuit = find_circuit(load_toy(), "induction", seq_len=4, n_prompts=2, progress=False)
        >>> list(circuit.to_frame().columns), circuit.n_edges == circuit.graph.n_edges
        (['sender', 'receiver', 'score'], True)
        >>> circuit.prune(n_edges=5).n_edges
        5
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}; valid methods are {', '.join(METHODS)}")
    if isinstance(task, str):
        task = make_task(model, task, seq_len=seq_len, n_prompts=n_prompts, seed=seed)
    elif isinstance(task, tuple):
        task = pairs_task(model, task[0], task[1], metric)
    graph = EdgeGraph.for_model(model)
    if method == "patching":
        scores = exact_scores(model, graph, task, progress=progress)
    elif method == "acdc":
        scores, kept = acdc_scores(model, graph, task, threshold=threshold, progress=progress)
        return Circuit(graph, task, method, scores, kept, model)
    elif method == "edge-pruning":
        scores = edge_pruning_scores(model, graph, task, n_edges=n_edges, progress=progress)
    else:
        scores = eap_scores(model, graph, task, steps=steps if method == "eap-ig" else None, progress=progress)
    return Circuit(graph, task, method, scores.cpu(), graph.valid.clone(), model)


@holds_model
def circuit_faithfulness(
    model: Any,
    task: str | CircuitTask | tuple[str | Sequence[str], str | Sequence[str]],
    method: str = "eap-ig",
    *,
    n_prompts: int = 32,
    seed: int = 0,
    counts: Sequence[int] | None = None,
) -> Faithfulness:
    """``find_circuit(model, task, method, ...).faithfulness(counts)`` in one call on the model.

    For callers that keep results by their arguments (the dashboard's caches): the curve is computed on the model
    given here, holding its lock, rather than on the model a cached :class:`Circuit` remembers.
    """
    circuit = find_circuit(model, task, method, n_prompts=n_prompts, seed=seed, progress=False)
    return circuit.faithfulness(counts)
