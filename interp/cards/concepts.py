"""The card's "Concept recovery" section: the shipped SAE's quality, and which planted concepts a feature recovers.

Same protocol as :mod:`interp.cards.circuits`: :func:`concepts_section` runs the library calls the CLI uses
(``interp features quality`` and ``interp features concepts``) and returns ``(markdown_body, numbers)``.
"""

from __future__ import annotations

from typing import Any

from interp.cards.tables import Section, markdown_table, model_arg, pct
from interp.features import CANDIDATES, FAMILIES, GOOD_F1, concept_recovery, load_sae, sae_quality


def concepts_section(model: Any, world: dict | None = None, *, n_rows: int = 400, n_seqs: int = 64) -> Section:
    """Quality of the SAE shipped with ``model``, and held-out F1 per concept family for SAE, neurons and random.

    Args:
        model: A reference ``TransformerBridge`` with an SAE in its checkpoint folder.
        world: Ignored (the concepts come from the world generator); accepted so every section has the same
            signature.
        n_rows: Rows of labelled text per split (:func:`interp.features.concept_recovery`).
        n_seqs: Held-out sequences of :func:`interp.features.sae_quality`.

    Raises:
        FileNotFoundError: no SAE shipped with the model.

    Examples:
        >>> body, numbers = concepts_section(interp.load("ref-gpt2"))  # doctest: +SKIP
        >>> numbers["recovered"]["sae"] >= numbers["recovered"]["random"]  # doctest: +SKIP
        True
    """
    sae = load_sae(model)
    quality = sae_quality(model, sae, n_seqs=n_seqs)
    result = concept_recovery(model, sae, n_rows=n_rows)
    summary = result.summary()
    name = model_arg(model)
    families = [(family, [r for r in result.rows if r["family"] == family]) for family in FAMILIES]
    rows = [[family, str(len(members))] + [pct(summary[family][c]) for c in CANDIDATES]
            + [f"{sum(r['sae_heldout_f1'] for r in members) / len(members):.2f}"] for family, members in families]
    rows.append(["all", str(len(result.rows))] + [pct(summary[c]) for c in CANDIDATES]
                + [f"{sum(r['sae_heldout_f1'] for r in result.rows) / len(result.rows):.2f}"])
    best = sorted((r for r in result.rows if r["family"] != "country"), key=lambda r: -r["sae_heldout_f1"])
    detail = [[r["concept"], str(r["sae_unit"]), f"{r['sae_heldout_f1']:.2f}", f"{r['neuron_heldout_f1']:.2f}",
               f"{r['random_heldout_f1']:.2f}"] for r in best]
    text = [
        f"Measured with `interp features quality --model {name}` and `interp features concepts --model {name}` "
        f"(`interp.features.sae_quality`, `interp.features.concept_recovery`).", "",
        f"The shipped SAE (EleutherAI sparsify `SparseCoder`, TopK) reads `{sae.site}`: {sae.num_latents} features, "
        f"k = {sae.k}. On {quality.tokens} held-out tokens it explains {quality.variance_explained:.1%} of the "
        f"variance with L0 {quality.l0:.1f}; {quality.dead_fraction:.1%} of its features never fire. Spliced in "
        f"(every position but BOS), it raises the next-token loss from {quality.clean_loss:.3f} to "
        f"{quality.spliced_loss:.3f} nats ({quality.loss_increase:+.3f}; mean ablation of the site: "
        f"{quality.ablated_loss:.3f}, so the SAE recovers {quality.recovered:.1%} of it).", "",
        f"Concept recovery: for each planted concept the detector `activation >= t` with the best F1 is chosen on "
        f"{result.n_tokens[0]} tokens of labelled world text (seed 0) among the SAE's {sae.num_latents} features, "
        f"the MLP neurons of the same block (`{result.neuron_site}`) and "
        f"{result.n_random} random directions of `{sae.site}`; the table gives the share of concepts whose "
        f"detector keeps F1 >= {GOOD_F1} on {result.n_tokens[1]} held-out tokens (seed 1).", "",
        markdown_table(["concepts", "n", "SAE feature", "MLP neuron", "random direction", "mean SAE F1"], rows), "",
        "Held-out F1 of the chosen detector, concepts other than countries:", "",
        markdown_table(["concept", "SAE feature", "SAE", "neuron", "random"], detail),
    ]
    numbers = {"quality": quality.to_json(), "recovered": {c: summary[c] for c in CANDIDATES}, "summary": summary,
               "rows": result.rows}
    return "\n".join(text), numbers
