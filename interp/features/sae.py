"""Sparse autoencoders on one site of a model: EleutherAI's sparsify ``SparseCoder``, saved beside the checkpoint.

An SAE for hook ``<site>`` of a checkpoint lives in ``<checkpoint>/sae/<site>.safetensors`` (the coder's
weights, sparsify's own parameter names) with ``<site>.json`` (the ``SparseCoderConfig``, ``d_in``, how it was
trained and its measured quality). Importing :mod:`interp.features` registers the capture prefix ``"sae"``, so
``interp.capture(model, prompts, ["sae:<site>"])`` returns the latents ``[batch pos n_latents]`` of the SAE shipped
for ``<site>`` (see :mod:`interp.core.derived_sites`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float

from interp.core.derived_sites import DerivedSite, add_resolver
from interp.core.files import atomic_path, atomic_write_text, check_can_write
from interp.core.hooks import LAYER_SITES, site_of

FOLDER = "sae"
"""Sub-folder of a checkpoint holding its SAEs."""
PREFIX = "sae"
"""Capture prefix: ``"sae:<site>"``."""

_LOADED: weakref.WeakKeyDictionary[Any, dict[str, SparseAutoencoder]] = weakref.WeakKeyDictionary()


def sparsify_module() -> Any:
    """``import sparsify`` with its import-time notice (printed on stdout when Triton is absent) swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        import sparsify
    return sparsify


def new_coder(d_in: int, num_latents: int, k: int, *, seed: int = 0) -> Any:
    """A fresh TopK ``sparsify.SparseCoder`` with ``num_latents`` latents, ``k`` of them active per token."""
    sparsify = sparsify_module()
    torch.manual_seed(seed)
    return sparsify.SparseCoder(d_in, sparsify.SparseCoderConfig(activation="topk", k=k, num_latents=num_latents))


