"""Inter-annotator agreement on numpy arrays: Krippendorff's alpha, Cohen's and Fleiss' kappa,
percent agreement, Kendall's W, pairwise Kendall tau-b and first-error agreement.

Data comes either as an items x raters matrix with NaN for "not rated", or as long-form
`Ratings` (one row per rating) for large data. Every figure has an `*_estimator` that the
bootstrap resamples by item, and a plain function for the point value.
"""

import warnings
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .bootstrap import Estimator, multinomial_replicates, point

LEVELS = ("nominal", "ordinal", "interval")
# Nominal and interval alpha on more distinct values than this skip the V x V coincidence matrix.
COINCIDENCE_MAX_VALUES = 64


# --- Data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ratings:
    """Long-form ratings: rating k gave `values[k]` to item `items[k]`; it came from rater
    `raters[k]` (an index; -1 for an unknown rater, who counts for alpha, Fleiss and percent
    agreement but not for per-rater figures). At most one rating per (item, known rater)."""

    items: np.ndarray
    raters: np.ndarray
    values: np.ndarray
    n_items: int
    n_raters: int

    @classmethod
    def from_arrays(cls, items, raters, values, *, n_items: int | None = None, n_raters: int | None = None) -> "Ratings":
        items = np.asarray(items, dtype=np.int64)
        raters = np.asarray(raters, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        keep = ~np.isnan(values)
        items, raters, values = items[keep], raters[keep], values[keep]
        n_items = int(items.max()) + 1 if n_items is None and items.size else (n_items or 0)
        n_raters = int(raters.max()) + 1 if n_raters is None and raters.size else (n_raters or 0)
        return cls(items, raters, values, n_items, max(n_raters, 0))

    @classmethod
    def from_matrix(cls, matrix) -> "Ratings":
        """From an items x raters matrix; NaN means the rater did not rate the item."""
        matrix = np.asarray(matrix, dtype=np.float64)
        items, raters = np.nonzero(~np.isnan(matrix))
        return cls(items.astype(np.int64), raters.astype(np.int64), matrix[items, raters], *matrix.shape)

    def __len__(self) -> int:
        return int(self.items.size)

    def select(self, mask: np.ndarray) -> "Ratings":
        return Ratings(self.items[mask], self.raters[mask], self.values[mask], self.n_items, self.n_raters)


def as_ratings(data) -> Ratings:
    return data if isinstance(data, Ratings) else Ratings.from_matrix(data)


def categories_of(data) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, code of each rating)."""
    r = as_ratings(data)
    categories, codes = np.unique(r.values, return_inverse=True)
    return categories, codes.astype(np.int64)


def value_counts(data, categories: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(items x categories count matrix, categories). Items nobody rated have a zero row."""
    r = as_ratings(data)
    if categories is None:
        categories, codes = categories_of(r)
    else:
        codes = np.searchsorted(categories, r.values)
    v = max(len(categories), 1)
    counts = np.bincount(r.items * v + codes, minlength=r.n_items * v).reshape(r.n_items, v)
    return counts.astype(np.int32 if counts.size and counts.max() < 2**31 else np.int64), categories


def _pairable(counts: np.ndarray) -> np.ndarray:
    """Rows of items rated at least twice (the only ones that carry agreement information)."""
    return counts[counts.sum(axis=1) >= 2]


# --- Krippendorff's alpha ---------------------------------------------------------------------


def _coincidence_features(counts: np.ndarray) -> np.ndarray:
    """Per-item coincidence matrices (n_u n_u^T - diag n_u) / (m_u - 1), flattened."""
    counts = counts.astype(np.float64)
    m = counts.sum(axis=1)
    outer = counts[:, :, None] * counts[:, None, :]
    idx = np.arange(counts.shape[1])
    outer[:, idx, idx] -= counts
    return (outer / (m - 1)[:, None, None]).reshape(len(counts), counts.shape[1] ** 2)


