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
  (the public EAP-IG code's schedule). Step 0 IS the corrupted run, so it also gives the corrupted outputs.
  Cost: 1 forward (clean) + ``steps`` forward-and-backwards.

Why it is cheap: a q/k/v receiver's gradient is the gradient at ``hook_q`` pulled back through the head's weights
and the norm's Jacobian (:meth:`interp.circuits.reads.Reads.folded`), ``(g @ fold - xhat (g . q') / d) / scale``.
Each run keeps only ``g / scale`` (summed over runs, head-sized), one number per head and position and the run's
``xhat``; the ``d_model``-sized receiver gradients are built once, after the last run, with one batched matmul
per layer, and contracted with the senders' differences one layer at a time (only the senders before it).

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


def _sender_hooks(reads: Reads, blocks: list[torch.Tensor]) -> list[tuple[str, Any]]:
    """Hooks appending each layer's sender outputs (``[batch pos k d_model]`` blocks, in sender order) to ``blocks``."""

    def keep_heads(layer: int):
        def hook(z: torch.Tensor, hook: Any) -> None:
            blocks.append(reads.head_outputs(layer, z.detach()))

        return hook

    def keep_mlp(x: torch.Tensor, hook: Any) -> None:
        blocks.append(x.detach()[:, :, None])

    hooks = []
    for layer in range(reads.info.n_layers):
        hooks += [(hook_name("z", layer), keep_heads(layer)), (hook_name("mlp_out", layer), keep_mlp)]
    return hooks


