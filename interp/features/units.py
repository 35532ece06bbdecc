"""A unit to browse (an MLP neuron, an SAE feature, a probe's direction) as the store and probes' steering take it.

The store answers for a neuron index or a plain vector (:meth:`interp.store.ActivationStore.top_examples`), and
probes steer along a :class:`probes.Probe`'s class direction. This module turns the other units into those:

- an SAE feature is ranked by its encoder row (the latent's pre-activation, up to a constant: the TopK latent is
  that value wherever it is among the ``k`` largest), and its logit effect is its decoder row's, what it writes;
- a probe's direction reaches the store as a plain vector (:meth:`probes.Probe.direction`);
- steering with a direction goes through :func:`probes.steering_effect`, with a two-class probe whose class
  direction is exactly that vector.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float

from interp.core.hooks import hook_name, site_of
from interp.core.locking import holds_model
from interp.core.model_info import model_info
from interp.features.sae import SparseAutoencoder
from probes import Probe, SteeringEffect, steering_effect

UNIT_KINDS = ("neuron", "sae", "probe", "vector")
"""What the Features page and CLI can browse."""


def feature_examples(store: Any, sae: SparseAutoencoder, feature: int, k: int = 20, **options: Any) -> Any:
    """Max-activating examples of SAE ``feature`` in a store holding the SAE's site.

    Ranked by the encoder row (``store.top_examples(site, encoder_direction)``), with the logit effect of the decoder
    row. Options are those of :func:`interp.store.top_examples`.

    Raises:
        ValueError: the store does not hold the SAE's site, or a bad feature.
    """
    examples = store.top_examples(sae.site, sae.encoder_direction(feature).numpy(), k, **options)
    logits = store.logit_effect(sae.site, sae.decoder_direction(feature).numpy(), options.get("logit_k", 10))
    return dataclasses.replace(examples, unit=f"SAE feature {feature}", logits=logits)


def direction_probe(direction: Float[torch.Tensor, " d_model"], site: str, name: str = "feature") -> Probe:
    """A two-class :class:`probes.Probe` at hook ``site`` whose ``direction(name)`` is ``direction`` normalised.

    Its weight columns are ``+direction`` and ``-direction``: their mean is zero, so the class direction
    (column minus mean, normalised) is the direction itself.

    Raises:
        ValueError: a zero or non-finite direction, or a site outside the residual stream's per-layer hooks.
    """
    v = torch.as_tensor(direction).detach().float().cpu()
    if v.ndim != 1 or not torch.isfinite(v).all() or float(v.norm()) == 0:
        raise ValueError("direction must be a finite, non-zero vector")
    kind = site_of(site)
    if kind not in ("resid_pre", "resid_mid", "resid_post"):
        raise ValueError(f"site={site!r}; steering adds to the residual stream (resid_pre, resid_mid or resid_post)")
    layer = int(site.split(".")[1])
    weight = torch.stack([v, -v], dim=1)
    return Probe(layer=layer, site=kind, labels=[name, f"not {name}"], weight=weight, bias=torch.zeros(2))


@holds_model
def world_store(
    model: Any, sites: Sequence[str], n_tokens: int = 16_384, folder: str | os.PathLike[str] | None = None,
) -> Any:
    """An :class:`interp.store.ActivationStore` of reference-world text (seed 0) at ``sites``, built once.

    The store goes to ``folder`` (default: a folder per model, sites and size under the system's temporary
    directory); a finished one there is reopened, an interrupted one resumed.
    """
    from interp import store

    key = hashlib.sha1(json.dumps([model_info(model).name, list(sites), n_tokens]).encode()).hexdigest()[:16]
    out = Path(folder) if folder is not None else Path(tempfile.gettempdir()) / "interp-features" / key
    try:
        return store.open(out)
    except FileNotFoundError:
        return store.build(model, None, sites=list(sites), n_tokens=n_tokens, out=out, progress=False)


def steering_direction(model: Any, site: str, neuron: int) -> tuple[str, Float[torch.Tensor, " d_model"]]:
    """``(residual hook, vector)`` that neuron ``neuron`` of ``site`` writes: its basis vector on a residual site,
    its output weights ``W_out[L][neuron]`` (added at the block's ``resid_post``) for an MLP neuron.

    Raises:
        ValueError: a site that writes to the residual stream neither way, or a neuron out of range.
    """
    kind = site_of(site)
    if kind not in ("resid_pre", "resid_mid", "resid_post", "neurons"):
        raise ValueError(f"site={site!r}; steer from a residual-stream site or MLP neurons")
    layer = int(site.split(".")[1])
    info = model_info(model)
    width = info.d_mlp if kind == "neurons" else info.d_model
    if isinstance(neuron, bool) or not isinstance(neuron, int) or not 0 <= neuron < width:
        raise ValueError(f"neuron={neuron!r}; site {site!r} has units 0..{width - 1}")
    if kind == "neurons":
        return hook_name("resid_post", layer), model.W_out[layer][neuron].detach().float().cpu()
    return site, torch.eye(width)[neuron]


@holds_model
def steer_with_direction(
    model: Any, site: str, direction: Float[torch.Tensor, " d_model"], alpha: float, prompts: str | Sequence[str],
    k: int = 10, name: str = "direction",
) -> SteeringEffect:
    """Next-token probabilities without and with ``alpha`` times the unit ``direction`` added at residual hook ``site``.

    Raises:
        ValueError: see :func:`direction_probe` and :func:`probes.steer`.
    """
    return steering_effect(model, direction_probe(direction, site, name), name, alpha, prompts, k)


@holds_model
def steer_with_feature(
    model: Any, sae: SparseAutoencoder, feature: int, alpha: float, prompts: str | Sequence[str], k: int = 10,
) -> SteeringEffect:
    """Next-token probabilities of ``prompts`` without and with ``alpha`` times feature ``feature``'s decoder row added.

    The vector is added at the SAE's site at every position, through :func:`probes.steering_effect`.

    Raises:
        ValueError: a bad feature or alpha, or an SAE outside the residual stream.

    Examples:
        >>> effect = steer_with_feature(model, load_sae(model), 12, 8.0, "Paris is the capital of")  # doctest: +SKIP
        >>> effect.to_frame()  # doctest: +SKIP
    """
    name = f"feature {sae.check_feature(feature)}"
    return steer_with_direction(model, sae.site, sae.decoder_direction(feature), alpha, prompts, k, name)
