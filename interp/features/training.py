"""Train a TopK sparse autoencoder with sparsify's model and loss terms on activations captured by interp.

sparsify's own ``Trainer`` registers forward hooks on the Hugging Face modules itself; interp attaches hooks only
through its shared hook layer (:func:`interp.capture`, :func:`interp.core.hooks.hooked`). So the activations come
from :func:`interp.capture` (or an :class:`interp.store.ActivationStore`), and this module runs the short loop that
sparsify's trainer runs on them, with sparsify's pieces: ``SparseCoder.forward`` for the fraction of variance
unexplained (FVU) and the AuxK loss of dead latents, ``set_decoder_norm_to_unit_norm`` before every step and
``remove_gradient_parallel_to_decoder_directions`` before every update, the decoder bias started at the data mean,
Adam at sparsify's learning rate ``2e-4 / sqrt(num_latents / 2**14)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from interp.core.capturing import capture, resolve_names
from interp.core.locking import holds_model
from interp.core.model_info import model_info
from interp.features.sae import SparseAutoencoder, new_coder
from interp.reference.world_text import world_tokens


@dataclass
class TrainLog:
    """How a training run went."""

    steps: int
    """Optimizer steps."""
    tokens: int
    """Training activations (BOS positions left out)."""
    fvu: list[float]
    """Training FVU, averaged over each tenth of the run."""
    dead_fraction: float
    """Share of latents that did not fire in the last ``dead_tokens`` training tokens."""
    seconds: float
    """Wall time of the loop."""


@holds_model
def site_activations(
    model: Any, site: str, n_tokens: int, *, seed: int = 0, batch: int = 64, skip_bos: bool = True,
    progress: bool = False,
) -> Float[torch.Tensor, "n d"]:
    """At least ``n_tokens`` activations of hook ``site`` on reference-world text (``seed``), float32 ``[n d]``.

    Position 0 (BOS, whose residual norm dwarfs every other token's) is left out when ``skip_bos``.

    Raises:
        ValueError: ``site`` is not one hook of the model, or ``n_tokens < 1``.
    """
    hooks = resolve_names(model, [site])
    if len(hooks) != 1:
        raise ValueError(f"site={site!r} names {len(hooks)} hooks; pass one hook name")
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 1:
        raise ValueError(f"n_tokens={n_tokens!r}; must be a positive integer")
    n_ctx = model_info(model).n_ctx
    per_row = n_ctx - 1 if skip_bos else n_ctx
    rows = math.ceil(n_tokens / per_row)
    tokens = world_tokens(model, rows, n_ctx, seed=seed)
    out = []
    for start in tqdm(range(0, rows, batch), desc=f"capture {site}", disable=not progress):
        acts = capture(model, tokens[start:start + batch], [hooks[0]])[hooks[0]]
        out.append((acts[:, 1:] if skip_bos else acts).reshape(-1, acts.shape[-1]).float().cpu())
    return torch.cat(out)


def train_sae(
    activations: Float[torch.Tensor, "n d"] | np.ndarray,
    site: str,
    *,
    num_latents: int,
    k: int,
    steps: int = 500,
    batch_size: int = 1024,
    lr: float | None = None,
    auxk_alpha: float = 1 / 32,
    dead_tokens: int = 200_000,
    seed: int = 0,
    progress: bool = True,
) -> tuple[SparseAutoencoder, TrainLog]:
    """Train a TopK ``sparsify.SparseCoder`` to reconstruct ``activations`` (rows are tokens).

    Args:
        activations: Training activations ``[n d]`` (a tensor, or a store's memory-mapped array).
        site: The hook they come from (recorded in the SAE).
        num_latents: Number of features.
        k: Features kept per token (TopK).
        steps: Optimizer steps.
        batch_size: Activations per step (drawn as shuffled passes over the data).
        lr: Adam learning rate; default sparsify's ``2e-4 / sqrt(num_latents / 2**14)``.
        auxk_alpha: Weight of the AuxK loss (OpenAI's 1/32).
        dead_tokens: A latent that has not fired for this many training tokens counts as dead (and feeds AuxK).
        seed: Seed of the initialisation and the batch order.
        progress: Show a tqdm bar.

    Returns:
        The trained :class:`SparseAutoencoder` (its ``meta`` records the settings) and the :class:`TrainLog`.

    Raises:
        ValueError: a non-positive size, ``k > num_latents``, or fewer activations than one batch.

    Examples:
        >>> sae, log = train_sae(torch.randn(512, 8), "hook_embed", num_latents=16, k=2, steps=5,
        ...                      batch_size=128, progress=False)
        >>> sae.encode(torch.randn(3, 8)).shape, log.steps
        (torch.Size([3, 16]), 5)
    """
    x = torch.as_tensor(np.asarray(activations), dtype=torch.float32)
    for name, value in (("num_latents", num_latents), ("k", k), ("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}; must be a positive integer")
    if k > num_latents:
        raise ValueError(f"k={k}; must be at most num_latents={num_latents}")
    if x.ndim != 2 or len(x) < batch_size:
        raise ValueError(f"activations have shape {tuple(x.shape)}; need [n d] with n >= batch_size={batch_size}")
    coder = new_coder(x.shape[1], num_latents, k, seed=seed)
    coder.b_dec.data = x.mean(0)  # sparsify's trainer centres the pre-activations this way on its first step
    lr = lr if lr is not None else 2e-4 / math.sqrt(num_latents / 2**14)
    optimizer = torch.optim.Adam(coder.parameters(), lr=lr)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    since_fired = torch.zeros(num_latents, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    order, cursor, fvus, chunk = torch.randperm(len(x), generator=generator), 0, [], []
    start = time.perf_counter()
    for _ in tqdm(range(steps), desc=f"SAE {site}", disable=not progress):
        if cursor + batch_size > len(x):
            order, cursor = torch.randperm(len(x), generator=generator), 0
        batch = x[order[cursor:cursor + batch_size]]
        cursor += batch_size
        coder.set_decoder_norm_to_unit_norm()
        out = coder(batch, dead_mask=since_fired > dead_tokens)
        (out.fvu + auxk_alpha * out.auxk_loss).backward()
        coder.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        optimizer.zero_grad()
        schedule.step()
        since_fired += batch_size
        since_fired[out.latent_indices.flatten().unique()] = 0
        chunk.append(float(out.fvu.detach()))
        if len(chunk) == max(1, steps // 10):
            fvus.append(sum(chunk) / len(chunk))
            chunk = []
    coder.set_decoder_norm_to_unit_norm()
    coder.requires_grad_(False)
    log = TrainLog(steps=steps, tokens=len(x), fvu=fvus, seconds=time.perf_counter() - start,
                   dead_fraction=float((since_fired > dead_tokens).float().mean()))
    meta = {"training": {"library": "eai-sparsify", "steps": steps, "batch_size": batch_size, "lr": lr,
                         "auxk_alpha": auxk_alpha, "dead_tokens": dead_tokens, "seed": seed, "tokens": len(x),
                         "seconds": round(log.seconds, 1), "fvu_curve": [round(f, 4) for f in fvus]}}
    return SparseAutoencoder(site=site, coder=coder, meta=meta), log
