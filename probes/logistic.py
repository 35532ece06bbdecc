"""Multinomial logistic regression fitted on every layer at once (L-BFGS in torch).

The per-layer problems are independent, so their losses are summed and one L-BFGS run optimises
all of them: one set of batched matrix products per step instead of a Python loop over layers.
Features are standardised per layer on the training rows (layers differ in scale by orders of
magnitude, and a shared L2 penalty only means the same thing on standardised features); the
returned weights are folded back so they apply to raw activations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from jaxtyping import Float, Int


@dataclass
class LogisticConfig:
    """Settings of the probe optimiser."""

    l2: float = 1e-3
    """L2 penalty on the weights of standardised features, added to the mean cross-entropy as ``l2/2 * |W|^2``."""
    max_iter: int = 200
    """L-BFGS iterations (the problem is convex; this bounds the time, not the answer's quality)."""
    tolerance: float = 1e-6
    """Stop when the largest gradient entry falls below this."""


class LogisticFit(NamedTuple):
    """Weights of one linear classifier per layer, applying to raw (unstandardised) activations."""

    weight: Float[torch.Tensor, "layer d_model label"]
    """Logits are ``x @ weight[l] + bias[l]``."""
    bias: Float[torch.Tensor, "layer label"]
    """Per-class offsets."""


def fit_logistic(
    x: Float[torch.Tensor, "layer batch d_model"],
    y: Int[torch.Tensor, " batch"] | Int[torch.Tensor, "layer batch"],
    n_classes: int,
    config: LogisticConfig | None = None,
) -> LogisticFit:
    """Fit an L2-regularised softmax classifier on each layer's activations.

    Args:
        x: Training activations, one slice per layer.
        y: Class indices, shared by all layers or one row per layer.
        n_classes: Number of classes (classes absent from ``y`` get weights that never win).
        config: Optimiser settings.

    Returns:
        The fitted :class:`LogisticFit`.

    Examples:
        >>> x = torch.tensor([[[-2.0], [-1.0], [1.0], [2.0]]])
        >>> fit = fit_logistic(x, torch.tensor([0, 0, 1, 1]), 2)
        >>> predict(fit, x).tolist()
        [[0, 0, 1, 1]]
    """
    config = config or LogisticConfig()
    n_layers, _, d = x.shape
    x = x.float()
    y = y.to(x.device).expand(n_layers, -1) if y.ndim == 1 else y.to(x.device)
    mean = x.mean(dim=1, keepdim=True)
    # A dimension that never varies (e.g. a dead feature) gets scale 1 instead of a division by zero.
    scale = x.std(dim=1, keepdim=True).clamp_min(1e-6)
    z = (x - mean) / scale
    onehot = torch.nn.functional.one_hot(y, n_classes).float()  # (layer, batch, label)
    n = x.shape[1]
    weight = torch.zeros(n_layers, d, n_classes, device=x.device)
    bias = torch.zeros(n_layers, 1, n_classes, device=x.device)
    weight.grad, bias.grad = torch.zeros_like(weight), torch.zeros_like(bias)
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=config.max_iter,
        history_size=20,
        tolerance_grad=config.tolerance,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        # The gradient of softmax cross-entropy is written out instead of taken by autograd: the
        # problem is tiny, so autograd's bookkeeping would cost more than the arithmetic.
        logits = torch.baddbmm(bias, z, weight)  # (layer, batch, label)
        logp = logits.log_softmax(dim=-1)
        residual = (logp.exp() - onehot) / n
        weight.grad.copy_(torch.bmm(z.transpose(1, 2), residual) + config.l2 * weight)
        bias.grad.copy_(residual.sum(dim=1, keepdim=True))
        # Sum over layers of each layer's mean loss: the layers' problems stay independent.
        return -(logp * onehot).sum() / n + 0.5 * config.l2 * weight.pow(2).sum()

    opt.step(closure)
    w = weight.detach() / scale.transpose(1, 2)  # (layer, d_model, 1) broadcast over labels
    b = bias.detach().squeeze(1) - torch.einsum("lod,ldc->lc", mean, w)
    return LogisticFit(weight=w, bias=b)


def logits(fit: LogisticFit, x: Float[torch.Tensor, "layer batch d_model"]) -> Float[torch.Tensor, "layer batch label"]:
    """Class scores of each layer's classifier on that layer's activations."""
    return torch.baddbmm(fit.bias.unsqueeze(1), x.float(), fit.weight)


def predict(fit: LogisticFit, x: Float[torch.Tensor, "layer batch d_model"]) -> Int[torch.Tensor, "layer batch"]:
    """Predicted class index of each row, per layer."""
    return logits(fit, x).argmax(dim=-1)
