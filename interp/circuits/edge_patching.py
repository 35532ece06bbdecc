"""Exact edge patching: run the clean prompts with chosen edges carrying their corrupted values.

A removed edge ``s -> r`` makes receiver ``r`` read ``in_r + out_s(corrupted) - out_s(this run)``, where
``out_s(this run)`` is the sender's output in the patched run itself (so upstream changes propagate) and
``out_s(corrupted)`` comes from a corrupted forward pass. Removing every edge gives the corrupted run; removing
none gives the clean run. This is what ACDC and the public EAP-IG code's ``evaluate_graph`` do.

How each receiver is patched through the hook layer:

- a head's q/k/v input: ``hook_q``/``hook_k``/``hook_v`` of that head is replaced by
  ``norm(resid_pre + delta) @ W + b`` (:meth:`interp.circuits.reads.Reads.project`);
- an MLP input: ``resid_mid`` gets ``+ delta`` (the bridge's ``hook_resid_mid`` is the MLP norm's input hook,
  so only the MLP sees it; the tests check that removing every edge reproduces the corrupted run);
- the logits: the last ``resid_post`` gets ``+ delta``.

Many masks run at once: variant ``e`` of a chunk is rows ``e * batch .. (e + 1) * batch`` of one big batch.

:func:`masked_logits` runs the same patching with a float mask and gradients (Edge Pruning,
:mod:`interp.circuits.edge_pruning`): edge ``s -> r`` carries ``keep[s, r]`` of its clean value, and every receiver
is recomputed from its (patched) input so that gradients reach every entry.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from tqdm.auto import tqdm

from interp.circuits.attribution import sender_outputs
from interp.circuits.graph import EdgeGraph
from interp.circuits.reads import Reads
from interp.circuits.tasks import CircuitTask
from interp.core.hooks import hook_name, hooked

CHUNK_BYTES = 256 * 2**20
"""Rough memory one chunk of variants may take for the senders' outputs (the largest buffer)."""


