"""Activation patching: run the corrupted prompt, restore one clean activation, and see how much comes back.

For each patch (a site at one layer, at one position or all positions, for one head or neuron or all of the
site), the corrupted prompt runs with that piece of activation replaced by its value on the clean prompt, and
the metric is read at the last real token. ``normalised = (patched - corrupted) / (clean - corrupted)``: 1 means
the patch restores the clean behaviour, 0 means it changes nothing. Several patches share one forward (the
prompts are repeated once per patch in the batch), and every hook goes through :func:`interp.core.hooks.hooked`.
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
from interp.core.model_info import ModelInfo, check_layer, model_info
from interp.core.tokens import Prompts
from interp.patching.metrics import Target, per_patch, resolve_metric
from interp.patching.pairs import prompt_pair
from interp.patching.plots import heatmap
from interp.patching.runs import copy_rows, patched_metric, patches_per_forward

SITES = ("attn_out", "k", "mlp_out", "neurons", "pattern", "q", "resid_mid", "resid_post", "resid_pre", "v", "z")
"""Sites :func:`activation_patching` patches (hook sites of :mod:`interp.core.hooks`)."""

_HEAD_SITES = ("k", "pattern", "q", "v", "z")


@dataclass
class ActivationPatching:
    """The metric after each patch, with the clean and corrupted baselines it is normalised by."""

    model_name: str
    """Display name of the model (see :attr:`interp.ModelInfo.display_name`)."""
    site: str
    """The patched site (one of :data:`SITES`)."""
    metric: str
    """Name of the metric (``"custom"`` for a callable)."""
    layers: list[int]
    """Layers patched, in order (the first axis of :attr:`patched`)."""
    positions: list[int | None]
    """Positions patched (the second axis); ``None`` means all positions at once."""
    units: list[int | None]
    """Heads (key/value heads for ``k`` and ``v``) or neurons patched (the third axis); ``None``: the whole site."""
    unit_kind: str | None
    """``"head"``, ``"kv_head"``, ``"neuron"``, or ``None`` for residual-stream-shaped sites."""
    labels: list[str]
    """``"{position}: {token}"`` of the first clean prompt, by position."""
    patched: Float[torch.Tensor, "layer position unit"]
    """The metric (mean over prompts) with each patch applied to the corrupted run."""
    clean_metric: float
    """The metric on the clean prompts, unpatched."""
    corrupted_metric: float
    """The metric on the corrupted prompts, unpatched."""

    @property
    def effect(self) -> Float[torch.Tensor, "layer position unit"]:
        """Raw effect: ``patched - corrupted`` in the metric's units."""
        return self.patched - self.corrupted_metric

    @property
    def normalised(self) -> Float[torch.Tensor, "layer position unit"]:
        """``(patched - corrupted) / (clean - corrupted)``: 1 restores the clean metric, 0 does nothing."""
        gap = self.clean_metric - self.corrupted_metric
        return self.effect / gap if gap != 0 else torch.full_like(self.effect, float("nan"))

    def to_frame(self) -> Any:
        """Tidy rows: ``layer``, ``position`` (None = all), ``token``, the unit column (``head``, ``kv_head`` or
        ``neuron``; absent for whole-site patches), ``patched``, ``effect``, ``normalised``."""
        import pandas as pd

        rows = []
        for i, layer in enumerate(self.layers):
            for j, pos in enumerate(self.positions):
                for u, unit in enumerate(self.units):
                    row = {"layer": layer, "position": pos, "token": "all" if pos is None else self.labels[pos]}
                    if self.unit_kind is not None:
                        row[self.unit_kind] = unit
                    row.update(patched=float(self.patched[i, j, u]), effect=float(self.effect[i, j, u]),
                               normalised=float(self.normalised[i, j, u]))
                    rows.append(row)
        return pd.DataFrame(rows)

    def figure(self) -> Any:
        """Heat map of the normalised effect: layer x position, layer x head (one position), or layer.head x pos."""
        values = self.normalised
        x_title = "position"
        x = ["all" if p is None else self.labels[p] for p in self.positions]
        unit = {"head": "H", "kv_head": "KV", "neuron": "N"}.get(self.unit_kind or "", "")
        if len(self.units) == 1:
            grid, y = values[:, :, 0], [f"L{layer}" for layer in self.layers]
        elif len(self.positions) == 1:
            grid, y, x, x_title = values[:, 0, :], [f"L{layer}" for layer in self.layers], [
                f"{unit}{u}" for u in self.units], (self.unit_kind or "unit").replace("_", " ")
        else:
            grid = values.permute(0, 2, 1).reshape(-1, len(x))
            y = [f"L{layer}{unit}{u}" for layer in self.layers for u in self.units]
        title = (f"{self.model_name}: activation patching of {self.site} ({self.metric}; clean "
                 f"{self.clean_metric:.3g}, corrupted {self.corrupted_metric:.3g})")
        return heatmap(grid, x=x, y=y, title=title, x_title=x_title, y_title="layer",
                       colour_title="restored (normalised)")


