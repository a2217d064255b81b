"""Bradley-Terry strengths match choix; Elo scale and anchor; ties are half wins; bootstrap intervals."""

import choix
import numpy as np
import pytest

from annotation.quality import bradley_terry as bt


def _votes(seed: int, models=8, votes=3000, tie_rate=0.0):
    rng = np.random.default_rng(seed)
    strength = rng.normal(scale=1.0, size=models)
    a = rng.integers(0, models, size=votes)
    b = (a + rng.integers(1, models, size=votes)) % models
    p = 1 / (1 + np.exp(strength[b] - strength[a]))
    outcome = (rng.random(votes) < p).astype(float)
    outcome[rng.random(votes) < tie_rate] = 0.5
    return a, b, outcome, strength


@pytest.mark.parametrize("seed", range(3))
def test_strengths_match_choix_up_to_a_constant(seed):
    a, b, outcome, _ = _votes(seed)
    pairs = [(int(x), int(y)) if o == 1 else (int(y), int(x)) for x, y, o in zip(a, b, outcome)]
    reference = choix.ilsr_pairwise(8, pairs, alpha=0.0, tol=1e-12, max_iter=1000)
    theta = bt.fit(bt.win_matrix(a, b, outcome, 8))
    assert np.abs((theta - theta.mean()) - (reference - reference.mean())).max() < 1e-3
    reference_mm = choix.mm_pairwise(8, pairs, tol=1e-12)
    assert np.abs((theta - theta.mean()) - (reference_mm - reference_mm.mean())).max() < 1e-3


def test_a_tie_counts_as_half_a_win_each_way():
    a, b, outcome, _ = _votes(1, tie_rate=0.3)
    with_ties = bt.fit(bt.win_matrix(a, b, outcome, 8))
    # The same likelihood, doubled: each decisive vote twice, each tie as one win each way.
    decisive = outcome != 0.5
    won = zip(a[decisive], b[decisive], outcome[decisive])
    pairs = [(int(x), int(y)) if o == 1 else (int(y), int(x)) for x, y, o in won] * 2
    pairs += [(int(x), int(y)) for x, y in zip(a[~decisive], b[~decisive])]
    pairs += [(int(y), int(x)) for x, y in zip(a[~decisive], b[~decisive])]
    reference = choix.ilsr_pairwise(8, pairs, tol=1e-12, max_iter=1000)
    assert np.abs(with_ties - (reference - reference.mean())).max() < 1e-3


def test_elo_scale_is_400_points_per_tenfold_odds_with_the_anchor_at_1000():
    # 10 wins to 1 between two models: odds 10, so exactly 400 points apart.
    wins = np.array([[0, 10], [1, 0]], dtype=float)
    theta = bt.fit(wins)
    assert theta[0] - theta[1] == pytest.approx(np.log(10))
    ratings = bt.to_elo(theta, anchor=1)
    assert ratings[1] == pytest.approx(1000.0)
    assert ratings[0] == pytest.approx(1400.0)
    assert bt.to_elo(theta).mean() == pytest.approx(1000.0)


def test_leaderboard_recovers_the_order_with_intervals_that_cover_the_ratings():
    a, b, outcome, strength = _votes(2, models=6, votes=20000, tie_rate=0.1)
    board = bt.leaderboard(a, b, outcome, 6, n_resamples=300, seed=4)
    again = bt.leaderboard(a, b, outcome, 6, n_resamples=300, seed=4)
    assert board.l2 == 0.0
    assert np.argsort(board.ratings).tolist() == np.argsort(strength).tolist()
    assert (board.low < board.ratings).all() and (board.ratings < board.high).all()
    assert np.array_equal(board.low, again.low) and np.array_equal(board.high, again.high)
    assert np.nanmax(np.abs(bt.observed_win_rates(board.wins) - bt.predicted_win_rates(board.theta))) < 0.1


def test_a_model_that_never_lost_still_gets_a_finite_rating():
    wins = np.array([[0, 3, 2], [0, 0, 4], [0, 1, 0]], dtype=float)
    assert not bt.mle_exists(wins)
    a, b, o = [0, 0, 0, 0, 0, 1, 1, 1, 1, 2], [1, 1, 1, 2, 2, 2, 2, 2, 2, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    board = bt.leaderboard(a, b, o, 3, n_resamples=50)
    assert board.l2 > 0 and np.isfinite(board.ratings).all()
    assert board.ratings[0] > board.ratings[1] > board.ratings[2]


def test_rankings_imply_every_pair_with_equal_ranks_as_ties():
    models = np.array([[0, 1, 2], [2, -1, 0]])
    ranks = np.array([[2, 1, 2], [1, 2, 3]])
    a, b, o = bt.ranking_votes(models, ranks)
    assert sorted(zip(a.tolist(), b.tolist(), o.tolist())) == [(0, 1, 0.0), (0, 2, 0.5), (1, 2, 1.0), (2, 0, 1.0)]
