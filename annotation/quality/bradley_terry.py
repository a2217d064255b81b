"""Bradley-Terry strengths from pairwise votes, Elo-scaled, with bootstrap intervals (as Chatbot Arena).

P(i beats j) = sigmoid(theta_i - theta_j) (Bradley & Terry 1952). Votes are first counted into an
M x M win matrix (a tie is half a win each way), so a fit costs the same for a thousand votes or
a million: Newton's method on the concave log-likelihood, a few M x M solves. The bootstrap
resamples votes by drawing multinomial counts over the (pair, outcome) cells, and fits every
replicate at once as a batch.
"""

from dataclasses import dataclass

import numpy as np

from .bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES

ELO_SCALE = 400.0
ELO_BASE = 10.0
ELO_ANCHOR = 1000.0
# Elo points per unit of natural-log strength: 400 / ln 10.
ELO_PER_LOGIT = ELO_SCALE / np.log(ELO_BASE)
# Newton steps larger than this (in log-strength, after centring) are checked by a line search.
SAFE_STEP = 0.1


def win_matrix(a, b, outcome, n_models: int) -> np.ndarray:
    """W[i, j] = wins of model i over model j. outcome: 1 = a won, 0 = b won, 0.5 = tie (half each)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    outcome = np.asarray(outcome, dtype=np.float64)
    keep = a != b
    a, b, outcome = a[keep], b[keep], outcome[keep]
    size = n_models * n_models
    wins = np.bincount(a * n_models + b, weights=outcome, minlength=size)
    wins += np.bincount(b * n_models + a, weights=1.0 - outcome, minlength=size)
    return wins.reshape(n_models, n_models)


def vote_cells(a, b, outcome, n_models: int) -> np.ndarray:
    """Counts per (unordered pair i < j, outcome in {i won, j won, tie}): (M, M, 3), upper triangle used."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    outcome = np.asarray(outcome, dtype=np.float64)
    keep = a != b
    a, b, outcome = a[keep], b[keep], outcome[keep]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    lo_won = np.where(a == lo, outcome, 1.0 - outcome)
    result = np.where(lo_won == 1.0, 0, np.where(lo_won == 0.0, 1, 2))
    return np.bincount((lo * n_models + hi) * 3 + result, minlength=n_models * n_models * 3).reshape(
        n_models, n_models, 3
    ).astype(np.float64)


def cells_to_wins(cells: np.ndarray) -> np.ndarray:
    """(..., M, M, 3) vote cells -> (..., M, M) win matrices (ties half a win each way)."""
    upper = cells[..., 0] + 0.5 * cells[..., 2]
    lower = cells[..., 1] + 0.5 * cells[..., 2]
    return upper + np.swapaxes(lower, -1, -2)


def _log_likelihood(theta: np.ndarray, wins: np.ndarray, l2: float) -> np.ndarray:
    gaps = theta[:, :, None] - theta[:, None, :]
    return (wins * -np.logaddexp(0.0, -gaps)).sum(axis=(1, 2)) - 0.5 * l2 * (theta * theta).sum(axis=1)


def fit(
    wins: np.ndarray, *, l2: float = 0.0, max_iter: int = 100, tol: float = 1e-9, init: np.ndarray | None = None
) -> np.ndarray:
    """Maximum-likelihood log-strengths theta for one win matrix (M, M) or a batch (B, M, M).

    Strengths are centred to mean 0. l2 = 0 gives the plain MLE; it exists when every model has
    both beaten and lost to someone along a chain (the win graph is strongly connected, see
    `mle_exists`).
    l2 > 0 adds a Gaussian prior (ridge) on theta, so every model gets a finite strength.
    """
    wins = np.asarray(wins, dtype=np.float64)
    single = wins.ndim == 2
    if single:
        wins = wins[None]
    n_batch, m, _ = wins.shape
    games = wins + np.swapaxes(wins, 1, 2)
    won = wins.sum(axis=2)
    theta = np.zeros((n_batch, m)) if init is None else np.broadcast_to(init, (n_batch, m)).astype(np.float64)
    eye = np.eye(m)
    # With l2 = 0 the Hessian is a graph Laplacian, singular along the all-ones direction; adding
    # J / M fixes that direction without changing the step (the gradient is orthogonal to it).
    fix = (np.ones((m, m)) / m) if l2 == 0 else 0.0
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(theta[:, :, None] - theta[:, None, :])))
        grad = won - (games * p).sum(axis=2) - l2 * theta
        info = games * p * (1.0 - p)
        hessian = eye * info.sum(axis=2)[:, :, None] - info + (l2 + 1e-12) * eye + fix
        step = np.linalg.solve(hessian, grad[..., None])[..., 0]
        # Only differences matter: with a tiny ridge the common level crawls along a nearly flat
        # direction at rounding-noise speed, so steps are judged centred.
        centred = np.abs(step - step.mean(axis=1, keepdims=True)).max()
        if centred > SAFE_STEP:
            # Far from the optimum a full Newton step can overshoot: halve it where the
            # likelihood would drop. Near it (warm-started bootstrap fits) Newton is safe.
            current = _log_likelihood(theta, wins, l2)
            scale = np.ones(n_batch)
            for _ in range(30):
                proposal = theta + scale[:, None] * step
                worse = _log_likelihood(proposal, wins, l2) < current - 1e-12 * np.abs(current)
                if not worse.any():
                    break
                scale = np.where(worse, scale / 2.0, scale)
            theta = proposal
        else:
            theta = theta + step
        if centred < tol:
            break
    theta = theta - theta.mean(axis=1, keepdims=True)
    return theta[0] if single else theta


