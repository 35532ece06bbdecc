"""Fit a probe on every layer, with a control task, and keep the result as a :class:`ProbeReport`.

Selectivity (Hewitt & Liang, 2019) is test accuracy minus control-task accuracy: a probe that is
accurate on the task but equally accurate on random per-word-type labels is memorising word types,
not reading a property the representation encodes.

The word type of an example is the token id at its probed position. How much the control task can
score depends on whether types recur across the subject split: at the last token of template
prompts (``relation``, ``number``) a few types recur everywhere, so a linear probe memorises them
and control accuracy is high; a city's own tokens (``city_country``) never cross the split, so
control accuracy there stays near chance.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch
from jaxtyping import Float, Int

from interp.core.files import atomic_path, check_can_write
from interp.core.locking import holds_model
from probes.activations import SITES, check_layers, collect
from probes.logistic import LogisticConfig, LogisticFit, fit_logistic, predict
from probes.plots import accuracy_figure
from probes.task import Label, ProbeTask, control_labels, split_by_group
from probes.world_tasks import world_task


@dataclass
class ProbeConfig:
    """How probes are trained and evaluated."""

    test_size: float = 0.25
    """Share of groups (subjects) held out for testing."""
    batch_size: int = 64
    """Prompts per forward pass when collecting activations."""
    optimizer: LogisticConfig = field(default_factory=LogisticConfig)
    """L2 penalty and L-BFGS settings."""


class Probe(NamedTuple):
    """A linear classifier on one layer's activations."""

    layer: int
    """Block whose activations it reads."""
    site: str
    """Where in the block (``"resid_post"``...)."""
    labels: list[str]
    """Class names, in the order of the weight columns."""
    weight: Float[torch.Tensor, "d_model label"]
    """Logits are ``x @ weight + bias`` on raw activations."""
    bias: Float[torch.Tensor, " label"]
    """Per-class offsets."""

    def predict(self, x: Float[torch.Tensor, "batch d_model"]) -> list[str]:
        """Predicted label of each activation."""
        scores = x.float().to(self.weight.device) @ self.weight + self.bias
        return [self.labels[i] for i in scores.argmax(dim=-1).tolist()]

    def direction(self, label: Label) -> Float[torch.Tensor, " d_model"]:
        """Unit vector along which activations score higher for ``label`` relative to the average class.

        Softmax ignores a shift shared by all classes, so the class's column minus the mean column
        is the part of the weights that favours ``label``.

        Raises:
            ValueError: ``label`` is not one of the probe's classes.
        """
        if str(label) not in self.labels:
            raise ValueError(f"label={label!r}; the probe's classes are {self.labels}")
        w = self.weight[:, self.labels.index(str(label))] - self.weight.mean(dim=1)
        return w / w.norm().clamp_min(1e-12)


