"""The ``interp`` command line: one typer app, one module per command group."""

from interp.cli.main import app

__all__ = ["app"]
