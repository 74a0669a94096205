"""Medians with their range: every figure in the report is the median of several runs."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """The median of `runs` values, with the smallest and largest."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Figure:
        if not values:
            raise ValueError("no values")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def fmt(self, digits: int = 0, unit: str = "") -> str:
        """`median (low-high)`, e.g. `1,234 (1,100-1,300)`."""
        return f"{self.median:,.{digits}f}{unit} ({self.low:,.{digits}f}-{self.high:,.{digits}f})"


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> Figure:
    """Run-by-run ratios (run i over run i, measured back to back), summarised."""
    return Figure.of([n / d for n, d in zip(numerators, denominators, strict=True) if d])


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]