@dataclass
class ProbeReport:
    """Probe accuracy per layer on a task, with the control task and the fitted weights."""

    task: str
    """Task name."""
    model: str
    """What the model was loaded from."""
    site: str
    """Where in each block the probes read."""
    layers: list[int]
    """Probed layers, in the order of the per-layer lists."""
    labels: list[str]
    """Class names."""
    accuracy: list[float]
    """Test accuracy per layer (test subjects never seen in training)."""
    train_accuracy: list[float]
    """Training accuracy per layer."""
    control_accuracy: list[float] | None
    """Test accuracy of the same probe trained on control labels (None when ``control=False``)."""
    majority: float
    """Test accuracy of always answering the most frequent training label."""
    n_train: int
    """Training examples."""
    n_test: int
    """Test examples."""
    train_groups: list[str]
    """Groups (subjects) used for training."""
    test_groups: list[str]
    """Groups (subjects) used for testing; disjoint from :attr:`train_groups`."""
    weight: Float[torch.Tensor, "layer d_model label"] = field(repr=False)
    """Probe weights per layer (on raw activations)."""
    bias: Float[torch.Tensor, "layer label"] = field(repr=False)
    """Probe biases per layer."""

    @property
    def selectivity(self) -> list[float] | None:
        """Accuracy minus control accuracy, per layer (None without a control task)."""
        if self.control_accuracy is None:
            return None
        return [a - c for a, c in zip(self.accuracy, self.control_accuracy, strict=True)]

    @property
    def best_layer(self) -> int:
        """The layer with the highest test accuracy (the earliest one on ties)."""
        return self.layers[max(range(len(self.layers)), key=lambda i: (self.accuracy[i], -i))]

    def probe(self, layer: int | None = None) -> Probe:
        """The probe fitted on ``layer`` (default: :attr:`best_layer`).

        Raises:
            ValueError: ``layer`` was not probed.
        """
        layer = self.best_layer if layer is None else layer
        if layer not in self.layers:
            raise ValueError(f"layer={layer!r} was not probed; probed layers are {self.layers}")
        i = self.layers.index(layer)
        return Probe(layer, self.site, list(self.labels), self.weight[i], self.bias[i])

    def to_frame(self) -> Any:
        """One row per layer: accuracy, train accuracy, control accuracy, selectivity, majority baseline."""
        import pandas as pd

        frame = pd.DataFrame(
            {"layer": self.layers, "accuracy": self.accuracy, "train_accuracy": self.train_accuracy}
        )
        if self.control_accuracy is not None:
            frame["control_accuracy"] = self.control_accuracy
            frame["selectivity"] = self.selectivity
        frame["majority"] = self.majority
        return frame

    def figure(self) -> Any:
        """Accuracy and control accuracy across layers (plotly)."""
        return accuracy_figure(self)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the weights, as JSON-ready values (plus ``selectivity`` and ``best_layer``)."""
        data = {k: v for k, v in asdict(self).items() if k not in ("weight", "bias")}
        data["selectivity"] = self.selectivity
        data["best_layer"] = self.best_layer
        return data

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the report and its weights to one safetensors file (through a temporary and a rename).

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is False.

        Examples:
            >>> report.save("city_country.safetensors")  # doctest: +SKIP
            >>> ProbeReport.load("city_country.safetensors").best_layer  # doctest: +SKIP
        """
        from safetensors.torch import save_file

        meta = {k: v for k, v in self.to_dict().items() if k not in ("selectivity", "best_layer")}
        check_can_write(path, overwrite)
        tensors = {"weight": self.weight.contiguous().cpu(), "bias": self.bias.contiguous().cpu()}
        with atomic_path(path) as tmp:
            save_file(tensors, os.fspath(tmp), metadata={"probe_report": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ProbeReport:
        """Read a report written by :meth:`save`.

        Raises:
            FileNotFoundError: no such file.
            ValueError: the file is not a saved probe report (or is damaged, e.g. truncated).
        """
        from safetensors import safe_open

        if not os.path.isfile(path):
            raise FileNotFoundError(f"no probe report at {path}")
        try:
            with safe_open(os.fspath(path), framework="pt") as f:
                meta = (f.metadata() or {}).get("probe_report")
                tensors = {k: f.get_tensor(k) for k in ("weight", "bias")} if meta is not None else {}
        except Exception as err:  # noqa: BLE001  # safetensors raises its own error type for every defect
            raise ValueError(f"{path} is not a readable probe report ({type(err).__name__}: {err})") from None
        if meta is None:
            raise ValueError(f"{path} is a safetensors file but not a saved ProbeReport (no probe_report metadata)")
        try:
            return cls(**json.loads(meta), **tensors)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path} is a damaged probe report: its metadata does not parse ({err})") from None


@holds_model
def fit(
    model: Any,
    task: ProbeTask | str,
    *,
    layers: list[int] | None = None,
    site: str = "resid_post",
    control: bool = True,
    seed: int = 0,
    config: ProbeConfig | None = None,
) -> ProbeReport:
    """Train a logistic-regression probe for ``task`` on every requested layer of ``model``.

    Activations are read with one :func:`interp.capture` per batch of prompts (all layers at
    once); examples are split by group (subject), so test subjects are never seen in training.

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`.
        task: A :class:`ProbeTask`, or the name of a reference-world task
            (see :func:`probes.world_task`), built from the model's ``world.json``.
        layers: Layers to probe (default: all).
        site: Where in each block to read: one of ``resid_pre``, ``resid_mid``, ``resid_post``,
            ``attn_out``, ``mlp_out``.
        control: Also fit the Hewitt & Liang control task and report selectivity.
        seed: Seeds the split and the control labels.
        config: Split size, batch size and optimiser settings.

    Returns:
        The :class:`ProbeReport`.

    Raises:
        ValueError: an unknown task, site or layer, or a task whose positions do not fit its prompts.

    Examples:
        >>> report = probes.fit(interp.load("ref-gpt2"), "city_country")  # doctest: +SKIP
        >>> report.to_frame()  # doctest: +SKIP
    """
    config = config or ProbeConfig()
    if isinstance(task, str):
        task = world_task(task, model, seed=seed)
    if site not in SITES:
        raise ValueError(f"site={site!r}; valid sites are {', '.join(SITES)}")
    layers = check_layers(model, layers)
    collected = collect(model, task, layers, site=site, batch_size=config.batch_size)
    report = fit_activations(
        collected.acts,
        task,
        types=collected.token_ids.tolist(),
        layers=layers,
        control=control,
        seed=seed,
        config=config,
    )
    report.model = str(model.cfg.model_name)
    report.site = site
    return report


def fit_activations(
    acts: Float[torch.Tensor, "layer batch d_model"],
    task: ProbeTask,
    *,
    types: list[int] | None = None,
    layers: list[int] | None = None,
    control: bool = True,
    seed: int = 0,
    config: ProbeConfig | None = None,
) -> ProbeReport:
    """Fit probes on activations you already have (one row per task example, per layer).

    Args:
        acts: Activations; ``acts[l, i]`` belongs to ``task.examples[i]``.
        task: Labels and groups of the rows.
        types: Word type of each row for the control task (default: each row's group).
        layers: Layer number of each slice of ``acts`` (default ``0..layer-1``).
        control: Also fit the control task.
        seed: Seeds the split and the control labels.
        config: Split size and optimiser settings.

    Returns:
        A :class:`ProbeReport` (``model`` and ``site`` are empty; :func:`fit` fills them in).

    Raises:
        ValueError: ``acts`` does not have one row per example, or ``layers``/``types`` have the wrong length.
    """
    config = config or ProbeConfig()
    if acts.ndim != 3 or acts.shape[1] != len(task):
        raise ValueError(
            f"acts has shape {tuple(acts.shape)}; expected [layer, {len(task)}, d_model] for task {task.name!r}"
        )
    layers = list(range(acts.shape[0])) if layers is None else list(layers)
    if len(layers) != acts.shape[0]:
        raise ValueError(f"{len(layers)} layer numbers for {acts.shape[0]} slices of acts")
    groups = task.groups
    y = task.label_ids
    split = split_by_group(groups, [str(ex.label) for ex in task.examples], config.test_size, seed)
    n_classes = len(task.labels)
    n_layers = acts.shape[0]
    labels = y.expand(n_layers, -1)
    if control:
        if types is None:
            index: dict[str, int] = {}
            types = [index.setdefault(g, len(index)) for g in groups]
        if len(types) != len(task):
            raise ValueError(f"{len(types)} types for {len(task)} examples")
        yc = torch.tensor(control_labels(types, y.tolist(), n_classes, seed=seed))
        # Control probes are fitted in the same L-BFGS run as the task probes (as extra "layers"):
        # one set of batched products per step instead of two runs.
        acts = torch.cat([acts, acts])
        labels = torch.cat([labels, yc.expand(n_layers, -1)])
    fitted, test_acc, train_acc = _fit_and_score(acts, labels, split, n_classes, config.optimizer)
    control_acc = test_acc[n_layers:] if control else None
    train_counts = torch.bincount(y[split.train], minlength=n_classes)
    majority = float((y[split.test] == train_counts.argmax()).float().mean())
    return ProbeReport(
        task=task.name,
        model="",
        site="",
        layers=layers,
        labels=list(task.labels),
        accuracy=test_acc[:n_layers],
        train_accuracy=train_acc[:n_layers],
        control_accuracy=control_acc,
        majority=majority,
        n_train=len(split.train),
        n_test=len(split.test),
        train_groups=sorted({groups[i] for i in split.train.tolist()}),
        test_groups=sorted({groups[i] for i in split.test.tolist()}),
        weight=fitted.weight[:n_layers].cpu(),
        bias=fitted.bias[:n_layers].cpu(),
    )


def _fit_and_score(
    acts: torch.Tensor, y: Int[torch.Tensor, "layer batch"], split: Any, n_classes: int, optimizer: LogisticConfig
) -> tuple[LogisticFit, list[float], list[float]]:
    fitted = fit_logistic(acts[:, split.train], y[:, split.train], n_classes, optimizer)
    test = (predict(fitted, acts[:, split.test]) == y[:, split.test]).float().mean(dim=1)
    train = (predict(fitted, acts[:, split.train]) == y[:, split.train]).float().mean(dim=1)
    return fitted, test.tolist(), train.tolist()
