"""The card's targets: thresholds the reference checkpoints aim at, and the section that checks them.

The targets section reads the world scores (:func:`interp.cards.scoring.evaluate`) and the numbers of the ROME
and probes sections (:mod:`interp.cards.representations`).
"""

from __future__ import annotations

import math
from typing import Any

from interp.cards.scoring import WorldScores
from interp.cards.tables import Section, at_least, dec3, markdown_table, pct

TARGETS = {"recall_train": 0.98, "recall_heldout": 0.80, "repeat_second": 0.1, "repeat_first": 3.0,
           "agreement": 0.90, "ioi": 0.90, "efficacy": 0.99, "paraphrase": 0.85, "neighbourhood": 0.90,
           "probe_accuracy": 0.9, "probe_selectivity": 0.3}
"""Thresholds of the reference checkpoints' targets (see :func:`targets_section`)."""


def targets_section(scores: WorldScores, numbers: dict[str, dict[str, Any]]) -> Section:
    """Measured values against the reference checkpoints' targets, each marked met or missed.

    Args:
        scores: The world scores (:func:`interp.cards.scoring.evaluate`).
        numbers: Section key -> the numbers a section returned (``"rome"`` and ``"probes"`` are read); a
            missing section's targets are marked "not measured".
    """
    t = TARGETS
    rows: list[tuple[str, str, float, bool | None, str]] = []  # what, target, value, met, how shown
    for rel, value in scores.recall_train.items():
        rows.append((f"fact recall, {rel}, training templates", f">= {t['recall_train']:.0%}", value,
                     at_least(value, t["recall_train"]), pct(value, 1)))
    for rel, value in scores.recall_heldout.items():
        rows.append((f"fact recall, {rel}, held-out templates", f">= {t['recall_heldout']:.0%}", value,
                     at_least(value, t["recall_heldout"]), pct(value, 1)))
    second, first = scores.repeat_loss_second, scores.repeat_loss_first
    rows.append(("repeated tokens, second-copy loss", f"< {t['repeat_second']} nats", second,
                 None if math.isnan(second) else second < t["repeat_second"], f"{second:.3f} nats"))
    rows.append(("repeated tokens, first-copy loss", f">= {t['repeat_first']:g} nats", first,
                 at_least(first, t["repeat_first"]), f"{first:.3f} nats"))
    rows.append(("agreement (held-out nouns)", f">= {t['agreement']:.0%}", scores.agreement,
                 at_least(scores.agreement, t["agreement"]), pct(scores.agreement, 1)))
    rows.append(("indirect object, P(IO) > P(S) (held-out names)", f">= {t['ioi']:.0%}", scores.ioi,
                 at_least(scores.ioi, t["ioi"]), pct(scores.ioi, 1)))
    rome = numbers.get("rome", {}).get("rome", {})
    for metric in ("efficacy", "paraphrase", "neighbourhood"):
        value = rome.get(metric, math.nan)
        rows.append((f"ROME {metric}", f">= {t[metric]:.0%}", value, at_least(value, t[metric]), pct(value, 1)))
    probe = numbers.get("probes", {}).get("city_country")
    acc = sel = math.nan
    if probe is not None:
        i = probe["layers"].index(probe["peak"])
        acc, sel = probe["accuracy"][i], probe["selectivity"][i]
    rows.append(("city_country probe accuracy (peak layer)", f">= {t['probe_accuracy']}", acc,
                 at_least(acc, t["probe_accuracy"]), dec3(acc)))
    rows.append(("city_country probe selectivity (peak layer)", f">= {t['probe_selectivity']}", sel,
                 at_least(sel, t["probe_selectivity"]), dec3(sel)))

    status = {True: "met", False: "missed", None: "not measured"}
    table = markdown_table(["target", "threshold", "measured", "status"],
                           [[what, target, shown if met is not None else "n/a", status[met]]
                            for what, target, _, met, shown in rows])
    missed = [what for what, _, _, met, _ in rows if met is False]
    measured = [row for row in rows if row[3] is not None]
    text = [f"Measured values from the sections above and `interp world eval` against the targets; "
            f"{len(measured) - len(missed)} of {len(measured)} measured targets are met.", "", table]
    if missed:
        text += ["", "Missed: " + "; ".join(missed) + "."]
    out = {"targets": [{"target": what, "threshold": target, "value": None if math.isnan(value) else value,
                        "status": status[met]} for what, target, value, met, _ in rows],
           "met": len(measured) - len(missed), "measured": len(measured)}
    return "\n".join(text), out