@dataclass
class SparseAutoencoder:
    """A sparsify ``SparseCoder`` bound to the hook it reads.

    Examples:
        >>> sae = load_sae(interp.load("ref-gpt2"))  # doctest: +SKIP
        >>> sae.encode(torch.randn(3, sae.d_in)).count_nonzero(dim=-1)  # doctest: +SKIP
        tensor([16, 16, 16])
    """

    site: str
    """The hook it reads and reconstructs (``"blocks.3.hook_resid_post"``)."""
    coder: Any = field(repr=False)
    """The ``sparsify.SparseCoder``."""
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    """What the config file records besides the coder's config: training settings and metrics."""

    @property
    def d_in(self) -> int:
        """Width of the site."""
        return int(self.coder.d_in)

    @property
    def num_latents(self) -> int:
        """Number of features."""
        return int(self.coder.num_latents)

    @property
    def k(self) -> int:
        """Active features per token."""
        return int(self.coder.cfg.k)

    @property
    def layer(self) -> int | None:
        """The block of :attr:`site`, None for a model-wide hook."""
        return int(self.site.split(".")[1]) if site_of(self.site) in LAYER_SITES else None

    def encode(self, x: Float[torch.Tensor, "*batch d_in"]) -> Float[torch.Tensor, "*batch n_latents"]:
        """Dense latents: the ``k`` largest of each row kept (``SparseCoder.encode``), every other latent 0."""
        flat = x.reshape(-1, x.shape[-1]).to(self.coder.dtype)
        with torch.no_grad():
            top_acts, top_indices, _ = self.coder.encode(flat)
        dense = flat.new_zeros(flat.shape[0], self.num_latents).scatter_(-1, top_indices, top_acts)
        return dense.reshape(*x.shape[:-1], self.num_latents).to(x.dtype)

    def decode(self, latents: Float[torch.Tensor, "*batch n_latents"]) -> Float[torch.Tensor, "*batch d_in"]:
        """``latents @ W_dec + b_dec``."""
        with torch.no_grad():
            out = latents.to(self.coder.dtype) @ self.coder.W_dec + self.coder.b_dec
        return out.to(latents.dtype)

    def reconstruct(self, x: Float[torch.Tensor, "*batch d_in"]) -> Float[torch.Tensor, "*batch d_in"]:
        """``decode(encode(x))``: what the SAE puts back in place of ``x``."""
        return self.decode(self.encode(x))

    def encoder_direction(self, feature: int) -> Float[torch.Tensor, " d_in"]:
        """Row ``feature`` of the encoder: the latent's pre-activation is ``x @ this`` plus a constant."""
        return self.coder.encoder.weight[self.check_feature(feature)].detach().clone()

    def decoder_direction(self, feature: int) -> Float[torch.Tensor, " d_in"]:
        """Row ``feature`` of ``W_dec`` (unit norm): what one unit of the latent writes back into the site."""
        return self.coder.W_dec[self.check_feature(feature)].detach().clone()

    def check_feature(self, feature: int) -> int:
        """``feature`` as an int; ValueError unless it is in ``0..num_latents-1``."""
        if isinstance(feature, bool) or not isinstance(feature, int) or not 0 <= feature < self.num_latents:
            raise ValueError(f"feature={feature!r}; this SAE has features 0..{self.num_latents - 1}")
        return feature

    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``<folder>/<site>.safetensors`` and ``<site>.json``; returns the weights' path.

        Raises:
            FileExistsError: the files exist and ``overwrite`` is False.
        """
        from safetensors.torch import save_model

        weights, config = files(folder, self.site)
        check_can_write(weights, overwrite, "overwrite=True")
        with atomic_path(weights) as tmp:
            save_model(self.coder, str(tmp))
        atomic_write_text(config, json.dumps({"site": self.site, "d_in": self.d_in, "sparse_coder":
                                              self.coder.cfg.to_dict(), **self.meta}, indent=1))
        return weights


def files(folder: str | os.PathLike[str], site: str) -> tuple[Path, Path]:
    """``(weights, config)`` paths of the SAE for ``site`` in ``folder``."""
    return Path(folder) / f"{site}.safetensors", Path(folder) / f"{site}.json"


def sae_folder(model: Any) -> Path:
    """``<checkpoint>/sae`` of ``model``."""
    return Path(str(model.cfg.model_name)) / FOLDER


def shipped_sites(model: Any) -> list[str]:
    """Sites with an SAE in ``model``'s checkpoint folder, sorted."""
    folder = sae_folder(model)
    return sorted(p.name.removesuffix(".safetensors") for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def load_file(folder: str | os.PathLike[str], site: str) -> SparseAutoencoder:
    """Read the SAE for ``site`` from ``folder``.

    Raises:
        FileNotFoundError: no SAE for ``site`` there.
    """
    from safetensors.torch import load_model

    weights, config = files(folder, site)
    if not weights.is_file() or not config.is_file():
        raise FileNotFoundError(f"no SAE for site {site!r} in {folder} (looked for {weights.name} and {config.name})")
    meta = json.loads(config.read_text())
    sparsify = sparsify_module()
    cfg = sparsify.SparseCoderConfig.from_dict(meta.pop("sparse_coder"), drop_extra_fields=True)
    coder = sparsify.SparseCoder(int(meta.pop("d_in")), cfg)
    load_model(coder, str(weights))
    coder.requires_grad_(False)
    return SparseAutoencoder(site=meta.pop("site"), coder=coder, meta=meta)


def load_sae(model: Any, site: str | None = None) -> SparseAutoencoder:
    """The SAE shipped in ``model``'s checkpoint for ``site`` (default: the only one), cached per model.

    Raises:
        FileNotFoundError: the checkpoint has no SAE (the message says how to train one).
        ValueError: ``site`` is None and there are several, or the SAE does not fit the model's width.
    """
    sites = shipped_sites(model)
    if site is None:
        if len(sites) != 1:
            if not sites:
                raise FileNotFoundError(f"no SAE shipped in {sae_folder(model)}; train one with "
                                        "`interp features train` (interp.features.train_sae)")
            raise ValueError(f"site=None but {sae_folder(model)} holds SAEs for {sites}; pass one")
        site = sites[0]
    cache = _LOADED.setdefault(model, {})
    if site not in cache:
        if site not in sites:
            raise FileNotFoundError(f"no SAE for site {site!r} in {sae_folder(model)}; shipped: {sites or 'none'}")
        sae = load_file(sae_folder(model), site)
        d_model = int(model.cfg.d_model)
        if sae.d_in != d_model and site_of(site) != "neurons":
            raise ValueError(f"the SAE for {site!r} reads width {sae.d_in}; the model's d_model is {d_model}")
        cache[site] = sae
    return cache[site]


def _resolve(model: Any, site: str) -> DerivedSite | None:
    if site not in shipped_sites(model) and site not in _LOADED.get(model, {}):
        return None
    sae = _LOADED[model][site] if site in _LOADED.get(model, {}) else load_sae(model, site)
    return DerivedSite(base=site, transform=sae.encode)


@contextlib.contextmanager
def attached(model: Any, sae: SparseAutoencoder) -> Iterator[SparseAutoencoder]:
    """Within the block, ``"sae:<sae.site>"`` captures this SAE's latents on ``model`` (and :func:`load_sae` returns
    it), in place of a shipped one; on exit the previous state returns.

    Examples:
        >>> with attached(model, sae):  # doctest: +SKIP
        ...     latents = interp.capture(model, "Paris is", [f"sae:{sae.site}"])[f"sae:{sae.site}"]
    """
    cache = _LOADED.setdefault(model, {})
    before = cache.get(sae.site)
    cache[sae.site] = sae
    try:
        yield sae
    finally:
        if before is None:
            cache.pop(sae.site, None)
        else:
            cache[sae.site] = before


add_resolver(PREFIX, _resolve)
