"""``python -m benchmarks [NAME ...]`` runs every ``benchmarks/bench_*.py`` (or the named ones)."""

import sys

from benchmarks.runner import main

sys.exit(main(sys.argv[1:]))
