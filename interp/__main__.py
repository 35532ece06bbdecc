"""``python -m interp`` runs the command line."""

from interp.cli import app

app()
