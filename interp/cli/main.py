"""The ``interp`` command line.

One typer ``app``; each command group is a module of :mod:`interp.cli` whose ``register`` adds its
command functions (or a sub-app) to it. Every command loads through
:func:`~interp.cli.common.load_or_exit`, computes with the library and prints through
:func:`~interp.cli.common.emit`, so it has a readable default and ``--json``.
"""

from __future__ import annotations

import typer

from interp.cli import circuit, edit, features, generation, heads, models, probe, world

app = typer.Typer(
    name="interp",
    help="Mechanistic-interpretability toolkit: load models, capture activations, run analyses.",
    no_args_is_help=True,
    add_completion=False,
)

# Registration order is the order of ``interp --help`` (typer lists sub-apps such as world last).
models.register(app)
world.register(app)
probe.register(app)
edit.register(app)
heads.register(app)
circuit.register(app)
generation.register(app)
features.register(app)
