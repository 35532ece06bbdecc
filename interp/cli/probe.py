"""The ``interp probe`` command: fit probes for a reference-world task on every layer and print the table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from interp.cli.common import (
    DeviceOption,
    JsonOption,
    ModelOption,
    OverwriteOption,
    emit,
    load_or_exit,
    refuse_existing,
    user_errors,
)


def probe(
    task: Annotated[str, typer.Option("--task", "-t", help="city_country, relation, in_subject or number.")],
    model: ModelOption = "ref-gpt2",
    layers: Annotated[str | None, typer.Option(help="Comma-separated layers (default: all).")] = None,
    site: Annotated[str, typer.Option(help="resid_pre, resid_mid, resid_post, attn_out or mlp_out.")] = "resid_post",
    control: Annotated[bool, typer.Option(help="Fit the control task and report selectivity.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of prompt sampling, split and control labels.")] = 0,
    min_subjects: Annotated[
        int, typer.Option(help="city_country: keep countries with at least this many cities (>= 2).")
    ] = 3,
    save: Annotated[Path | None, typer.Option(help="Write the report and weights to this .safetensors file.")] = None,
    overwrite: OverwriteOption = False,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fit a linear probe per layer for a reference-world task: accuracy, control accuracy, selectivity."""
    from probes import fit, world_task

    refuse_existing(save, overwrite)  # before the probes are fitted
    bridge = load_or_exit(model, device)
    with user_errors():
        chosen = None if layers is None else [int(x) for x in layers.split(",") if x.strip()]
        built = world_task(task, bridge, seed=seed, min_subjects=min_subjects)
        report = fit(bridge, built, layers=chosen, site=site, control=control, seed=seed)
    if save is not None:
        report.save(save, overwrite=overwrite)
    best = report.layers.index(report.best_layer)
    summary = f"best layer {report.best_layer}: accuracy {report.accuracy[best]:.3f}"
    if report.selectivity is not None:
        summary += f", selectivity {report.selectivity[best]:.3f}"
    text = "\n".join(
        [
            f"probe {report.task!r} on {report.model} at {report.site}: {len(report.labels)} classes, "
            f"{report.n_train} train / {report.n_test} test examples "
            f"({len(report.train_groups)} / {len(report.test_groups)} subjects)",
            report.to_frame().to_string(index=False, float_format=lambda v: f"{v:.3f}"),
            summary,
        ]
    )
    emit(report.to_dict(), text, as_json)


def register(app: typer.Typer) -> None:
    """Add ``probe`` to ``app``."""
    app.command()(probe)
