"""Agreement figures match independent reference implementations on random data."""

import itertools

import krippendorff
import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from annotation.quality import agreement as ag

TOL = 1e-6


def _random_matrix(seed: int, items=120, raters=7, categories=5, missing=0.35):
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, categories + 1, size=items)
    noise = rng.integers(-1, 2, size=(items, raters)) * (rng.random((items, raters)) < 0.5)
    x = np.clip(truth[:, None] + noise, 1, categories).astype(float)
    x[rng.random(x.shape) < missing] = np.nan
    return x


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
@pytest.mark.parametrize("seed", range(4))
def test_alpha_matches_krippendorff_package_with_missing_values(level, seed):
    x = _random_matrix(seed)
    ours = ag.krippendorff_alpha(x, level)
    reference = krippendorff.alpha(reliability_data=x.T, level_of_measurement=level)
    assert ours == pytest.approx(reference, abs=TOL)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_alpha_on_continuous_values_and_uneven_overlap(level):
    rng = np.random.default_rng(9)
    x = np.round(rng.normal(size=(100, 4)) + rng.normal(size=(100, 1)), 2)
    x[rng.random(x.shape) < 0.5] = np.nan
    assert np.unique(x[~np.isnan(x)]).size > ag.COINCIDENCE_MAX_VALUES  # nominal, interval: no V x V matrix
    reference = krippendorff.alpha(reliability_data=x.T, level_of_measurement=level)
    assert ag.krippendorff_alpha(x, level) == pytest.approx(reference, abs=TOL)


def test_alpha_is_the_same_from_long_form_ratings():
    x = _random_matrix(3)
    long = ag.Ratings.from_matrix(x)
    shuffled = np.random.default_rng(0).permutation(len(long))
    long = long.select(shuffled)
    for level in ag.LEVELS:
        assert ag.krippendorff_alpha(long, level) == pytest.approx(ag.krippendorff_alpha(x, level), abs=1e-12)


def test_alpha_is_one_for_perfect_agreement_and_undefined_without_variation():
    x = np.array([[1, 1, np.nan], [2, 2, 2], [3, np.nan, 3]], dtype=float)
    assert ag.krippendorff_alpha(x, "nominal") == pytest.approx(1.0)
    assert np.isnan(ag.krippendorff_alpha(np.ones((4, 3)), "nominal"))


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
@pytest.mark.parametrize("seed", range(3))
def test_cohen_kappa_matches_scikit_learn_for_every_pair(weights, seed):
    x = _random_matrix(seed, items=200, raters=4, missing=0.2)
    pairs, kappas = ag.cohen_kappa_all_pairs(x, weights=weights)
    assert len(pairs.a) == 6
    for p, (a, b) in enumerate(zip(pairs.a, pairs.b)):
        both = ~np.isnan(x[:, a]) & ~np.isnan(x[:, b])
        reference = cohen_kappa_score(x[both, a], x[both, b], weights=weights)
        assert kappas[p] == pytest.approx(reference, abs=TOL)
        assert ag.cohen_kappa(x, a, b, weights=weights) == pytest.approx(reference, abs=TOL)


@pytest.mark.parametrize("seed", range(4))
def test_fleiss_kappa_matches_statsmodels(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, size=150)
    x = np.where(rng.random((150, 5)) < 0.6, truth[:, None], rng.integers(0, 4, size=(150, 5)))
    table, _ = aggregate_raters(x)
    assert ag.fleiss_kappa(x.astype(float)) == pytest.approx(statsmodels_fleiss(table, method="fleiss"), abs=TOL)


def _brute_percent(x):
    shares = []
    for row in x:
        vals = row[~np.isnan(row)]
        if len(vals) < 2:
            continue
        pairs = list(itertools.combinations(vals, 2))
        shares.append(np.mean([a == b for a, b in pairs]))
    return np.mean(shares)


@pytest.mark.parametrize("seed", range(3))
def test_percent_agreement_matches_brute_force_over_rater_pairs(seed):
    x = _random_matrix(seed, categories=3)
    assert ag.percent_agreement(x) == pytest.approx(_brute_percent(x), abs=TOL)


def test_first_error_agreement_counts_same_first_bad_step_and_no_error_alike():
    # Values: index of the first bad step, -1 for "no bad step", NaN for not labelled.
    x = np.array([[2, 2, np.nan], [-1, -1, 1], [0, 1, 1], [3, np.nan, np.nan]], dtype=float)
    expected = np.mean([1.0, 1 / 3, 1 / 3])
    assert ag.first_error_agreement(x) == pytest.approx(expected)
    assert ag.first_error_agreement(x) == pytest.approx(_brute_percent(x))


