"""Edge attribution patching: EAP and EAP-IG scores for every edge of an :class:`EdgeGraph`.

An edge ``s -> r``'s score estimates the change of the metric when receiver ``r`` reads sender ``s``'s
corrupted output instead of its clean one, everything else clean:

    score(s -> r) = sum over prompts and positions of (out_s(corrupted) - out_s(clean)) . dmetric/d in_r

averaged over prompts (the metric is a mean), with the gradient taken with respect to the receiver's own input
(before its norm; see :mod:`interp.circuits.reads`). Senders' outputs come from one clean and one corrupted
forward pass.

- EAP (Syed et al., 2023): the gradient at the clean run. Cost: 1 forward (corrupted) + 1 forward-and-backward.
- EAP-IG (Hanna et al., 2024): the gradient averaged over ``steps`` runs whose input embedding goes from the
  corrupted one towards the clean one, ``corrupted + k/steps (clean - corrupted)`` for ``k = 0 .. steps - 1``
  (the public EAP-IG code's schedule). Cost: 2 forwards + ``steps`` forward-and-backwards.

Everything runs through :func:`interp.core.hooks.hooked`.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from interp.circuits.graph import EdgeGraph
from interp.circuits.reads import Reads
from interp.circuits.tasks import CircuitTask
from interp.core.hooks import hook_name, hooked


def sender_outputs(
    model: Any, reads: Reads, tokens: torch.Tensor
) -> tuple[Float[torch.Tensor, "batch pos sender d_model"], Float[torch.Tensor, "batch pos vocab"]]:
    """Every sender's output on ``tokens`` (in :attr:`EdgeGraph.senders` order) and the run's logits."""
    outs: list[torch.Tensor] = []
    n_layers = reads.info.n_layers

    def keep_input(x: torch.Tensor, hook: Any) -> None:
        outs.append(x.detach()[:, :, None])

    def keep_heads(layer: int):
        def hook(z: torch.Tensor, hook: Any) -> None:
            outs.append(reads.head_outputs(layer, z.detach()))

        return hook

    def keep_mlp(x: torch.Tensor, hook: Any) -> None:
        outs.append(x.detach()[:, :, None])

    hooks = [(hook_name("resid_pre", 0), keep_input)]
    for layer in range(n_layers):
        hooks += [(hook_name("z", layer), keep_heads(layer)), (hook_name("mlp_out", layer), keep_mlp)]
    with torch.no_grad(), hooked(model, hooks):
        logits = model(tokens)
    return torch.cat(outs, dim=2), logits


def receiver_grads(
    model: Any, reads: Reads, task: CircuitTask, input_embedding: torch.Tensor | None = None
) -> tuple[Float[torch.Tensor, "batch pos receiver d_model"], Float[torch.Tensor, "batch pos sender d_model"]]:
    """The metric's gradient with respect to every receiver's input, and the run's sender outputs.

    One forward-and-backward pass on ``task.clean`` (both results in :class:`EdgeGraph` order).
    ``input_embedding`` replaces the input (``resid_pre`` of block 0) when given: EAP-IG's interpolation.
    """
    n_layers = reads.info.n_layers
    kept: dict[str, torch.Tensor] = {}
    outs: list[torch.Tensor] = []

    def keep(key: str, write: bool = False):
        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            if key == "resid_pre0":
                # A leaf that needs grad, so the graph is built from here whether or not the weights need grad.
                x = (x if input_embedding is None else input_embedding).detach().clone().requires_grad_(True)
                outs.append(x.detach()[:, :, None])
            elif key.startswith("z"):
                outs.append(reads.head_outputs(int(key[1:]), x.detach()))
            elif key.startswith("mlp_out"):
                outs.append(x.detach()[:, :, None])
            elif key.startswith("resid_mid"):
                # The bridge's hook_resid_mid feeds only the MLP's norm: a node of its own gets the MLP input's
                # gradient, without the skip connection's.
                x = x.clone()
            kept[key] = x
            # Returned even when unchanged: the bridge carries on with a hook's return value, so only a returned
            # tensor is on the path to the metric.
            return x

        return hook

    sites = ("resid_pre", "q", "k", "v", "z", "resid_mid", "mlp_out", "resid_post")
    hooks = [(hook_name(site, layer), keep(f"{site}{layer}")) for layer in range(n_layers) for site in sites]
    with torch.enable_grad(), hooked(model, hooks):
        value = task.metric(model(task.clean))
        wanted = [f"{site}{layer}" for layer in range(n_layers) for site in ("q", "k", "v", "resid_mid")]
        wanted.append(f"resid_post{n_layers - 1}")
        found = torch.autograd.grad(value, [kept[k] for k in wanted], allow_unused=True)
    grads = {k: torch.zeros_like(kept[k]) if g is None else g for k, g in zip(wanted, found, strict=True)}
    out = []
    for layer in range(n_layers):
        x = kept[f"resid_pre{layer}"].detach()
        out += [reads.input_grad(which, layer, x, grads[f"{which}{layer}"]) for which in "qkv"]
        out.append(grads[f"resid_mid{layer}"][:, :, None])
    out.append(grads[f"resid_post{n_layers - 1}"][:, :, None])
    return torch.cat(out, dim=2), torch.cat(outs, dim=2)


def edge_scores(
    graph: EdgeGraph, diff: Float[torch.Tensor, "batch pos sender d_model"],
    grads: Float[torch.Tensor, "batch pos receiver d_model"],
) -> Float[torch.Tensor, "sender receiver"]:
    """``sum_{batch,pos} diff . grads`` for every pair, zero where no edge exists."""
    scores = torch.einsum("bpsd,bprd->sr", diff.float(), grads.float())
    return scores * graph.valid.to(scores.device)


def eap_scores(
    model: Any, graph: EdgeGraph, task: CircuitTask, *, steps: int | None = None, progress: bool = False
) -> Float[torch.Tensor, "sender receiver"]:
    """EAP scores (``steps=None``) or EAP-IG scores with ``steps`` interpolation steps."""
    if steps is not None and steps < 1:
        raise ValueError(f"steps={steps}; EAP-IG needs at least 1 step")
    reads = Reads.of(model)
    corrupted, _ = sender_outputs(model, reads, task.corrupted)
    if steps is None:
        grads, clean = receiver_grads(model, reads, task)
        return edge_scores(graph, corrupted - clean, grads)
    clean, _ = sender_outputs(model, reads, task.clean)
    start, end = corrupted[:, :, 0], clean[:, :, 0]
    total = None
    for k in tqdm(range(steps), desc="EAP-IG steps", disable=not progress):
        grads, _ = receiver_grads(model, reads, task, start + (k / steps) * (end - start))
        total = grads if total is None else total.add_(grads)
    return edge_scores(graph, corrupted - clean, total / steps)
