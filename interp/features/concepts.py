"""Concept recovery: does some SAE feature fire exactly on a planted concept, and does a neuron or a random direction?

For every concept of :mod:`interp.features.concept_text`, each candidate unit is read as a detector "the unit's
activation is at least ``t``". On one split of labelled world text (seed 0) the unit and the threshold with the
best F1 are chosen; the held-out split (another seed) reports that detector's F1. Three families of candidates
compete, each read at the layer of the SAE:

- ``sae``: the SAE's latents (TopK activations);
- ``neuron``: the MLP neurons of the SAE's block (``neurons``, after the nonlinearity);
- ``random``: as many random unit directions of the SAE's site as the SAE has features (seeded), read as the dot
  product with the site's activation.

The summary is the share of concepts whose chosen detector reaches held-out F1 >= 0.8, per family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float

from interp.core.capturing import capture
from interp.core.hooks import hook_name
from interp.core.locking import holds_model
from interp.core.model_info import model_info
from interp.features.concept_text import FAMILIES, ConceptText, concept_text
from interp.features.sae import SparseAutoencoder, load_sae

CANDIDATES = ("sae", "neuron", "random")
"""Families of candidate units, in table order."""
GOOD_F1 = 0.8
"""Held-out F1 a detector needs to count as recovering its concept."""


def best_f1(
    acts: Float[torch.Tensor, "n unit"], labels: Bool[torch.Tensor, "n concept"], *, chunk: int = 256
) -> tuple[Float[torch.Tensor, "concept unit"], Float[torch.Tensor, "concept unit"]]:
    """For every (concept, unit): the best F1 of the detector ``act >= t`` over all thresholds ``t``, and that ``t``.

    The best threshold is always the activation of some positive token (lowering ``t`` to the next positive's
    activation only adds true positives), so each positive's activation is tried: predicted positives are counted
    with a binary search in the unit's sorted activations. Ties go to the highest threshold. A concept with no
    positive gets F1 0 and threshold ``+inf``.

    Examples:
        >>> acts = torch.tensor([[0.0], [2.0], [1.0], [3.0]])
        >>> f1, t = best_f1(acts, torch.tensor([[False], [True], [False], [True]]))
        >>> f1.item(), t.item()
        (1.0, 2.0)
    """
    acts = acts.float()
    n_units, n_concepts = acts.shape[1], labels.shape[1]
    f1 = torch.zeros(n_concepts, n_units)
    threshold = torch.full((n_concepts, n_units), float("inf"))
    for start in range(0, n_units, chunk):
        block = acts[:, start:start + chunk].T.contiguous()  # [unit n]
        ordered = block.sort(dim=1).values
        for c in range(n_concepts):
            pos = labels[:, c].nonzero().squeeze(1)
            if len(pos) == 0:
                continue
            candidates = block[:, pos].sort(dim=1).values  # [unit P] ascending
            true_pos = len(pos) - torch.searchsorted(candidates, candidates, side="left")
            predicted = block.shape[1] - torch.searchsorted(ordered, candidates, side="left")
            scores = 2 * true_pos / (len(pos) + predicted)
            # the last (highest) candidate among equal scores: flip, argmax takes the first
            best = scores.shape[1] - 1 - scores.flip(1).argmax(dim=1)
            rows = torch.arange(block.shape[0])
            f1[c, start:start + chunk] = scores[rows, best]
            threshold[c, start:start + chunk] = candidates[rows, best]
    return f1, threshold


def f1_at(acts: Float[torch.Tensor, " n"], labels: Bool[torch.Tensor, " n"], threshold: float) -> float:
    """F1 of the detector ``acts >= threshold`` against ``labels`` (0 when there is nothing to find or predict)."""
    predicted = acts >= threshold
    tp = int((predicted & labels).sum())
    denom = int(labels.sum()) + int(predicted.sum())
    return 0.0 if denom == 0 else 2 * tp / denom


@dataclass
class ConceptRecovery:
    """Per concept: the best detector of each candidate family, chosen on one split and scored on another."""

    model: str
    """Model name."""
    site: str
    """The SAE's hook."""
    neuron_site: str
    """Hook of the neuron baseline."""
    rows: list[dict[str, Any]] = field(repr=False)
    """One dict per concept: ``concept``, ``family``, ``positives`` (train, held-out) and per candidate family
    ``<c>_unit``, ``<c>_threshold``, ``<c>_train_f1``, ``<c>_heldout_f1``."""
    n_tokens: tuple[int, int]
    """Text positions of the selection and held-out splits."""
    n_random: int
    """Random directions tried."""

    def recovered(self, candidate: str = "sae", threshold: float = GOOD_F1) -> float:
        """Share of concepts whose ``candidate`` detector reaches held-out F1 ``threshold``."""
        return float(np.mean([r[f"{candidate}_heldout_f1"] >= threshold for r in self.rows]))

    def feature_for(self, concept: str) -> int:
        """The SAE feature chosen for ``concept``.

        Raises:
            ValueError: an unknown concept (the concepts are listed).
        """
        for row in self.rows:
            if row["concept"] == concept:
                return int(row["sae_unit"])
        raise ValueError(f"concept={concept!r}; concepts are {', '.join(r['concept'] for r in self.rows)}")

    def to_frame(self) -> Any:
        """One row per concept (a ``pandas.DataFrame``)."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def summary(self) -> dict[str, Any]:
        """Share of concepts recovered (held-out F1 >= 0.8) per candidate family, overall and per concept family."""
        out = {c: self.recovered(c) for c in CANDIDATES}
        for family in FAMILIES:
            rows = [r for r in self.rows if r["family"] == family]
            out[family] = {c: float(np.mean([r[f"{c}_heldout_f1"] >= GOOD_F1 for r in rows])) for c in CANDIDATES}
        return out

    def to_json(self) -> dict[str, Any]:
        """Everything, JSON-ready."""
        return {"model": self.model, "site": self.site, "neuron_site": self.neuron_site,
                "n_tokens": list(self.n_tokens),
                "n_random": self.n_random, "summary": self.summary(), "rows": self.rows}

    def figure(self) -> Any:
        """Held-out F1 per concept for each candidate family (plotly)."""
        import plotly.graph_objects as go

        names = [r["concept"] for r in self.rows]
        fig = go.Figure([go.Bar(name=c, x=names, y=[r[f"{c}_heldout_f1"] for r in self.rows]) for c in CANDIDATES])
        fig.add_hline(y=GOOD_F1, line_dash="dot")
        fig.update_layout(barmode="group", title=f"Concept recovery, {self.model} {self.site}",
                          yaxis_title="held-out F1", height=450)
        return fig

    def __str__(self) -> str:
        """The summary line."""
        return (f"Concept recovery on {self.model} {self.site}: {len(self.rows)} concepts; held-out F1 >= {GOOD_F1} "
                + ", ".join(f"{c} {self.recovered(c):.0%}" for c in CANDIDATES))


def _unit_activations(model: Any, sae: SparseAutoencoder, text: ConceptText, neuron_site: str,
                      random_dirs: torch.Tensor) -> dict[str, torch.Tensor]:
    out: dict[str, list[torch.Tensor]] = {c: [] for c in CANDIDATES}
    for start in range(0, len(text.tokens), 64):
        cap = capture(model, text.tokens[start:start + 64], [sae.site, neuron_site])
        x = cap[sae.site][:, text.start:].reshape(-1, sae.d_in).float().cpu()
        out["sae"].append(sae.encode(x))
        out["neuron"].append(cap[neuron_site][:, text.start:].reshape(x.shape[0], -1).float().cpu())
        out["random"].append(x @ random_dirs)
    return {c: torch.cat(v) for c, v in out.items()}


@holds_model
def concept_recovery(
    model: Any, sae: SparseAutoencoder | None = None, *, n_rows: int = 400, seeds: tuple[int, int] = (0, 1),
    random_seed: int = 0,
) -> ConceptRecovery:
    """Score every planted concept against the SAE's features, the block's MLP neurons and random directions.

    Args:
        model: A reference model (``TransformerBridge``).
        sae: The SAE; default the one shipped for the model (:func:`interp.features.load_sae`).
        n_rows: Full-context rows of labelled text in each split.
        seeds: World seeds of the selection split and the held-out split.
        random_seed: Seed of the random directions.

    Raises:
        ValueError: the SAE reads a model-wide site (the neuron baseline needs a block), or equal seeds.

    Examples:
        >>> result = concept_recovery(interp.load("ref-gpt2"))  # doctest: +SKIP
        >>> result.recovered("sae"), result.recovered("neuron")  # doctest: +SKIP
    """
    sae = load_sae(model) if sae is None else sae
    if sae.layer is None:
        raise ValueError(f"the SAE reads {sae.site!r}, outside the blocks; concept recovery compares a block's neurons")
    if seeds[0] == seeds[1]:
        raise ValueError(f"seeds={seeds}; the selection and held-out splits need different seeds")
    neuron_site = hook_name("neurons", sae.layer)
    random_dirs = torch.randn(sae.d_in, sae.num_latents, generator=torch.Generator().manual_seed(random_seed))
    random_dirs /= random_dirs.norm(dim=0, keepdim=True)
    splits = [concept_text(model, n_rows, seed=s) for s in seeds]
    acts = [_unit_activations(model, sae, text, neuron_site, random_dirs) for text in splits]
    labels = [torch.from_numpy(text.flat_labels()) for text in splits]
    concepts = splits[0].concepts
    rows = [{"concept": c, "family": c.split(":")[0], "positives": [int(lab[:, i].sum()) for lab in labels]}
            for i, c in enumerate(concepts)]
    for candidate in CANDIDATES:
        f1, thresholds = best_f1(acts[0][candidate], labels[0])
        for i, row in enumerate(rows):
            unit = int(f1[i].argmax())
            t = float(thresholds[i, unit])
            row.update({f"{candidate}_unit": unit, f"{candidate}_threshold": t,
                        f"{candidate}_train_f1": float(f1[i, unit]),
                        f"{candidate}_heldout_f1": f1_at(acts[1][candidate][:, unit], labels[1][:, i], t)})
    return ConceptRecovery(model=Path(model_info(model).name).name, site=sae.site,
                           neuron_site=neuron_site, rows=rows, n_tokens=(len(labels[0]), len(labels[1])),
                           n_random=sae.num_latents)
