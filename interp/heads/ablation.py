"""Knock out attention heads one at a time, all heads of a layer in one batched forward pass.

Both the induction report and the head census measure a head's causal importance as the increase of
a next-token loss when that head's output is removed. Running one forward per head costs
``n_layers * n_heads`` passes; instead, for each layer, the batch is replicated once per head and
replica ``h`` has head ``h`` ablated, so a layer costs one (wider) pass.

Two ablations are offered:

* ``"mean"`` (default): the head's output ``z`` (``blocks.{L}.attn.hook_z``, before the output
  projection) is replaced at every position by its mean over the batch at that position. The head
  still adds its average, position-dependent contribution (attention sinks and biases included), but
  no longer carries information about the particular tokens. This is the gentler, more faithful
  knock-out: it does not push the residual stream off the distribution the later layers were trained
  on.
* ``"zero"``: ``z`` is set to zero. Simpler, but it also removes the head's constant contribution,
  so a head that writes a large constant can look important without doing anything token-specific.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from tqdm.auto import tqdm

from interp.core.hooks import hook_name, hooked
from interp.core.locking import holds_model
from interp.core.model_info import model_info
from interp.heads.sizing import rows_per_pass

ABLATIONS = ("mean", "zero")
"""Supported ablation methods (see the module docstring)."""

LOSS_BYTES = 2**26
"""Logits (float32) whose log-softmax :func:`next_token_losses` takes at once (64 MiB; at least one row)."""


def check_ablation(method: str) -> str:
    """Return ``method`` if it is one of :data:`ABLATIONS`.

    Raises:
        ValueError: an unknown method.
    """
    if method not in ABLATIONS:
        raise ValueError(f"ablation={method!r}; valid ablations are {', '.join(map(repr, ABLATIONS))}")
    return method


def next_token_losses(
    logits: Float[torch.Tensor, "batch pos vocab"], tokens: Int[torch.Tensor, "batch pos"]
) -> Float[torch.Tensor, "batch pos"]:
    """Cross-entropy of predicting ``tokens[:, p + 1]`` from ``logits[:, p]``; the last position is 0."""
    # A few rows at a time: the log-softmax of the shifted (non-contiguous) logits takes a contiguous copy and an
    # output, each the size of the logits; on a 128k vocabulary, for a whole ablation pass, that is 2.6 times the
    # logits' own memory. Rows are independent, so the losses are the same bit for bit.
    step = max(1, LOSS_BYTES // (4 * logits.shape[1] * logits.shape[2]))
    targets = tokens[:, 1:, None]
    loss = torch.cat([
        -rows[:, :-1].float().log_softmax(-1).gather(-1, target).squeeze(-1)
        for rows, target in zip(logits.split(step), targets.split(step), strict=True)
    ])
    return torch.nn.functional.pad(loss, (0, 1))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the last two dims where ``mask`` is true (leading dims kept)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum((-2, -1)) / mask.sum((-2, -1)).clamp(min=1)


@holds_model
def head_ablation_losses(
    model: Any,
    tokens: Int[torch.Tensor, "batch pos"],
    loss_mask: Bool[torch.Tensor, "batch pos"],
    z_mean: list[Float[torch.Tensor, "pos head d_head"]] | None,
    *,
    method: str = "mean",
    attention_mask: Int[torch.Tensor, "batch pos"] | None = None,
    max_rows: int = 256,
    progress: bool = False,
) -> Float[torch.Tensor, "layer head"]:
    """Mean next-token loss (over ``loss_mask``) with each head ablated in turn.

    Args:
        model: A ``TransformerBridge``.
        tokens: Input batch.
        loss_mask: Which positions' next-token losses count (position ``p`` scores ``tokens[p + 1]``).
        z_mean: Per layer, the batch mean of ``hook_z`` at each position (for ``method="mean"``).
        method: ``"mean"`` or ``"zero"``.
        attention_mask: Padding mask passed to the model (``None``: no padding).
        max_rows: Largest replicated batch run at once; a layer whose ``n_heads * batch`` exceeds it
            is split into several passes, each still covering several heads. Memory also bounds it:
            a pass holds at most :func:`interp.heads.sizing.rows_per_pass` rows (logits included), and
            a batch longer than that is itself split into chunks of rows, their losses summed.
        progress: Show a tqdm progress bar over the layers.

    Returns:
        ``[layer head]`` mean loss of the ablated model.
    """
    check_ablation(method)
    info = model_info(model)
    batch, n_heads = tokens.shape[0], info.n_heads
    limit = max(1, min(max_rows, rows_per_pass(model, tokens.shape[1])))
    chunk = min(batch, limit)  # rows of the batch per pass
    per_pass = max(1, min(n_heads, limit // chunk))
    count = loss_mask.sum().to(torch.float32).clamp(min=1)
    out = torch.zeros(info.n_layers, n_heads)
    for layer in tqdm(range(info.n_layers), desc="ablating heads", leave=False, disable=not progress):
        replacement = None if method == "zero" else z_mean[layer]
        for first in range(0, n_heads, per_pass):
            heads = torch.arange(first, min(first + per_pass, n_heads))
            for start in range(0, batch, chunk):
                rows = slice(start, start + chunk)
                part = tokens[rows]
                mask = None if attention_mask is None else attention_mask[rows]
                # The logits stay unnamed: a loop variable would keep one pass's logits alive through the next pass.
                loss = next_token_losses(
                    _run_ablated(model, part, mask, layer, heads, replacement, n_heads), part.repeat(len(heads), 1)
                ).view(len(heads), *part.shape)
                out[layer, heads] += (loss * loss_mask[rows].to(loss.dtype)).sum((-2, -1)).cpu()
    return out / count.cpu()


def _run_ablated(
    model: Any,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor | None,
    layer: int,
    heads: torch.Tensor,
    replacement: torch.Tensor | None,
    n_heads: int,
) -> torch.Tensor:
    n_rep, batch = len(heads), tokens.shape[0]
    # which[r, h] is true where replica r ablates head h: one vectorised torch.where, no loop over heads.
    which = torch.zeros(n_rep, n_heads, dtype=torch.bool, device=tokens.device)
    which[torch.arange(n_rep), heads.to(tokens.device)] = True

    def ablate(z: torch.Tensor, hook: Any) -> torch.Tensor:
        z = z.view(n_rep, batch, *z.shape[1:])  # [rep batch pos head d_head]
        fill = torch.zeros((), dtype=z.dtype, device=z.device) if replacement is None else replacement.to(z)
        return torch.where(which[:, None, None, :, None].to(z.device), fill, z).flatten(0, 1)

    mask = None if attention_mask is None else attention_mask.repeat(n_rep, 1)
    with torch.no_grad(), hooked(model, [(hook_name("z", layer), ablate)]):
        return model(tokens.repeat(n_rep, 1), attention_mask=mask)


def batch_mean(
    z: Float[torch.Tensor, "batch pos head d_head"], attention_mask: Int[torch.Tensor, "batch pos"]
) -> Float[torch.Tensor, "pos head d_head"]:
    """Mean of ``z`` over the real (unpadded) rows at each position: the mean-ablation value."""
    weight = attention_mask.to(z.dtype)[:, :, None, None]
    return (z * weight).sum(0) / weight.sum(0).clamp(min=1)


@holds_model
def joint_ablation_loss(
    model: Any,
    tokens: Int[torch.Tensor, "batch pos"],
    loss_mask: Bool[torch.Tensor, "batch pos"],
    heads: list[tuple[int, int]],
    z_mean: list[Float[torch.Tensor, "pos head d_head"]] | None,
    *,
    method: str = "mean",
) -> float:
    """Mean next-token loss (over ``loss_mask``) with all ``heads`` ablated at once, in one forward pass.

    Redundant heads (several induction heads doing the same job) each look unimportant alone; knocking
    them out together measures what the group does.
    """
    check_ablation(method)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def hook_for(layer: int) -> Any:
        chosen = torch.tensor(by_layer[layer])

        def ablate(z: torch.Tensor, hook: Any) -> torch.Tensor:
            z = z.clone()  # the hook's input belongs to the forward pass; write a copy
            z[:, :, chosen] = 0.0 if z_mean is None else z_mean[layer][:, chosen].to(z)
            return z

        return ablate

    hooks = [(hook_name("z", layer), hook_for(layer)) for layer in by_layer]
    step, total = rows_per_pass(model, tokens.shape[1]), torch.zeros(())
    with torch.no_grad(), hooked(model, hooks):
        for start in range(0, tokens.shape[0], step):  # chunks of bounded memory, their loss sums added up
            rows = slice(start, start + step)
            total = total + (next_token_losses(model(tokens[rows]), tokens[rows]) * loss_mask[rows]).sum().cpu()
    return float(total / loss_mask.sum().clamp(min=1).cpu())
