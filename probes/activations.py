"""Read a task's activations: every probed layer in one :func:`interp.capture` per batch of prompts.

Only the probed positions are kept: each batch's ``[batch pos d_model]`` tensors are gathered down
to the examples' positions before the next batch runs, so memory grows with the number of
examples, not with prompt length times batch count.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple

import torch
from jaxtyping import Float, Int

import interp
from interp.core.hooks import hook_name as core_hook_name
from interp.core.locking import holds_model
from probes.task import ProbeTask, check_positions

SITES = ("attn_out", "mlp_out", "resid_mid", "resid_post", "resid_pre")
"""Where a probe can read the residual stream of a block (all ``d_model`` wide)."""


class TaskActivations(NamedTuple):
    """The activations of a task's examples."""

    acts: Float[torch.Tensor, "layer batch d_model"]
    """Activation of each example at each requested layer, in example order."""
    token_ids: Int[torch.Tensor, " batch"]
    """Token id at each example's position (its word type for the control task)."""
    positions: Int[torch.Tensor, " batch"]
    """Each example's non-negative position."""


def hook_name(site: str, layer: int) -> str:
    """TransformerLens hook name of ``site`` in block ``layer``.

    Raises:
        ValueError: ``site`` is not one of :data:`SITES`.

    Examples:
        >>> hook_name("resid_post", 2)
        'blocks.2.hook_resid_post'
    """
    if site not in SITES:
        raise ValueError(f"site={site!r}; valid sites are {', '.join(SITES)}")
    return core_hook_name(site, layer)


def check_layers(model: Any, layers: list[int] | None) -> list[int]:
    """All layers when ``layers`` is None, else the given layers after checking each one.

    Raises:
        ValueError: an empty list or a layer the model does not have.
    """
    info = interp.model_info(model)
    if layers is None:
        return list(range(info.n_layers))
    layers = list(layers)
    if not layers:
        raise ValueError(f"layers=[] is empty; pass None for all layers 0..{info.n_layers - 1}")
    return [interp.check_layer(info, layer) for layer in layers]


@holds_model
def collect(
    model: Any, task: ProbeTask, layers: list[int], site: str = "resid_post", batch_size: int = 64
) -> TaskActivations:
    """Run the task's prompts through ``model`` and gather each example's activation at every layer.

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`.
        task: The probe task.
        layers: Layers to read (checked).
        site: Where in the block to read (one of :data:`SITES`).
        batch_size: Prompts per forward pass.

    Returns:
        The :class:`TaskActivations`.

    Raises:
        ValueError: a bad site, layer or batch size, a prompt the model cannot take, or an example
            position outside its prompt.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}; it must be a positive int")
    names = [hook_name(site, layer) for layer in check_layers(model, layers)]
    info = interp.model_info(model)
    texts = list(dict.fromkeys(ex.text for ex in task.examples))
    text_index = {t: i for i, t in enumerate(texts)}
    batch = interp.tokenize(model, texts)
    lengths = batch.attention_mask.sum(dim=-1).cpu()
    row_of = [text_index[ex.text] for ex in task.examples]
    positions = torch.tensor(check_positions(task, [int(lengths[r]) for r in row_of], info.prepend_bos))
    rows = torch.tensor(row_of)
    token_ids = batch.tokens.cpu()[rows, positions]

    examples_of: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(row_of):
        examples_of[r].append(i)
    # Prompts of similar length share a batch, so little of each forward pass is padding.
    order = sorted(range(len(texts)), key=lambda r: int(lengths[r]))
    out = torch.empty(len(names), len(task), info.d_model)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = int(lengths[chunk].max())
        idx = torch.tensor(chunk, device=batch.tokens.device)
        cap = interp.capture(
            model,
            interp.Tokenized(batch.tokens[idx, :width], batch.attention_mask[idx, :width]),
            names=names,
        )
        stacked = torch.stack([cap[name] for name in names])  # (layer, batch, pos, d_model)
        ex = [i for r in chunk for i in examples_of[r]]
        local = {r: j for j, r in enumerate(chunk)}
        b = torch.tensor([local[row_of[i]] for i in ex], device=stacked.device)
        p = positions[ex].to(stacked.device)
        out[:, ex] = stacked[:, b, p].float().cpu()
    return TaskActivations(acts=out, token_ids=token_ids, positions=positions)
