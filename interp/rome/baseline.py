"""The constrained fine-tuning baseline ROME is compared with (FT-L, Zhu et al. 2020 as run in the ROME paper)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from interp.core.locking import holds_model
from interp.core.model_info import check_layer, model_info
from interp.core.tokens import tokenize
from interp.rome.apply import check_request
from interp.rome.keys import projection


@dataclass
class FinetuneConfig:
    """Constrained fine-tuning baseline (FT-L, Zhu et al. 2020 as run in the ROME paper)."""

    steps: int = 25
    """Adam steps on the rewrite prompt's target NLL."""
    lr: float = 5e-3
    """Adam learning rate."""
    norm_constraint: float = 5e-3
    """Largest change of any weight entry (L-infinity ball around the original weights)."""


@holds_model
def finetune(model: Any, *, prompt: str, subject: str, target: str, layer: int, config: FinetuneConfig | None = None):
    """Constrained fine-tuning baseline: Adam on block ``layer``'s MLP output projection, every entry kept within
    ``norm_constraint`` of its original value, minimising the target NLL on the rewrite prompt alone.

    Returns:
        An object with ``undo()`` restoring the weights bit for bit.
    """
    config = config or FinetuneConfig()
    target_ids = check_request(model, prompt, subject, target)
    check_layer(model_info(model), layer)
    weight = projection(model, layer).weight
    saved = weight.detach().clone()
    prompt_ids = tokenize(model, prompt.replace("{}", subject)).tokens[0].tolist()
    tokens = torch.tensor([prompt_ids + target_ids[:-1]], device=weight.device)
    pos = torch.arange(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(target_ids))
    ids = torch.tensor(target_ids, device=weight.device)
    optimiser = torch.optim.Adam([weight], lr=config.lr)
    for _ in range(config.steps):
        loss = -model(tokens)[0, pos].float().log_softmax(-1).gather(-1, ids[:, None]).mean()
        (grad,) = torch.autograd.grad(loss, [weight])
        weight.grad = grad
        optimiser.step()
        with torch.no_grad():
            weight.copy_(saved + (weight - saved).clamp(-config.norm_constraint, config.norm_constraint))
    weight.grad = None
    return _Restore(weight, saved)


@dataclass
class _Restore:
    weight: torch.Tensor
    saved: torch.Tensor

    def undo(self) -> None:
        with torch.no_grad():
            self.weight.copy_(self.saved)
