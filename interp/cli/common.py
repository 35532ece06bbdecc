"""What every ``interp`` command shares: the common options, output through :func:`emit` and clean errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

ModelOption = Annotated[str, typer.Option("--model", "-m", help="Embedded name, checkpoint directory or hub name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
DeviceOption = Annotated[str | None, typer.Option("--device", help="Device, e.g. cpu or cuda (default: auto).")]
PromptOption = Annotated[str, typer.Option("--prompt", "-p", help="Prompt text.")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace the --save file if it exists.")]

DEFAULT_PROMPT = "The Eiffel Tower is located in the city of"
"""The prompt of the commands that run one prompt when none is given."""


def emit(data: Any, text: str, as_json: bool) -> None:
    """Print ``data`` as JSON when ``as_json``, else the human-readable ``text``."""
    typer.echo(json.dumps(data) if as_json else text)


def fail(err: Exception) -> typer.Exit:
    """Report a user error on stderr without a traceback and return the exit (status 2) to raise.

    Use it as ``raise fail(err)``.
    """
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(code=2)


@contextmanager
def user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Turn the library's refusals of bad input in the ``with`` block into :func:`fail`'s clean exit.

    The refusals are ``ValueError`` or, when given, the exception types ``kinds``; anything else keeps its
    traceback.

    Examples:
        >>> try:
        ...     with user_errors(KeyError):
        ...         {}["layer"]
        ... except typer.Exit as stop:
        ...     stop.exit_code
        2
    """
    caught = kinds or (ValueError,)
    try:
        yield
    except caught as err:
        raise fail(err) from None


def load_or_exit(name: str, device: str | None = None) -> Any:
    """Load ``name`` with :func:`interp.core.load`, turning bad names into a clean exit."""
    from interp.core import load

    with user_errors(ValueError, FileNotFoundError):
        return load(name, device=device)


def refuse_existing(path: Path | None, overwrite: bool) -> None:
    """Exit with an error naming ``--overwrite`` when ``path`` exists, before any work is done."""
    from interp.core.files import check_can_write

    if path is not None:
        with user_errors(FileExistsError):
            check_can_write(path, overwrite, "--overwrite")
