"""Bootstrap intervals: seeded, covering the estimate, and as wide as resampling items makes them."""

import numpy as np
import pytest

from annotation.quality import agreement as ag
from annotation.quality.bootstrap import Estimator, interval, multinomial_replicates, unique_rows


def _ratings(seed=0, items=300):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, size=items)
    x = np.where(rng.random((items, 4)) < 0.7, truth[:, None], rng.integers(0, 3, size=(items, 4))).astype(float)
    x[rng.random(x.shape) < 0.2] = np.nan
    return x


@pytest.mark.parametrize(
    "make",
    [
        lambda x: ag.alpha_estimator(x, "nominal"),
        lambda x: ag.alpha_estimator(x, "ordinal"),
        lambda x: ag.alpha_estimator(x, "interval"),
        ag.fleiss_kappa_estimator,
        ag.percent_agreement_estimator,
    ],
)
def test_interval_covers_the_point_estimate_and_is_reproducible_with_a_seed(make):
    x = _ratings()
    first = interval(make(x), n_resamples=400, seed=7)
    again = interval(make(x), n_resamples=400, seed=7)
    other = interval(make(x), n_resamples=400, seed=8)
    assert first.low < first.estimate < first.high
    assert (first.low, first.high) == (again.low, again.high)
    assert (first.low, first.high) != (other.low, other.high)
    assert first.high - first.low < 0.3


def test_point_estimate_equals_the_plain_function():
    x = _ratings(1)
    assert interval(ag.alpha_estimator(x, "ordinal"), n_resamples=50).estimate == pytest.approx(
        ag.krippendorff_alpha(x, "ordinal")
    )


def test_resampling_distinct_rows_has_the_spread_of_resampling_items():
    # The mean of n draws: the bootstrap standard error must match sd / sqrt(n).
    rng = np.random.default_rng(0)
    values = rng.integers(0, 5, size=2000).astype(float)
    est = Estimator(np.column_stack([np.ones_like(values), values]), lambda s: s[:, 1] / s[:, 0])
    ci = interval(est, n_resamples=4000, seed=1)
    se = values.std() / np.sqrt(len(values))
    assert ci.estimate == pytest.approx(values.mean())
    assert (ci.high - ci.low) / (2 * 1.96) == pytest.approx(se, rel=0.08)


def test_unique_rows_packs_small_integers_and_counts_each_row():
    rows = np.array([[0, 2], [1, 0], [0, 2], [3, 3], [1, 0], [0, 2]])
    values, counts = unique_rows(rows)
    got = {tuple(v): c for v, c in zip(values.tolist(), counts.tolist())}
    assert got == {(0, 2): 3, (1, 0): 2, (3, 3): 1}


def test_multinomial_replicates_keep_each_table_total():
    tables = np.array([[5, 0, 3], [1, 1, 1]], dtype=float)
    reps = multinomial_replicates(tables, n_resamples=20, seed=3)
    assert reps.shape == (2, 20, 3)
    assert (reps.sum(axis=-1) == tables.sum(axis=-1)[:, None]).all()
    assert (reps[0, :, 1] == 0).all()