def patched_metrics(
    model: Any, graph: EdgeGraph, task: CircuitTask, removed: Bool[torch.Tensor, "variant sender receiver"], *,
    corrupted: Float[torch.Tensor, "batch pos sender d_model"] | None = None, progress: bool = False,
) -> Float[torch.Tensor, " variant"]:
    """The task's metric on the clean prompts with ``removed[e]``'s edges patched, for each variant ``e``."""
    reads = Reads.of(model)
    if corrupted is None:
        corrupted = sender_outputs(model, reads, task.corrupted)[0]
    batch, pos, n_senders, d_model = corrupted.shape
    removed = removed & graph.valid
    chunk = max(1, CHUNK_BYTES // (batch * pos * n_senders * d_model * corrupted.element_size()))
    values = []
    starts = range(0, len(removed), chunk)
    for start in tqdm(starts, desc="edge patching", disable=not progress or len(starts) < 2):
        part = removed[start : start + chunk]
        logits = _patched_run(model, reads, graph, task.clean, corrupted, part)
        values += [task.metric(piece) for piece in logits.split(batch)]
    return torch.stack(values).float().cpu()


def masked_logits(
    model: Any, reads: Reads, graph: EdgeGraph, clean: Int[torch.Tensor, "batch pos"],
    corrupted: Float[torch.Tensor, "batch pos sender d_model"], keep: Float[torch.Tensor, "sender receiver"],
) -> Float[torch.Tensor, "batch pos vocab"]:
    """Logits of the clean run where each edge ``s -> r`` carries ``keep[s, r]`` of its clean value, differentiable.

    Receiver ``r`` reads ``in_r + sum_s (1 - keep[s, r]) (out_s(corrupted) - out_s(this run))`` over valid edges:
    ``keep`` all ones is the clean run, all zeros the corrupted one, a 0/1 ``keep`` the same as
    :func:`patched_metrics` with ``removed = valid & ~keep``. Runs with gradients (the caller's autograd mode);
    ``corrupted`` is :func:`interp.circuits.attribution.sender_outputs`' first output on the corrupted prompts.
    """
    removed = (1 - keep) * graph.valid.to(keep.device, keep.dtype)
    return _patched_run(model, reads, graph, clean, corrupted, removed)


def _patched_run(
    model: Any, reads: Reads, graph: EdgeGraph, clean: torch.Tensor, corrupted: torch.Tensor, removed: torch.Tensor
) -> torch.Tensor:
    """Boolean ``removed [variant sender receiver]``: the variants' logits stacked on the batch, under no_grad,
    receivers with no removed edge left as they are. Float ``removed [sender receiver]`` (the share of each edge
    patched): one variant, with gradients, every receiver recomputed (see :func:`masked_logits`)."""
    info = reads.info
    soft = removed.is_floating_point()
    if soft:
        removed = removed[None]
    n_var, batch = len(removed), len(clean)
    mask = removed.to(corrupted.device, corrupted.dtype)
    # ``corrupted - this run`` per block of senders as it is written, sender-major so a receiver group's delta is one
    # batched product per block: (first sender, [variant k batch*pos*d_model]).
    diffs: list[tuple[int, torch.Tensor]] = []
    state: dict[str, torch.Tensor] = {}

    def add_block(mine: torch.Tensor) -> None:
        """Record the differences of the senders written by one hook, ``mine`` [variant*batch pos k d_model]."""
        first = diffs[-1][0] + diffs[-1][1].shape[1] if diffs else 0
        k = mine.shape[2]
        diff = corrupted[None, :, :, first:first + k] - mine.view(n_var, batch, *mine.shape[1:])
        diffs.append((first, diff.permute(0, 3, 1, 2, 4).reshape(n_var, k, -1)))

    def delta(receivers: slice) -> torch.Tensor | None:
        """Summed ``corrupted - this run`` over each receiver's removed senders, [variant*batch pos n d_model], or
        None when no variant removes any edge into these receivers."""
        total = None
        for first, diff in diffs:
            m = mask[:, first:first + diff.shape[1], receivers]
            if not soft and not m.any():
                continue
            part = torch.bmm(m.transpose(1, 2), diff)
            total = part if total is None else total + part
        if total is None:
            return None
        n = total.shape[1]
        pos, d_model = corrupted.shape[1], corrupted.shape[3]
        return total.view(n_var, n, batch, pos, d_model).permute(0, 2, 3, 1, 4).reshape(n_var * batch, pos, n, d_model)

    def on_pre(layer: int):
        def hook(x: torch.Tensor, hook: Any) -> None:
            state["pre"] = x
            if layer == 0:
                add_block(x[:, :, None])

        return hook

    def on_read(which: str, layer: int):
        rows, _ = graph.layer_slices(layer)
        h, g = info.n_heads, info.n_kv_heads
        offset = {"q": 0, "k": h, "v": h + g}[which]
        count = h if which == "q" else g
        receivers = slice(rows.start + offset, rows.start + offset + count)

        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor | None:
            d = delta(receivers)
            if d is None:
                return None
            new = reads.project(which, layer, state["pre"][:, :, None] + d)
            if soft:
                return new.to(x.dtype)
            touched = removed[:, :, receivers].any(1)  # [variant n]
            keep = touched.repeat_interleave(batch, 0)[:, None, :, None].to(x.device)
            return torch.where(keep, new.to(x.dtype), x)

        return hook

    def on_heads(layer: int):
        def hook(z: torch.Tensor, hook: Any) -> None:
            add_block(reads.head_outputs(layer, z))

        return hook

    def add_to(receiver: int):
        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor | None:
            d = delta(slice(receiver, receiver + 1))
            return None if d is None else x + d[:, :, 0]

        return hook

    def on_mlp(x: torch.Tensor, hook: Any) -> None:
        add_block(x[:, :, None])

    hooks = []
    for layer in range(info.n_layers):
        hooks.append((hook_name("resid_pre", layer), on_pre(layer)))
        hooks += [(hook_name(which, layer), on_read(which, layer)) for which in "qkv"]
        hooks.append((hook_name("z", layer), on_heads(layer)))
        hooks.append((hook_name("resid_mid", layer), add_to(graph.mlp_receiver(layer))))
        hooks.append((hook_name("mlp_out", layer), on_mlp))
    hooks.append((hook_name("resid_post", info.n_layers - 1), add_to(len(graph.receivers) - 1)))
    with torch.set_grad_enabled(soft and torch.is_grad_enabled()), hooked(model, hooks):
        return model(clean.repeat(n_var, 1))


def exact_scores(
    model: Any, graph: EdgeGraph, task: CircuitTask, *, progress: bool = False
) -> Float[torch.Tensor, "sender receiver"]:
    """Each edge's metric change when it alone carries its corrupted value (one patched run per edge)."""
    edges = graph.valid.nonzero().tolist()
    removed = torch.zeros(len(edges) + 1, *graph.valid.shape, dtype=torch.bool)
    for i, (s, r) in enumerate(edges, start=1):
        removed[i, s, r] = True
    values = patched_metrics(model, graph, task, removed, progress=progress)
    scores = torch.zeros(graph.valid.shape)
    for i, (s, r) in enumerate(edges, start=1):
        scores[s, r] = values[i] - values[0]
    return scores
