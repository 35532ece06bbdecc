"""Benchmarks: each ``bench_*.py`` module reports ratios against a baseline (``python -m benchmarks``)."""

from benchmarks.runner import Ratio, main, median_seconds

__all__ = ["Ratio", "main", "median_seconds"]