@holds_model
def activation_patching(
    model: Any,
    clean: Prompts,
    corrupted: Prompts,
    site: str = "resid_pre",
    metric: str | Callable[..., Any] = "logit_diff",
    *,
    answer: Target = None,
    wrong: Target = None,
    positions: Sequence[int] | str | None = None,
    layers: Sequence[int] | None = None,
    units: Sequence[int] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> ActivationPatching:
    """Patch clean activations of ``site`` into the corrupted run, one piece at a time, and measure.

    The corrupted prompts run; at the patched layer, position and unit the activation is replaced by the clean
    run's, and the metric is read at each prompt's last real token and averaged over the prompts.

    Args:
        model: A ``TransformerBridge``.
        clean: Clean prompts (the behaviour to restore).
        corrupted: Corrupted prompts, one per clean prompt, of the same token length pair by pair.
        site: What to patch, one of :data:`SITES`: the residual stream (``resid_pre``/``mid``/``post``), a
            layer's ``attn_out``/``mlp_out``, per-head ``z``/``q``/``k``/``v``/``pattern`` (``k``/``v`` have one
            unit per key/value head on grouped-query models; ``pattern`` is patched by query position), or MLP
            ``neurons``.
        metric: ``"logit_diff"``, ``"prob"``, ``"kl"`` or a callable (:mod:`interp.patching.metrics`).
        answer: Token(s) for ``"logit_diff"`` and ``"prob"``: one for all prompts or one per prompt.
        wrong: Token(s) ``answer`` should beat, for ``"logit_diff"``.
        positions: Positions patched one at a time; ``"all"`` patches every position at once; ``None`` (default)
            means every position one at a time, except for ``neurons`` where it means all at once (sized: one
            patch per neuron and position would be ``d_mlp x pos`` forwards per layer).
        layers: Layers to patch (default all).
        units: Heads or neurons patched one at a time (default all of them); ignored by whole-site sites.
        batch_size: Patches per forward (default: as many as fit a 64 MB logit budget).
        progress: Show a progress bar over the forwards.

    Returns:
        An :class:`ActivationPatching`.

    Raises:
        ValueError: an unknown site or metric, a bad layer, position or unit, or prompts that do not line up.

    Examples:
        >>> from interp.core.toy_models import load_toy
        >>> result = activation_patching(load_toy(), "The cat sat", "A cat sat", answer=" on", wrong=" the",
        ...                              progress=False)
        >>> result.patched.shape, result.to_frame().columns.tolist()
        (torch.Size([2, 5, 1]), ['layer', 'position', 'token', 'patched', 'effect', 'normalised'])
    """
    info = model_info(model)
    if site not in SITES:
        raise ValueError(f"site={site!r}; valid sites are {', '.join(SITES)}")
    pair = prompt_pair(model, clean, corrupted)
    n, width = pair.clean.shape
    layers = list(range(info.n_layers)) if layers is None else [check_layer(info, int(layer)) for layer in layers]
    pos_list = _positions(positions, site, width)
    unit_kind, unit_list = _units(info, site, units)
    names = [hook_name(site, layer) for layer in layers]
    clean_cap = capture(model, pair.clean, names=sorted(set(names)))
    score = resolve_metric(model, metric, pair.last, clean_cap.logits, answer, wrong)
    corrupted_metric = float(patched_metric(model, pair.corrupted, 1, [], score)[0])
    clean_metric = float(per_patch(score(clean_cap.logits), n)[0])

    patches = [(i, j, u) for i in range(len(layers)) for j in range(len(pos_list)) for u in range(len(unit_list))]
    per_forward = patches_per_forward(model, n, width, batch_size)
    patched = torch.empty(len(layers), len(pos_list), len(unit_list))
    chunks = [patches[s:s + per_forward] for s in range(0, len(patches), per_forward)]
    for chunk in tqdm(chunks, desc=f"patching {site}", disable=not progress):
        hooks = []
        for i in sorted({i for i, _, _ in chunk}):
            jobs = [(c, pos_list[j], unit_list[u]) for c, (ii, j, u) in enumerate(chunk) if ii == i]
            hooks.append((names[i], _patcher(site, clean_cap[names[i]], jobs, n)))
        values = patched_metric(model, pair.corrupted, len(chunk), hooks, score)
        for value, (i, j, u) in zip(values.tolist(), chunk, strict=True):
            patched[i, j, u] = value
    return ActivationPatching(
        model_name=info.display_name, site=site, metric=metric if isinstance(metric, str) else "custom",
        layers=layers, positions=pos_list, units=unit_list, unit_kind=unit_kind, labels=pair.labels,
        patched=patched, clean_metric=clean_metric, corrupted_metric=corrupted_metric,
    )


def _positions(positions: Sequence[int] | str | None, site: str, width: int) -> list[int | None]:
    if positions is None:
        return [None] if site == "neurons" else list(range(width))
    if isinstance(positions, str):
        if positions != "all":
            raise ValueError(f"positions={positions!r}; pass 'all', None or a list of positions 0..{width - 1}")
        return [None]
    out = []
    for p in positions:
        if isinstance(p, bool) or not isinstance(p, int) or not -width <= p < width:
            raise ValueError(f"position {p!r} is outside the prompts' positions 0..{width - 1}")
        out.append(p % width)
    return out


def _units(info: ModelInfo, site: str, units: Sequence[int] | None) -> tuple[str | None, list[int | None]]:
    if site in _HEAD_SITES:
        kind, count = ("kv_head", info.n_kv_heads) if site in ("k", "v") and info.is_gqa else ("head", info.n_heads)
    elif site == "neurons":
        kind, count = "neuron", info.d_mlp
    else:
        return None, [None]
    chosen = list(range(count)) if units is None else list(units)
    for u in chosen:
        if isinstance(u, bool) or not isinstance(u, int) or not 0 <= u < count:
            raise ValueError(f"unit {u!r}; site {site!r} has {kind.replace('_', ' ')}s 0..{count - 1}")
    return kind, chosen


def _patcher(site: str, clean: torch.Tensor, jobs: list[tuple[int, int | None, int | None]], n: int) -> Any:
    """A hook that writes, for each job ``(copy, position, unit)``, the clean values into that copy's rows."""
    pos_dim, unit_dim = (2, 1) if site == "pattern" else (1, 2)

    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        for copy, pos, unit in jobs:
            index: list[Any] = [slice(None)] * x.ndim
            if pos is not None:
                index[pos_dim] = pos
            if unit is not None:
                index[unit_dim] = unit
            x[(copy_rows(copy, n), *index[1:])] = clean[(slice(None), *index[1:])].to(x.dtype)
        return x

    return hook