def _alpha_from_coincidences(categories: np.ndarray, level: str):
    values = np.asarray(categories, dtype=np.float64)
    v = len(values)

    def statistic(sums: np.ndarray) -> np.ndarray:
        o = sums.reshape(-1, v, v)
        n_c = o.sum(axis=2)
        n = n_c.sum(axis=1)
        if level == "nominal":
            delta = (1.0 - np.eye(v))[None]
        elif level == "ordinal":
            # delta(c, k) = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2 = (t_k - t_c)^2 with t the mid-rank
            # of each value among the pairable values.
            t = np.cumsum(n_c, axis=1) - n_c / 2.0
            delta = (t[:, :, None] - t[:, None, :]) ** 2
        else:
            delta = ((values[:, None] - values[None, :]) ** 2)[None]
        d_o = (o * delta).sum(axis=(1, 2))
        d_e = (n_c[:, :, None] * n_c[:, None, :] * delta).sum(axis=(1, 2))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(d_e > 0, 1.0 - (n - 1) * d_o / d_e, np.nan)

    return statistic


def _interval_units(r: Ratings) -> np.ndarray:
    """Per item rated twice or more: (m, sum x, sum x^2, within-item sum of squared pair gaps / (m - 1)),
    with x centred on the overall mean for precision."""
    m = np.bincount(r.items, minlength=r.n_items).astype(np.float64)
    keep = m[r.items] >= 2
    items, x = r.items[keep], r.values[keep]
    if x.size == 0:
        return np.zeros((0, 4))
    x = x - x.mean()
    s1 = np.bincount(items, weights=x, minlength=r.n_items)
    s2 = np.bincount(items, weights=x * x, minlength=r.n_items)
    rated = m >= 2
    m, s1, s2 = m[rated], s1[rated], s2[rated]
    within_ss = np.maximum(s2 - s1 * s1 / m, 0.0)
    # sum over ordered pairs i != j of (x_i - x_j)^2 is 2 m SS_within.
    return np.column_stack([m, s1, s2, 2.0 * m * within_ss / (m - 1)])