def mle_exists(wins: np.ndarray) -> bool:
    """True when the directed graph "i beat j at least once (or tied)" is strongly connected."""
    m = wins.shape[0]
    reach = (wins > 0) | np.eye(m, dtype=bool)
    for _ in range(max(1, int(np.ceil(np.log2(max(m, 2)))) + 1)):
        reach = reach | ((reach.astype(np.int32) @ reach.astype(np.int32)) > 0)
    return bool(reach.all())


def to_elo(theta: np.ndarray, *, anchor: int | None = None, anchor_rating: float = ELO_ANCHOR) -> np.ndarray:
    """Elo-scaled ratings, 400 points per factor of 10 in odds: model `anchor` gets `anchor_rating`
    (without an anchor, the mean rating is `anchor_rating`)."""
    theta = np.asarray(theta, dtype=np.float64)
    ref = theta[..., anchor] if anchor is not None else theta.mean(axis=-1)
    return anchor_rating + ELO_PER_LOGIT * (theta - np.expand_dims(ref, -1))


def predicted_win_rates(theta: np.ndarray) -> np.ndarray:
    """P(row model beats column model) under the fitted strengths."""
    theta = np.asarray(theta, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))


def observed_win_rates(wins: np.ndarray) -> np.ndarray:
    """Share of row's games against column that row won (ties half); NaN where they never met."""
    games = wins + wins.T
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = wins / games
    rates[games == 0] = np.nan
    return rates


@dataclass(frozen=True)
class Leaderboard:
    theta: np.ndarray  # (M,) natural-log strengths
    ratings: np.ndarray  # (M,) Elo-scaled
    low: np.ndarray  # (M,) bootstrap percentile interval of the rating
    high: np.ndarray
    wins: np.ndarray  # (M, M) win matrix (ties half)
    cells: np.ndarray  # (M, M, 3) vote counts per pair and outcome
    l2: float
    n_resamples: int
    level: float


def leaderboard(
    a,
    b,
    outcome,
    n_models: int,
    *,
    anchor: int | None = None,
    anchor_rating: float = ELO_ANCHOR,
    l2: float | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> Leaderboard:
    """Fit strengths from votes (a, b, outcome), Elo-scale them and bootstrap the ratings.

    l2=None: plain MLE where it exists, otherwise a weak ridge (0.01 per model), so a model that
    never lost still gets a finite, if uncertain, rating.
    """
    cells = vote_cells(a, b, outcome, n_models)
    wins = cells_to_wins(cells)
    if l2 is None:
        l2 = 0.0 if mle_exists(wins) else 0.01
    theta = fit(wins, l2=l2)
    ratings = to_elo(theta, anchor=anchor, anchor_rating=anchor_rating)
    low = high = np.full(n_models, np.nan)
    if n_resamples > 0 and cells.sum() > 0:
        flat = cells.reshape(-1)
        nonzero = np.flatnonzero(flat)
        rng = np.random.default_rng(seed)
        total = int(flat.sum())
        draws = rng.multinomial(total, flat[nonzero] / total, size=n_resamples)
        replicate_cells = np.zeros((n_resamples, flat.size))
        replicate_cells[:, nonzero] = draws
        replicate_wins = cells_to_wins(replicate_cells.reshape(n_resamples, n_models, n_models, 3))
        # A resample can drop the only loss of a model; keep its ratings finite with a weak ridge.
        boot_l2 = l2 if l2 > 0 else 1e-6
        thetas = fit(replicate_wins, l2=boot_l2, init=theta)
        replicate_ratings = to_elo(thetas, anchor=anchor, anchor_rating=anchor_rating)
        tail = (1.0 - level) / 2.0 * 100.0
        low, high = np.percentile(replicate_ratings, [tail, 100.0 - tail], axis=0)
    return Leaderboard(theta, ratings, low, high, wins, cells, l2, n_resamples, level)


def ranking_votes(models: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise votes implied by rankings: models (n, k) model index per position (-1 unknown),
    ranks (n, k) rank per position (lower is better, equal is a tie) -> (a, b, outcome)."""
    models = np.asarray(models, dtype=np.int64)
    ranks = np.asarray(ranks, dtype=np.float64)
    k = models.shape[1] if models.ndim == 2 else 0
    i, j = np.triu_indices(k, k=1)
    a, b = models[:, i].ravel(), models[:, j].ravel()
    ri, rj = ranks[:, i].ravel(), ranks[:, j].ravel()
    outcome = np.where(ri < rj, 1.0, np.where(ri > rj, 0.0, 0.5))
    keep = (a >= 0) & (b >= 0) & (a != b)
    return a[keep], b[keep], outcome[keep]