def _random_rankings(rng, m, k, tie_prob=0.3):
    base = rng.permutation(k).astype(float)
    out = []
    for _ in range(m):
        noisy = base + rng.normal(scale=1.5, size=k)
        ranks = stats.rankdata(noisy, method="dense").astype(float)
        ties = rng.random(k) < tie_prob
        ranks[ties] = np.floor(ranks[ties] / 2) * 2 + 1  # merge neighbours into tie groups
        out.append(stats.rankdata(ranks, method="dense"))
    return np.array(out, dtype=float)


@pytest.mark.parametrize("seed", range(5))
def test_kendall_w_with_ties_matches_scipy_friedman(seed):
    rng = np.random.default_rng(seed)
    r = _random_rankings(rng, m=6, k=5)
    chi2 = stats.friedmanchisquare(*r.T).statistic
    assert ag.kendall_w(r) == pytest.approx(chi2 / (6 * (5 - 1)), abs=TOL)


@pytest.mark.parametrize("seed", range(5))
def test_pairwise_tau_b_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    r = _random_rankings(rng, m=4, k=6)
    tau = ag.kendall_tau_b_matrix(r)
    for a, b in itertools.combinations(range(4), 2):
        assert tau[a, b] == pytest.approx(stats.kendalltau(r[a], r[b]).statistic, abs=TOL)


def test_mean_w_and_tau_over_tasks_of_different_shapes_match_scipy_loops():
    rng = np.random.default_rng(11)
    tasks = [_random_rankings(rng, m=int(rng.integers(2, 5)), k=int(rng.integers(3, 6))) for _ in range(40)]
    w_ref = np.mean([stats.friedmanchisquare(*t.T).statistic / (len(t) * (t.shape[1] - 1)) for t in tasks])
    taus = [
        stats.kendalltau(t[a], t[b]).statistic for t in tasks for a, b in itertools.combinations(range(len(t)), 2)
    ]
    assert ag.mean_kendall_w(tasks) == pytest.approx(w_ref, abs=TOL)
    assert ag.mean_pairwise_tau(tasks) == pytest.approx(np.nanmean(taus), abs=TOL)


def test_per_rater_agreement_matches_brute_force():
    x = _random_matrix(5, items=80, raters=4, categories=3)
    got = ag.per_rater_agreement(x)
    for j in range(4):
        pairs = agree = decided = hits = 0
        for row in x:
            if np.isnan(row[j]):
                continue
            others = [v for i, v in enumerate(row) if i != j and not np.isnan(v)]
            pairs += len(others)
            agree += sum(v == row[j] for v in others)
            if others:
                values, counts = np.unique(others, return_counts=True)
                if (counts == counts.max()).sum() == 1:
                    decided += 1
                    hits += values[counts.argmax()] == row[j]
        assert got["pair_agreement"][j] == pytest.approx(agree / pairs)
        assert got["majority_agreement"][j] == pytest.approx(hits / decided)
        assert got["ratings"][j] == (~np.isnan(x[:, j])).sum()


@pytest.mark.parametrize("weights,wt", [(None, None), ("linear", "linear"), ("quadratic", "quadratic")])
def test_kappa_standard_error_matches_statsmodels(weights, wt):
    rng = np.random.default_rng(4)
    tables = rng.integers(0, 30, size=(5, 4, 4)).astype(float) + np.eye(4) * 20
    categories = np.arange(1.0, 5.0)
    se = ag.kappa_standard_errors(tables, categories, weights)
    for table, ours in zip(tables, se):
        reference = cohens_kappa(table, wt=wt, return_results=True)
        assert ours == pytest.approx(reference.std_kappa, abs=TOL)


def test_pair_intervals_by_bootstrap_and_by_standard_error_agree_roughly():
    x = _random_matrix(2, items=400, raters=3, categories=3, missing=0.0)
    pairs, kappas = ag.cohen_kappa_all_pairs(x)
    boot_low, boot_high, method = ag.kappa_intervals(pairs.tables, pairs.categories, n_resamples=2000, seed=1)
    assert method == "bootstrap"
    norm_low, norm_high, method = ag.kappa_intervals(pairs.tables, pairs.categories, method="normal")
    assert method == "normal"
    assert ((boot_low < kappas) & (kappas < boot_high) & (norm_low < kappas) & (kappas < norm_high)).all()
    assert np.allclose(boot_high - boot_low, norm_high - norm_low, rtol=0.15)