def _alpha_interval_statistic(sums: np.ndarray) -> np.ndarray:
    n, s1, s2, pair_gaps = sums[:, 0], sums[:, 1], sums[:, 2], sums[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        d_o = pair_gaps / n
        d_e = 2.0 * (n * s2 - s1 * s1) / (n * (n - 1))
        return np.where(d_e > 0, 1.0 - d_o / d_e, np.nan)


def _nominal_features(counts: np.ndarray) -> np.ndarray:
    """Per item: (m, disagreeing ordered pairs / (m - 1), n_u1..n_uV), for many categories."""
    counts = counts.astype(np.float64)
    m = counts.sum(axis=1)
    return np.column_stack([m, (m * m - (counts * counts).sum(axis=1)) / (m - 1), counts])


def _alpha_nominal_statistic(sums: np.ndarray) -> np.ndarray:
    n, pairs, n_c = sums[:, 0], sums[:, 1], sums[:, 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        d_e = n * n - (n_c * n_c).sum(axis=1)
        return np.where(d_e > 0, 1.0 - (n - 1) * pairs / d_e, np.nan)


def alpha_estimator(data, level: str = "nominal") -> Estimator:
    """Krippendorff's alpha (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"):
    alpha = 1 - D_o / D_e over the coincidence matrix of pairable values; missing ratings allowed.

    Works on the coincidence matrix of the distinct values. Above COINCIDENCE_MAX_VALUES distinct
    values, nominal and interval use equivalent closed forms over per-item counts and moments
    (no V x V matrix); ordinal keeps the matrix, as its distance depends on every value's count.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}")
    r = as_ratings(data)
    many = np.unique(r.values).size > COINCIDENCE_MAX_VALUES
    if level == "interval" and many:
        return Estimator(_interval_units(r), _alpha_interval_statistic)
    counts, categories = value_counts(r)
    if level == "nominal" and many:
        return Estimator(_pairable(counts), _alpha_nominal_statistic, _nominal_features)
    return Estimator(_pairable(counts), _alpha_from_coincidences(categories, level), _coincidence_features)


def krippendorff_alpha(data, level: str = "nominal") -> float:
    return point(alpha_estimator(data, level))


# --- Percent agreement and Fleiss' kappa ------------------------------------------------------


def _agreement_features(counts: np.ndarray) -> np.ndarray:
    """(1, P_i, n_i1..n_iV): P_i is the share of agreeing rater pairs on item i."""
    counts = counts.astype(np.float64)
    m = counts.sum(axis=1)
    p_i = (counts * (counts - 1)).sum(axis=1) / (m * (m - 1))
    return np.column_stack([np.ones(len(counts)), p_i, counts])


def _percent_statistic(sums: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return sums[:, 1] / sums[:, 0]


def _fleiss_statistic(sums: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        p_bar = sums[:, 1] / sums[:, 0]
        p_c = sums[:, 2:] / sums[:, 2:].sum(axis=1, keepdims=True)
        p_e = (p_c * p_c).sum(axis=1)
        return np.where(p_e < 1, (p_bar - p_e) / (1 - p_e), np.nan)


def percent_agreement_estimator(data) -> Estimator:
    """Raw agreement: over items rated twice or more, the mean share of rater pairs that agree."""
    counts, _ = value_counts(data)
    return Estimator(_pairable(counts), _percent_statistic, _agreement_features)


def percent_agreement(data) -> float:
    return point(percent_agreement_estimator(data))


def fleiss_kappa_estimator(data) -> Estimator:
    """Fleiss' kappa (Fleiss 1971): (P_bar - P_e) / (1 - P_e) over items rated twice or more.

    With a varying number of ratings per item, P_i uses each item's own count and the category
    shares pool all ratings; with a constant count this is exactly Fleiss' formula.
    """
    counts, _ = value_counts(data)
    return Estimator(_pairable(counts), _fleiss_statistic, _agreement_features)


def fleiss_kappa(data) -> float:
    return point(fleiss_kappa_estimator(data))


def first_error_agreement_estimator(data) -> Estimator:
    """Share of rater pairs naming the same first bad step. Values are step indices, with -1 for
    "no bad step"; NaN where a rater did not label the response."""
    return percent_agreement_estimator(data)


def first_error_agreement(data) -> float:
    return point(first_error_agreement_estimator(data))


# --- Pairs of raters: Cohen's kappa and per-rater agreement -----------------------------------


@dataclass(frozen=True)
class RaterPairs:
    """Contingency tables of every pair of known raters over the items both rated."""

    a: np.ndarray  # (P,) rater index, a < b
    b: np.ndarray  # (P,)
    tables: np.ndarray  # (P, V, V): tables[p, i, j] items where a said category i and b said j
    categories: np.ndarray  # (V,)

    @property
    def n_items(self) -> np.ndarray:
        return self.tables.sum(axis=(1, 2))


def _pair_rows(r: Ratings, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of ratings of the same item by two known raters: (rater a, rater b, code a, code b), a < b."""
    known = r.raters >= 0
    items, raters, codes = r.items[known], r.raters[known], codes[known]
    order = np.lexsort((raters, items))
    items, raters, codes = items[order], raters[order], codes[order]
    per_item = np.bincount(items, minlength=r.n_items) if items.size else np.zeros(1, dtype=np.int64)
    out_a, out_b, out_ca, out_cb = [], [], [], []
    for d in range(1, int(per_item.max()) if per_item.size else 0):
        same = items[:-d] == items[d:]
        # Sorted by rater within an item, so the earlier rating has the smaller rater index.
        out_a.append(raters[:-d][same])
        out_b.append(raters[d:][same])
        out_ca.append(codes[:-d][same])
        out_cb.append(codes[d:][same])
    if not out_a:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    return tuple(np.concatenate(x) for x in (out_a, out_b, out_ca, out_cb))  # type: ignore[return-value]


def rater_pairs(data, *, min_items: int = 1) -> RaterPairs:
    """Contingency tables for every pair of raters who share at least `min_items` items."""
    r = as_ratings(data)
    categories, codes = categories_of(r)
    v = max(len(categories), 1)
    a, b, ca, cb = _pair_rows(r, codes)
    pair_key = a * max(r.n_raters, 1) + b
    keys, pair_index = np.unique(pair_key, return_inverse=True)
    tables = np.bincount(pair_index * v * v + ca * v + cb, minlength=len(keys) * v * v).reshape(len(keys), v, v)
    pa, pb = np.divmod(keys, max(r.n_raters, 1))
    keep = tables.sum(axis=(1, 2)) >= min_items
    return RaterPairs(pa[keep], pb[keep], tables[keep].astype(np.float64), categories)


def _kappa_weights(categories: np.ndarray, weights: str | None) -> np.ndarray:
    values = np.asarray(categories, dtype=np.float64)
    gap = np.abs(values[:, None] - values[None, :])
    if weights is None:
        return (gap > 0).astype(np.float64)
    if weights == "linear":
        return gap
    if weights == "quadratic":
        return gap**2
    raise ValueError("weights must be None, 'linear' or 'quadratic'")


def kappa_from_tables(tables: np.ndarray, categories: np.ndarray, weights: str | None = None) -> np.ndarray:
    """Cohen's kappa (Cohen 1960; weighted: Cohen 1968) of contingency tables (..., V, V):
    kappa = 1 - sum(w * observed) / sum(w * expected), expected from the two raters' margins.

    Weighted kappa measures disagreement by the distance between category values (so a grade
    neither rater used still counts in the distance between the grades around it).
    """
    w = _kappa_weights(categories, weights)
    tables = np.asarray(tables, dtype=np.float64)
    n = tables.sum(axis=(-1, -2))
    expected = tables.sum(axis=-1)[..., :, None] * tables.sum(axis=-2)[..., None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = expected / n[..., None, None]
        observed_d = (w * tables).sum(axis=(-1, -2))
        expected_d = (w * expected).sum(axis=(-1, -2))
        return np.where(expected_d > 0, 1.0 - observed_d / expected_d, np.nan)


def cohen_kappa(data, a: int = 0, b: int = 1, *, weights: str | None = None) -> float:
    """Cohen's kappa between raters a and b (columns of the matrix) over the items both rated."""
    r = as_ratings(data)
    mask = (r.raters == a) | (r.raters == b)
    pairs = rater_pairs(r.select(mask))
    if not len(pairs.a):
        return float("nan")
    value = float(kappa_from_tables(pairs.tables[0], pairs.categories, weights))
    return value


def cohen_kappa_all_pairs(data, *, weights: str | None = None, min_items: int = 1) -> tuple[RaterPairs, np.ndarray]:
    """(pairs, kappa per pair) for every pair of raters sharing at least `min_items` items."""
    pairs = rater_pairs(data, min_items=min_items)
    return pairs, kappa_from_tables(pairs.tables, pairs.categories, weights)


def per_rater_agreement(data) -> dict[str, np.ndarray]:
    """Per known rater: ratings given, pairwise agreement with co-raters, agreement with the majority.

    pair_agreement: share of (this rater, other rater, item) pairs with the same value.
    majority_agreement: share of this rater's ratings equal to the plurality of the *other*
    ratings of the item (items where the others tie, or nobody else rated, are left out).
    """
    r = as_ratings(data)
    n_raters = max(r.n_raters, 0)
    known = r.raters >= 0
    ratings = np.bincount(r.raters[known], minlength=n_raters)
    categories, codes = categories_of(r)
    a, b, ca, cb = _pair_rows(r, codes)
    agree = (ca == cb).astype(np.float64)
    pairs = np.bincount(a, minlength=n_raters) + np.bincount(b, minlength=n_raters)
    pairs_agree = np.bincount(a, weights=agree, minlength=n_raters) + np.bincount(b, weights=agree, minlength=n_raters)

    counts, _ = value_counts(r, categories)
    items, raters, codes = r.items[known], r.raters[known], codes[known]
    others = np.take(counts, items, axis=0).astype(np.int64)
    others[np.arange(len(items)), codes] -= 1
    top = others.max(axis=1) if len(items) else np.zeros(0, dtype=np.int64)
    decided = (top > 0) & ((others == top[:, None]).sum(axis=1) == 1)
    hit = decided & (others[np.arange(len(items)), codes] == top)
    majority_n = np.bincount(raters[decided], minlength=n_raters)
    majority_hit = np.bincount(raters[hit], minlength=n_raters)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "ratings": ratings,
            "pairs": pairs,
            "pair_agreement": pairs_agree / pairs,
            "majority_items": majority_n,
            "majority_agreement": majority_hit / majority_n,
        }


def majority_labels(data, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(plurality category index per item, categories); ties broken at random (seeded); -1 if unrated."""
    counts, categories = value_counts(data)
    rng = np.random.default_rng(seed)
    noisy = counts + rng.random(counts.shape) * 0.5
    labels = np.argmax(noisy, axis=1)
    labels[counts.sum(axis=1) == 0] = -1
    return labels, categories


# --- Rankings: Kendall's W and tau-b ----------------------------------------------------------


def midranks(ranks: np.ndarray) -> np.ndarray:
    """Rank values (..., k), lower is better, ties allowed -> average ranks 1..k along the last axis."""
    ranks = np.asarray(ranks, dtype=np.float64)
    less = (ranks[..., None, :] < ranks[..., :, None]).sum(axis=-1)
    equal = (ranks[..., None, :] == ranks[..., :, None]).sum(axis=-1)
    return less + (equal + 1) / 2.0


def kendall_w(rankings: np.ndarray) -> np.ndarray:
    """Kendall's coefficient of concordance with the tie correction (Kendall & Babington Smith 1939):
    W = 12 S / (m^2 (k^3 - k) - m sum_i T_i), T_i = sum over tie groups of (t^3 - t).

    rankings: (m raters, k objects) or a stack (T, m, k); returns W (or one per task; NaN where
    every rater ties everything).
    """
    r = midranks(rankings)
    single = r.ndim == 2
    if single:
        r = r[None]
    _, m, k = r.shape
    column_sums = r.sum(axis=1)
    s = ((column_sums - m * (k + 1) / 2.0) ** 2).sum(axis=1)
    equal = (r[..., None, :] == r[..., :, None]).sum(axis=-1)  # size of each object's tie group
    ties = ((equal**2 - 1)).sum(axis=(1, 2))  # sum over groups of t^3 - t = sum over members of t^2 - 1
    denominator = m * m * (k**3 - k) - m * ties
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(denominator > 0, 12.0 * s / denominator, np.nan)
    return w[0] if single else w


def kendall_tau_b_matrix(rankings: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between every two raters: (m, k) -> (m, m), or (T, m, k) -> (T, m, m).

    tau_b = (concordant - discordant) / sqrt((n0 - n1)(n0 - n2)); NaN where a rater ties everything.
    """
    r = np.asarray(rankings, dtype=np.float64)
    single = r.ndim == 2
    if single:
        r = r[None]
    signs = np.sign(r[..., :, None] - r[..., None, :])  # (T, m, k, k)
    num = np.einsum("taij,tbij->tab", signs, signs)
    untied = np.einsum("taij,taij->ta", signs, signs)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = num / np.sqrt(untied[:, :, None] * untied[:, None, :])
    return tau[0] if single else tau


def _group_by_shape(rankings: list[np.ndarray]) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    shapes: dict[tuple[int, int], list[int]] = {}
    for i, x in enumerate(rankings):
        shapes.setdefault(np.shape(x), []).append(i)
    return {
        shape: (np.array(idx), np.stack([np.asarray(rankings[i], dtype=np.float64) for i in idx]))
        for shape, idx in shapes.items()
        if len(shape) == 2 and shape[0] >= 2 and shape[1] >= 2
    }


def _ranking_units(rankings: list[np.ndarray]) -> np.ndarray:
    """Per task: (1, W, sum of tau-b over rater pairs, number of rater pairs with a defined tau)."""
    rows = []
    for _, stack in _group_by_shape(rankings).values():
        w = kendall_w(stack)
        tau = kendall_tau_b_matrix(stack)
        upper = np.triu_indices(stack.shape[1], k=1)
        pair_tau = tau[:, upper[0], upper[1]]
        defined = np.isfinite(pair_tau)
        rows.append(
            np.column_stack([np.isfinite(w), np.nan_to_num(w), np.where(defined, pair_tau, 0).sum(1), defined.sum(1)])
        )
    return np.concatenate(rows) if rows else np.zeros((0, 4))


def _mean_w(sums: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return sums[:, 1] / sums[:, 0]


def _mean_tau(sums: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return sums[:, 2] / sums[:, 3]


def kendall_w_estimator(rankings: list[np.ndarray]) -> Estimator:
    """Mean Kendall's W over tasks; each task is an (m raters, k responses) array of ranks."""
    return Estimator(_ranking_units(rankings), _mean_w)


def kendall_tau_estimator(rankings: list[np.ndarray]) -> Estimator:
    """Mean Kendall tau-b over every pair of raters of every task (pairs pooled, tasks resampled)."""
    return Estimator(_ranking_units(rankings), _mean_tau)


def mean_kendall_w(rankings: list[np.ndarray]) -> float:
    return point(kendall_w_estimator(rankings))


def mean_pairwise_tau(rankings: list[np.ndarray]) -> float:
    return point(kendall_tau_estimator(rankings))


def kappa_standard_errors(tables: np.ndarray, categories: np.ndarray, weights: str | None = None) -> np.ndarray:
    """Large-sample standard error of Cohen's (weighted) kappa per table (..., V, V)
    (Fleiss, Cohen & Everitt 1969), with agreement weights w = 1 - d / max d:

    var = [sum_ij p_ij (w_ij - (wr_i + wc_j)(1 - k))^2 - (k - pe (1 - k))^2] / (n (1 - pe)^2),
    wr_i = sum_j p_.j w_ij, wc_j = sum_i p_i. w_ij, pe = sum_ij p_i. p_.j w_ij.
    """
    d = _kappa_weights(categories, weights)
    w = 1.0 - d / d.max() if d.max() > 0 else np.ones_like(d)
    tables = np.asarray(tables, dtype=np.float64)
    n = tables.sum(axis=(-1, -2))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = tables / n[..., None, None]
        rows, cols = p.sum(axis=-1), p.sum(axis=-2)
        kappa = kappa_from_tables(tables, categories, weights)
        w_row = (w * cols[..., None, :]).sum(axis=-1)
        w_col = (w * rows[..., :, None]).sum(axis=-2)
        pe = (w * rows[..., :, None] * cols[..., None, :]).sum(axis=(-1, -2))
        k1 = (1.0 - kappa)[..., None, None]
        spread = (p * (w - (w_row[..., :, None] + w_col[..., None, :]) * k1) ** 2).sum(axis=(-1, -2))
        var = (spread - (kappa - pe * (1.0 - kappa)) ** 2) / (n * (1.0 - pe) ** 2)
        return np.sqrt(np.maximum(var, 0.0))


# Above this many random draws (pairs x resamples x cells), pair intervals use the large-sample
# standard error instead of the bootstrap: a project with 100 annotators has ~5,000 pairs.
KAPPA_BOOTSTRAP_DRAWS = 4_000_000


def kappa_intervals(
    tables: np.ndarray,
    categories: np.ndarray,
    *,
    weights: str | None = None,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray, str]:
    """(low, high, method) of Cohen's kappa per contingency table (P, V, V).

    "bootstrap": percentile interval resampling each pair's shared items (multinomial redraws of
    its table); "normal": kappa +- z * large-sample standard error; "auto": the bootstrap unless
    it would take more than KAPPA_BOOTSTRAP_DRAWS draws.
    """
    n_pairs, v = tables.shape[0], tables.shape[-1]
    low, high = np.full(n_pairs, np.nan), np.full(n_pairs, np.nan)
    if method == "auto":
        method = "bootstrap" if n_pairs * n_resamples * v * v <= KAPPA_BOOTSTRAP_DRAWS else "normal"
    if n_pairs == 0 or (method == "bootstrap" and n_resamples <= 0):
        return low, high, method
    if method == "normal":
        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        kappa = kappa_from_tables(tables, categories, weights)
        se = kappa_standard_errors(tables, categories, weights)
        return kappa - z * se, kappa + z * se, method
    tail = (1.0 - level) / 2.0 * 100.0
    batch = max(1, 2_000_000 // (n_resamples * v * v))
    for start in range(0, n_pairs, batch):
        chunk = tables[start : start + batch].reshape(-1, v * v)
        replicates = multinomial_replicates(chunk, n_resamples=n_resamples, seed=seed + start)
        kappas = kappa_from_tables(replicates.reshape(len(chunk), n_resamples, v, v), categories, weights)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # pairs whose every replicate is undefined
            low[start : start + len(chunk)] = np.nanpercentile(kappas, tail, axis=1)
            high[start : start + len(chunk)] = np.nanpercentile(kappas, 100.0 - tail, axis=1)
    return low, high, method


def per_rater_tau(rankings: list[np.ndarray], raters: list[np.ndarray], n_raters: int) -> tuple[np.ndarray, np.ndarray]:
    """(pairs, mean tau-b with co-raters) per rater; rankings[t] is (m, k), raters[t] its m rater indices."""
    total, count = np.zeros(n_raters), np.zeros(n_raters)
    for idx, stack in _group_by_shape(rankings).values():
        who = np.stack([np.asarray(raters[i], dtype=np.int64) for i in idx])  # (T, m)
        tau = kendall_tau_b_matrix(stack)
        a, b = np.triu_indices(stack.shape[1], k=1)
        values = tau[:, a, b]
        ra, rb = who[:, a], who[:, b]
        ok = np.isfinite(values) & (ra >= 0) & (rb >= 0)
        for r in (ra, rb):
            total += np.bincount(r[ok], weights=values[ok], minlength=n_raters)
            count += np.bincount(r[ok], minlength=n_raters)
    with np.errstate(divide="ignore", invalid="ignore"):
        return count, total / count
