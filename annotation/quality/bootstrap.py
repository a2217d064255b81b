"""Percentile bootstrap over resampling units (items, tasks or votes), seeded and vectorised.

Every statistic here is a function of the *sum* of per-unit feature rows (coincidence matrices,
moments, contingency cells...). Resampling n units with replacement is then the same as drawing
multinomial counts over the distinct unit rows, so a replicate costs one (B x P) @ (P x F) product
where P is the number of distinct rows (tens for categorical labels), not n.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
# Replicates are drawn in batches so a (batch x P) weight matrix stays around this many cells.
_BATCH_CELLS = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval (NaN where undefined)."""

    estimate: float
    low: float
    high: float
    level: float = DEFAULT_LEVEL
    n_resamples: int = 0
    n_units: int = 0

    def as_dict(self) -> dict:
        """JSON-ready: NaN becomes None."""
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Estimator:
    """What a bootstrap needs: one row per resampling unit, and how to turn row sums into the figure.

    `units` (n, F0) are deduplicated before anything else; `features` maps the distinct rows
    (P, F0) to feature rows (P, F) whose weighted sums `statistic` turns into values, (B, F) -> (B,).
    """

    units: np.ndarray
    statistic: Callable[[np.ndarray], np.ndarray]
    features: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def n_units(self) -> int:
        return int(self.units.shape[0])


def unique_rows(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a 2-D array and how often each occurs.

    Small non-negative integer rows (label counts) are packed into one int64 key first: a 1-D
    unique is far faster than numpy's row-wise unique on large inputs.
    """
    units = np.asarray(units)
    if units.ndim == 1:
        units = units[:, None]
    if units.shape[0] == 0:
        return units, np.zeros(0, dtype=np.int64)
    if units.shape[1] == 1:
        values, counts = np.unique(units[:, 0], return_counts=True)
        return values[:, None], counts
    if np.issubdtype(units.dtype, np.integer) and units.min() >= 0:
        base = int(units.max()) + 1
        if base ** units.shape[1] < 2**62:
            radix = base ** np.arange(units.shape[1], dtype=np.int64)
            keys = units.astype(np.int64) @ radix
            first, counts = np.unique(keys, return_index=True, return_counts=True)[1:]
            return units[first], counts
    values, counts = np.unique(units, axis=0, return_counts=True)
    return values, counts


def resampled_sums(
    units: np.ndarray,
    *,
    features: Callable[[np.ndarray], np.ndarray] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(sum over all units, sums over each bootstrap resample of the units): shapes (F,) and (B, F)."""
    rows, counts = unique_rows(units)
    feats = np.asarray(features(rows) if features is not None else rows, dtype=np.float64)
    feats = feats.reshape(feats.shape[0], -1)
    total = counts.astype(np.float64) @ feats
    n = int(counts.sum())
    if n == 0 or n_resamples <= 0:
        return total, np.empty((0, feats.shape[1]))
    rng = np.random.default_rng(seed)
    p = counts / n
    batch = max(1, _BATCH_CELLS // max(1, len(counts)))
    out = np.empty((n_resamples, feats.shape[1]))
    for start in range(0, n_resamples, batch):
        stop = min(n_resamples, start + batch)
        weights = rng.multinomial(n, p, size=stop - start).astype(np.float64)
        out[start:stop] = weights @ feats
    return total, out


def percentile_interval(replicates: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """The central `level` percentile interval of the finite replicates (NaN, NaN if none)."""
    replicates = np.asarray(replicates, dtype=np.float64)
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail], axis=0)
    return float(low), float(high)


def interval(
    estimator: Estimator, *, n_resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0
) -> Interval:
    """The estimator's point value and its percentile bootstrap interval, resampling its units."""
    if estimator.n_units == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, level, 0, 0)
    total, sums = resampled_sums(estimator.units, features=estimator.features, n_resamples=n_resamples, seed=seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = float(estimator.statistic(total[None, :])[0])
        replicates = estimator.statistic(sums) if len(sums) else np.empty(0)
    low, high = percentile_interval(replicates, level)
    return Interval(estimate, low, high, level, n_resamples if len(sums) else 0, estimator.n_units)


def point(estimator: Estimator) -> float:
    """The estimator's value on the data as given (no resampling)."""
    return interval(estimator, n_resamples=0).estimate


def multinomial_replicates(counts: np.ndarray, *, n_resamples: int, seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of count tables: resampling the counted events with replacement.

    counts (..., K) -> (..., B, K); each table keeps its own total. Used for contingency tables
    (one per annotator pair) and vote-count matrices.
    """
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(totals > 0, counts / np.where(totals > 0, totals, 1.0), 1.0 / counts.shape[-1])
    rng = np.random.default_rng(seed)
    n = totals[..., 0].astype(np.int64)
    lead = counts.shape[:-1]
    out = rng.multinomial(n[..., None], p[..., None, :], size=(*lead, n_resamples))
    return out.astype(np.float64)
