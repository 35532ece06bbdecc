"""What every ``interp`` command shares: the common options, output through :func:`emit` and clean errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

ModelOption = Annotated[str, typer.Option("--model", "-m", help="Embedded name, checkpoint directory or hub name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
DeviceOption = Annotated[str | None, typer.Option("--device", help="Device, e.g. cpu or cuda (default: auto).")]


def emit(data: Any, text: str, as_json: bool) -> None:
    """Print ``data`` as JSON when ``as_json``, else the human-readable ``text``."""
    typer.echo(json.dumps(data) if as_json else text)


def fail(err: Exception) -> typer.Exit:
    """Report a user error on stderr without a traceback; ``raise fail(err)`` exits with status 2."""
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(code=2)


def load_or_exit(name: str, device: str | None = None) -> Any:
    """Load ``name`` with :func:`interp.core.load`, turning bad names into a clean exit."""
    from interp.core import load

    try:
        return load(name, device=device)
    except (ValueError, FileNotFoundError) as err:
        raise fail(err) from None


def refuse_existing(path: Path | None, overwrite: bool) -> None:
    """Exit with an error naming ``--overwrite`` when ``path`` exists, before any work is done."""
    from interp.core.files import check_can_write

    if path is None:
        return
    try:
        check_can_write(path, overwrite, "--overwrite")
    except FileExistsError as err:
        raise fail(err) from None
