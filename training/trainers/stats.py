"""Small statistics for evaluation reports: Wilson intervals, correlations, histograms. Plain Python, no torch."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["histogram", "pearson", "spearman", "summary", "wilson_interval"]


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % at the default z); (0, 1) when n is 0.

        centre = (p̂ + z²/2n) / (1 + z²/n),   half-width = z·√(p̂(1 − p̂)/n + z²/4n²) / (1 + z²/n)
    """
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation; None when there are fewer than 3 points or either side is constant."""
    n = len(x)
    if n != len(y) or n < 3:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / math.sqrt(sxx * syy)


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):  # ties share their mean rank
            ranks[order[k]] = (i + j) / 2.0
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation (Pearson on ranks, ties averaged); None as for `pearson`."""
    if len(x) != len(y):
        return None
    return pearson(_ranks(x), _ranks(y))


def histogram(values: Sequence[float], bins: int = 20, lo: float | None = None, hi: float | None = None) -> dict:
    """{"edges": [bins + 1 floats], "counts": [bins ints]}, equal-width bins over [lo, hi] (the data's range by
    default); the last bin includes its right edge."""
    if not values:
        return {"edges": [], "counts": []}
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    if hi <= lo:
        hi = lo + 1e-6
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        if lo <= v <= hi:
            counts[min(int((v - lo) / width), bins - 1)] += 1
    return {"edges": [lo + i * width for i in range(bins + 1)], "counts": counts}


def summary(values: Sequence[float]) -> dict:
    """Count, mean, standard deviation, min, median and max of `values`."""
    n = len(values)
    if n == 0:
        return {"n": 0}
    ordered = sorted(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    middle = n // 2
    median = ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return {"n": n, "mean": mean, "std": std, "min": ordered[0], "median": median, "max": ordered[-1]}
