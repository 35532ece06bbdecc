"""How good an SAE is: variance explained, L0, dead features, and the next-token loss when it is spliced in.

Splicing replaces the site's activation by the SAE's reconstruction during the forward pass (a hook attached
through :func:`interp.core.hooks.hooked`), at every position but the first (BOS, left out of training as well);
the loss increase is measured against the clean pass and put in scale by mean-ablating the same positions
(``recovered`` = share of the mean-ablation damage the SAE avoids).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Int

from interp.core.capturing import capture
from interp.core.hooks import hooked
from interp.core.locking import holds_model
from interp.core.model_info import model_info
from interp.features.sae import SparseAutoencoder
from interp.reference.world_text import world_tokens


@dataclass
class SaeQuality:
    """An SAE measured on held-out text."""

    site: str
    """The hook it reads."""
    num_latents: int
    """Features."""
    k: int
    """TopK's k."""
    tokens: int
    """Held-out token positions measured (BOS left out)."""
    variance_explained: float
    """``1 - sum |x - x_hat|^2 / sum |x - mean|^2`` over the held-out positions."""
    l0: float
    """Mean number of non-zero latents per token (at most k: TopK keeps only positive latents)."""
    dead_fraction: float
    """Share of features that never fire on the held-out text."""
    clean_loss: float
    """Next-token loss (nats) without the SAE."""
    spliced_loss: float
    """Next-token loss with the site replaced by the reconstruction."""
    ablated_loss: float
    """Next-token loss with the site replaced by its mean activation."""

    @property
    def loss_increase(self) -> float:
        """``spliced_loss - clean_loss`` (nats)."""
        return self.spliced_loss - self.clean_loss

    @property
    def recovered(self) -> float:
        """Share of the mean-ablation loss increase that the SAE avoids (1 = as good as the clean model)."""
        gap = self.ablated_loss - self.clean_loss
        return float("nan") if gap <= 0 else 1 - self.loss_increase / gap

    def to_json(self) -> dict[str, Any]:
        """The fields and both derived numbers."""
        return {**asdict(self), "loss_increase": self.loss_increase, "recovered": self.recovered}

    def __str__(self) -> str:
        """One paragraph."""
        return (f"SAE on {self.site}: {self.num_latents} features, TopK k={self.k}; on {self.tokens} held-out tokens "
                f"variance explained {self.variance_explained:.3f}, L0 {self.l0:.1f}, dead {self.dead_fraction:.1%}; "
                f"next-token loss {self.clean_loss:.4f} -> {self.spliced_loss:.4f} nats spliced "
                f"({self.loss_increase:+.4f}; mean ablation {self.ablated_loss:.4f}, recovered {self.recovered:.1%})")


@holds_model
def spliced_loss(
    model: Any, tokens: Int[torch.Tensor, "batch pos"], site: str,
    replace: Callable[[torch.Tensor], torch.Tensor] | None,
) -> float:
    """Mean next-token loss (nats) on ``tokens`` with ``site`` at positions 1.. replaced by ``replace(x)``.

    ``replace=None`` runs the clean model. ``replace`` gets ``[batch pos-1 d]`` and returns the same shape.
    """
    def splice(x: torch.Tensor, hook: Any) -> torch.Tensor:
        out = x.clone()
        out[:, 1:] = replace(x[:, 1:]).to(x.dtype)
        return out

    hooks = [] if replace is None else [(site, splice)]
    with hooked(model, hooks):
        logits = capture(model, tokens, []).logits
    return float(torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten()))


@holds_model
def sae_quality(model: Any, sae: SparseAutoencoder, *, n_seqs: int = 64, seed: int = 1) -> SaeQuality:
    """Measure ``sae`` on ``n_seqs`` full-context sequences of reference-world text (``seed`` 1: not training's 0).

    Raises:
        ValueError: ``n_seqs < 1``.

    Examples:
        >>> print(sae_quality(model, load_sae(model)))  # doctest: +SKIP
    """
    info = model_info(model)
    tokens = world_tokens(model, n_seqs, info.n_ctx, seed=seed)
    x = capture(model, tokens, [sae.site])[sae.site][:, 1:].float()
    flat = x.reshape(-1, x.shape[-1])
    latents = sae.encode(flat)
    residual = (flat - sae.decode(latents)).pow(2).sum()
    mean = flat.mean(0)
    fired = (latents > 0).any(dim=0)
    return SaeQuality(
        site=sae.site, num_latents=sae.num_latents, k=sae.k, tokens=len(flat),
        variance_explained=float(1 - residual / (flat - mean).pow(2).sum()),
        l0=float((latents > 0).sum(-1).float().mean()),
        dead_fraction=float(1 - fired.float().mean()),
        clean_loss=spliced_loss(model, tokens, sae.site, None),
        spliced_loss=spliced_loss(model, tokens, sae.site, sae.reconstruct),
        ablated_loss=spliced_loss(model, tokens, sae.site, lambda a: mean.expand_as(a)),
    )
