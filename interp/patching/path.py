"""Path patching (Wang et al. 2022, "Interpretability in the Wild", appendix B): the effect of one sender on
one receiver through the residual stream, and through nothing else.

Wang et al.'s ``x_orig`` is our **clean** run and ``x_new`` our **corrupted** run. For a sender ``s`` (a head, an
MLP or the token embedding) and a receiver ``r`` (the query, key or value input of a head, or the logits):

1. Run clean and corrupted, and keep every head's output ``z`` on both, and the sender's output.
2. Run **clean** with the sender's output replaced by its corrupted value and every attention head (all layers,
   the receiver included) frozen to its clean ``z``; MLPs and layer norms are recomputed, as in the paper. The
   sender's change so reaches the rest of the model only through the residual stream and the MLPs.
3. If ``r`` is ``logits``, read the metric from run 2. Otherwise keep ``r``'s query, key or value as run 2
   computed it, and run **clean** once more with only that input of ``r`` replaced by the kept value (nothing
   frozen); read the metric.

``effect = patched - clean`` in the metric's units, and ``normalised = (clean - patched) / (clean - corrupted)``,
the share of the clean-corrupted gap the path carries (1: all of it, negative: the path works against it). A
sender at or after the receiver's layer has no path to it: those pairs are not run (NaN). On grouped-query models
a key or value receiver is a key/value head shared by a group of query heads (see :mod:`interp.patching.nodes`).
Several senders share each forward (one copy of the prompts per sender).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from interp.core.capturing import capture
from interp.core.hooks import hook_name
from interp.core.locking import holds_model
from interp.core.model_info import model_info
from interp.core.tokens import Prompts
from interp.patching.metrics import Target, per_patch, resolve_metric
from interp.patching.nodes import Sender, all_senders, parse_receiver, parse_sender
from interp.patching.pairs import prompt_pair
from interp.patching.plots import heatmap
from interp.patching.runs import copy_rows, patched_metric, patches_per_forward


@dataclass
class PathPatching:
    """The metric with each sender -> receiver path patched, and the baselines it is normalised by."""

    model_name: str
    """Display name of the model."""
    metric: str
    """Name of the metric (``"custom"`` for a callable)."""
    senders: list[str]
    """Sender names (rows of :attr:`patched`)."""
    receivers: list[str]
    """Receiver names (columns), canonical (``a{L}.kv{G}<k>`` on grouped-query models)."""
    patched: Float[torch.Tensor, "sender receiver"]
    """The metric with the path patched (NaN where the sender cannot reach the receiver)."""
    clean_metric: float
    """The metric on the clean prompts."""
    corrupted_metric: float
    """The metric on the corrupted prompts."""
    n_layers: int
    """Layers of the model (for the layer x head figure)."""
    n_heads: int
    """Query heads per layer."""

    @property
    def effect(self) -> Float[torch.Tensor, "sender receiver"]:
        """``patched - clean``: how the metric moves when only this path sees the corrupted sender."""
        return self.patched - self.clean_metric

    @property
    def normalised(self) -> Float[torch.Tensor, "sender receiver"]:
        """``(clean - patched) / (clean - corrupted)``: the share of the clean-corrupted gap the path carries."""
        gap = self.clean_metric - self.corrupted_metric
        return -self.effect / gap if gap != 0 else torch.full_like(self.effect, float("nan"))

    def to_frame(self) -> Any:
        """Tidy rows ``sender``, ``receiver``, ``patched``, ``effect``, ``normalised`` (paths that exist only)."""
        import pandas as pd

        rows = [{"sender": s, "receiver": r, "patched": float(self.patched[i, j]), "effect": float(self.effect[i, j]),
                 "normalised": float(self.normalised[i, j])}
                for i, s in enumerate(self.senders) for j, r in enumerate(self.receivers)
                if not torch.isnan(self.patched[i, j])]
        return pd.DataFrame(rows, columns=["sender", "receiver", "patched", "effect", "normalised"])

    def ranked(self, receiver: str | None = None) -> list[tuple[str, float]]:
        """Senders of ``receiver`` (default: the only one) by normalised effect, largest first.

        Raises:
            ValueError: ``receiver`` is not one of :attr:`receivers` (or is omitted with several).
        """
        if receiver is None and len(self.receivers) == 1:
            receiver = self.receivers[0]
        if receiver not in self.receivers:
            raise ValueError(f"receiver={receiver!r}; this result has receivers {', '.join(self.receivers)}")
        column = self.normalised[:, self.receivers.index(receiver)]
        pairs = [(s, float(v)) for s, v in zip(self.senders, column.tolist(), strict=True) if v == v]
        return sorted(pairs, key=lambda pair: -pair[1])

    def figure(self) -> Any:
        """One receiver: a layer x head heat map of the head senders (MLPs in a last column). Several: senders x
        receivers."""
        title = f"{self.model_name}: path patching ({self.metric}; clean {self.clean_metric:.3g}, corrupted " \
                f"{self.corrupted_metric:.3g})"
        if len(self.receivers) == 1:
            grid = torch.full((self.n_layers, self.n_heads + 1), float("nan"))
            for name, value in zip(self.senders, self.normalised[:, 0].tolist(), strict=True):
                if name.startswith("a"):
                    layer, head = (int(t) for t in name[1:].split(".h"))
                    grid[layer, head] = value
                elif name.startswith("m"):
                    grid[int(name[1:]), self.n_heads] = value
            return heatmap(grid, x=[f"H{h}" for h in range(self.n_heads)] + ["MLP"],
                           y=[f"L{layer}" for layer in range(self.n_layers)], title=f"{title} -> {self.receivers[0]}",
                           x_title="sender head", y_title="sender layer", colour_title="path share (normalised)")
        return heatmap(self.normalised, x=self.receivers, y=self.senders, title=title, x_title="receiver",
                       y_title="sender", colour_title="path share (normalised)")


@holds_model
def path_patching(
    model: Any,
    clean: Prompts,
    corrupted: Prompts,
    receivers: str | Sequence[str] = "logits",
    senders: Sequence[str] | None = None,
    metric: str | Callable[..., Any] = "logit_diff",
    *,
    answer: Target = None,
    wrong: Target = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> PathPatching:
    """Path-patch every sender to every receiver (see the module docstring for which run is which).

    Args:
        model: A ``TransformerBridge``.
        clean: Clean prompts (Wang et al.'s ``x_orig``: every run but the corrupted baseline runs these).
        corrupted: Corrupted prompts (``x_new``: where the senders' patched outputs come from), aligned with clean.
        receivers: ``"logits"`` and/or head inputs ``"a{L}.h{H}<q|k|v>"`` (``"a{L}.kv{G}<k|v>"``).
        senders: ``"input"``, ``"a{L}.h{H}"``, ``"m{L}"`` (default: all of them).
        metric: ``"logit_diff"``, ``"prob"``, ``"kl"`` or a callable (:mod:`interp.patching.metrics`).
        answer: Token(s) for ``"logit_diff"``/``"prob"``.
        wrong: Token(s) ``answer`` should beat.
        batch_size: Senders per forward (default: as many as fit a 64 MB logit budget).
        progress: Show a progress bar over the sender batches.

    Returns:
        A :class:`PathPatching`.

    Raises:
        ValueError: a malformed sender or receiver, a bad metric, or prompts that do not line up.

    Examples:
        >>> from interp.core.toy_models import load_toy
        >>> result = path_patching(load_toy(), "The cat sat", "A cat sat", ["a1.h0<k>", "logits"], answer=" on",
        ...                        wrong=" the", progress=False)
        >>> result.patched.shape, result.senders[:3]
        (torch.Size([11, 2]), ['input', 'a0.h0', 'a0.h1'])
    """
    info = model_info(model)
    receiver_list = [parse_receiver(info, r) for r in ([receivers] if isinstance(receivers, str) else receivers)]
    sender_list = [parse_sender(info, s) for s in (all_senders(info) if senders is None else senders)]
    if not receiver_list or not sender_list:
        raise ValueError("pass at least one sender and one receiver")
    pair = prompt_pair(model, clean, corrupted)
    n, width = pair.clean.shape
    z_names = [hook_name("z", layer) for layer in range(info.n_layers)]
    sender_names = sorted({_sender_hook(s) for s in sender_list if s.kind != "head"})
    clean_cap = capture(model, pair.clean, names=z_names)
    corrupted_cap = capture(model, pair.corrupted, names=z_names + sender_names)
    score = resolve_metric(model, metric, pair.last, clean_cap.logits, answer, wrong)
    clean_metric = float(per_patch(score(clean_cap.logits), n)[0])
    corrupted_metric = float(per_patch(score(corrupted_cap.logits), n)[0])

    patched = torch.full((len(sender_list), len(receiver_list)), float("nan"))
    per_forward = patches_per_forward(model, n, width, batch_size)
    chunks = [list(range(s, min(s + per_forward, len(sender_list)))) for s in range(0, len(sender_list), per_forward)]
    inputs = sorted({(r.kind, r.layer) for r in receiver_list if r.kind != "logits"})
    for chunk in tqdm(chunks, desc="path patching", disable=not progress):
        senders_here = [sender_list[i] for i in chunk]
        kept: dict[tuple[str, int], torch.Tensor] = {}
        hooks = _frozen_run_hooks(info.n_layers, senders_here, clean_cap, corrupted_cap, n)
        hooks += [(hook_name(kind, layer), _keeper(kept, (kind, layer))) for kind, layer in inputs]
        frozen = patched_metric(model, pair.clean, len(chunk), hooks, score)
        for j, receiver in enumerate(receiver_list):
            reachable = [c for c, s in enumerate(senders_here) if s.upstream_of(receiver)]
            if not reachable:
                continue
            if receiver.kind == "logits":
                values = frozen
            else:
                name = hook_name(receiver.kind, receiver.layer)
                values = patched_metric(model, pair.clean, len(chunk),
                                        [(name, _input_patcher(kept[(receiver.kind, receiver.layer)], receiver.head,
                                                               reachable, n))], score)
            for c in reachable:
                patched[chunk[c], j] = float(values[c])
    return PathPatching(
        model_name=info.display_name, metric=metric if isinstance(metric, str) else "custom",
        senders=[s.name for s in sender_list], receivers=[r.name for r in receiver_list], patched=patched,
        clean_metric=clean_metric, corrupted_metric=corrupted_metric, n_layers=info.n_layers, n_heads=info.n_heads,
    )


def _sender_hook(sender: Sender) -> str:
    if sender.kind == "head":
        return hook_name("z", sender.layer)
    return hook_name("mlp_out", sender.layer) if sender.kind == "mlp" else hook_name("embed")


def _frozen_run_hooks(n_layers: int, senders: list[Sender], clean_cap: Any, corrupted_cap: Any, n: int) -> list:
    """Run 2's hooks: every head's ``z`` frozen to clean, copy ``c`` with sender ``c`` set to its corrupted value."""
    hooks = []
    for layer in range(n_layers):
        name = hook_name("z", layer)
        heads = [(c, s.head) for c, s in enumerate(senders) if s.kind == "head" and s.layer == layer]
        hooks.append((name, _freezer(clean_cap[name], corrupted_cap[name], heads, len(senders), n)))
    for c, sender in enumerate(senders):
        if sender.kind != "head":
            hooks.append((_sender_hook(sender), _replacer(corrupted_cap[_sender_hook(sender)], c, n)))
    return hooks


def _freezer(clean_z: torch.Tensor, corrupted_z: torch.Tensor, heads: list[tuple[int, int]], k: int, n: int) -> Any:
    def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:
        frozen = clean_z.to(z.dtype).repeat(k, 1, 1, 1)
        for copy, head in heads:
            frozen[copy_rows(copy, n), :, head] = corrupted_z[:, :, head].to(z.dtype)
        return frozen

    return hook


def _replacer(corrupted: torch.Tensor, copy: int, n: int) -> Any:
    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        x[copy_rows(copy, n)] = corrupted.to(x.dtype)
        return x

    return hook


def _keeper(kept: dict, key: tuple[str, int]) -> Any:
    def hook(x: torch.Tensor, hook: Any) -> None:
        kept[key] = x.detach().clone()

    return hook


def _input_patcher(values: torch.Tensor, head: int, copies: list[int], n: int) -> Any:
    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        for copy in copies:
            rows = copy_rows(copy, n)
            x[rows, :, head] = values[rows, :, head].to(x.dtype)
        return x

    return hook