def _sender_blocks(model: Any, reads: Reads, tokens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The sender outputs on ``tokens`` as ``[batch pos k d_model]`` blocks (input, per layer heads and MLP), logits."""
    blocks: list[torch.Tensor] = []

    def keep_input(x: torch.Tensor, hook: Any) -> None:
        blocks.append(x.detach()[:, :, None])

    with torch.no_grad(), hooked(model, [(hook_name("resid_pre", 0), keep_input), *_sender_hooks(reads, blocks)]):
        logits = model(tokens)
    return blocks, logits


def sender_outputs(
    model: Any, reads: Reads, tokens: torch.Tensor
) -> tuple[Float[torch.Tensor, "batch pos sender d_model"], Float[torch.Tensor, "batch pos vocab"]]:
    """Every sender's output on ``tokens`` (in :attr:`EdgeGraph.senders` order) and the run's logits."""
    blocks, logits = _sender_blocks(model, reads, tokens)
    return torch.cat(blocks, dim=2), logits


class _Gradients:
    """What the runs leave for the receivers' gradients, per layer: sums over runs, and per-run pieces.

    ``heads[L]``: sum of ``g / scale`` at layer ``L``'s q, k, v hooks ``[batch pos n d_head]``; ``coef[L]``: per
    run ``(g / scale) . (act - offset) / d_model`` ``[batch pos n]``; ``xhat[L]``: per run the standardized
    ``resid_pre`` ``[batch pos d_model]``; ``mlp[L]`` and ``logits``: summed gradients at the MLP's and the final
    norm's input. Sums start at 0 and become tensors at the first run.
    """

    def __init__(self, n_layers: int) -> None:
        self.runs = 0
        self.heads: list[Any] = [0] * n_layers
        self.mlp: list[Any] = [0] * n_layers
        self.logits: Any = 0
        self.coef: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]
        self.xhat: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]


def _gradient_run(
    model: Any, reads: Reads, offsets: torch.Tensor, task: CircuitTask, into: _Gradients, *,
    tokens: torch.Tensor | None = None, input_embedding: torch.Tensor | None = None,
    senders: list[torch.Tensor] | None = None,
) -> None:
    """One forward-and-backward of ``task.metric`` on ``tokens`` (default ``task.clean``), added to ``into``.

    ``input_embedding`` replaces the input (``resid_pre`` of block 0) when given: EAP-IG's interpolation.
    ``senders``, when given, receives the run's sender outputs (input first), as :func:`sender_outputs` does.
    """
    n_layers = reads.info.n_layers
    kept: dict[str, torch.Tensor] = {}

    def keep(key: str):
        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            if key == "resid_pre0":
                # A leaf that needs grad, so the graph is built from here whether or not the weights need grad.
                x = (x if input_embedding is None else input_embedding).detach().clone().requires_grad_(True)
                if senders is not None:
                    senders.insert(0, x.detach()[:, :, None])
            elif key.startswith("resid_mid"):
                # The bridge's hook_resid_mid feeds only the MLP's norm: a node of its own gets the MLP input's
                # gradient, without the skip connection's.
                x = x.clone()
            kept[key] = x
            # Returned even when unchanged: the bridge carries on with a hook's return value, so only a returned
            # tensor is on the path to the metric.
            return x

        return hook

    sites = ("resid_pre", "q", "k", "v", "resid_mid")
    hooks = [(hook_name(site, layer), keep(f"{site}{layer}")) for layer in range(n_layers) for site in sites]
    hooks.append((hook_name("resid_post", n_layers - 1), keep("logits")))
    if senders is not None:
        hooks += _sender_hooks(reads, senders)
    wanted = [f"{site}{layer}" for layer in range(n_layers) for site in ("q", "k", "v", "resid_mid")] + ["logits"]
    with torch.enable_grad(), hooked(model, hooks):
        value = task.metric(model(task.clean if tokens is None else tokens))
        found = torch.autograd.grad(value, [kept[k] for k in wanted], allow_unused=True)
    grads = {k: torch.zeros_like(kept[k]) if g is None else g for k, g in zip(wanted, found, strict=True)}
    with torch.no_grad():
        for layer in range(n_layers):
            xhat, scale = reads.norms[layer].standardize(kept[f"resid_pre{layer}"].detach().float())
            g = torch.cat([grads[f"{w}{layer}"] for w in "qkv"], dim=2).float() / scale[..., None]
            act = torch.cat([kept[f"{w}{layer}"].detach() for w in "qkv"], dim=2).float() - offsets[layer]
            into.coef[layer].append(torch.einsum("bpne,bpne->bpn", g, act) / reads.info.d_model)
            into.xhat[layer].append(xhat)
            into.heads[layer] = g + into.heads[layer]
            into.mlp[layer] = grads[f"resid_mid{layer}"].float() + into.mlp[layer]
        into.logits = grads["logits"].float() + into.logits
    into.runs += 1


def _scores(
    graph: EdgeGraph, folds: torch.Tensor, diff: Float[torch.Tensor, "sender batch pos d_model"], grads: _Gradients
) -> Float[torch.Tensor, "sender receiver"]:
    """``sum_{batch,pos} diff . (mean receiver gradient)`` for every edge, zero where no edge exists."""
    info = graph.info
    n_senders = diff.shape[0]
    flat = diff.reshape(n_senders, -1)
    scores = torch.zeros(graph.valid.shape, device=diff.device)
    for layer in range(info.n_layers):
        heads = grads.heads[layer]
        batch, pos, n, d_head = heads.shape
        # Receiver gradients [n, batch*pos, d_model]: the summed g @ fold, minus each run's rank-one xhat term.
        receive = torch.bmm(heads.permute(2, 0, 1, 3).reshape(n, -1, d_head), folds[layer])
        coef = torch.stack(grads.coef[layer]).reshape(grads.runs, -1, n).permute(1, 2, 0)
        xhat = torch.stack(grads.xhat[layer]).reshape(grads.runs, -1, info.d_model).transpose(0, 1)
        receive -= torch.bmm(coef, xhat).transpose(0, 1)
        first = layer * (n + 1)
        upto = 1 + layer * (info.n_heads + 1) + info.n_heads  # the senders written before m{layer} reads
        scores[:upto, first:first + n] = flat[:upto] @ receive.reshape(n, -1).T
        scores[:upto, first + n] = flat[:upto] @ grads.mlp[layer].reshape(-1)
    scores[:, -1] = flat @ grads.logits.reshape(-1)
    return scores / grads.runs * graph.valid.to(scores.device)


def _differences(corrupted: list[torch.Tensor], clean: list[torch.Tensor]) -> torch.Tensor:
    """``corrupted - clean`` sender outputs, sender-major ``[sender batch pos d_model]``, in float32."""
    return torch.cat([(c.float() - k.float()).permute(2, 0, 1, 3) for c, k in zip(corrupted, clean, strict=True)])


def eap_scores(
    model: Any, graph: EdgeGraph, task: CircuitTask, *, steps: int | None = None, progress: bool = False
) -> Float[torch.Tensor, "sender receiver"]:
    """EAP scores (``steps=None``) or EAP-IG scores with ``steps`` interpolation steps."""
    if steps is not None and steps < 1:
        raise ValueError(f"steps={steps}; EAP-IG needs at least 1 step")
    reads = Reads.of(model)
    folds, offsets = reads.folded()
    grads = _Gradients(reads.info.n_layers)
    if steps is None:
        corrupted = _sender_blocks(model, reads, task.corrupted)[0]
        clean: list[torch.Tensor] = []
        _gradient_run(model, reads, offsets, task, grads, senders=clean)
        return _scores(graph, folds, _differences(corrupted, clean), grads)
    bar = tqdm(total=steps, desc="EAP-IG steps", disable=not progress)
    corrupted = []
    # Step 0's input is the corrupted embedding: that run is the corrupted run, so it gives the corrupted outputs.
    _gradient_run(model, reads, offsets, task, grads, tokens=task.corrupted, senders=corrupted)
    bar.update()
    clean = _sender_blocks(model, reads, task.clean)[0]
    start, end = corrupted[0][:, :, 0], clean[0][:, :, 0]
    for k in range(1, steps):
        _gradient_run(model, reads, offsets, task, grads, input_embedding=start + (k / steps) * (end - start))
        bar.update()
    bar.close()
    return _scores(graph, folds, _differences(corrupted, clean), grads)
