"""Reliability-weighted label aggregation: the Dawid-Skene model fitted by EM, vectorised.

Dawid & Skene (1979): each item has a hidden true class z with prior pi; rater j reports class l
with probability theta_j[z, l]. EM alternates item posteriors P(z_i = k | labels) and the
maximum a-posteriori priors and confusion matrices (a small Dirichlet pseudo-count keeps a rater
seen on few items from getting probabilities of exactly 0 or 1).
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DawidSkeneResult:
    posteriors: np.ndarray  # (items, K): P(true class | all labels); uniform for unlabelled items
    labels: np.ndarray  # (items,): most probable class, -1 for unlabelled items
    confusions: np.ndarray  # (raters, K, K): row k = P(rater says l | true class k)
    priors: np.ndarray  # (K,)
    reliability: np.ndarray  # (raters,): P(rater is right) = sum_k prior_k * confusion[k, k]; NaN if unseen
    iterations: int
    log_likelihood: float
    converged: bool


def _log_conf(confusions: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(confusions)


def _posteriors(items, raters, labels, log_prior, log_conf, n_items: int) -> tuple[np.ndarray, float]:
    k = log_prior.shape[0]
    per_rating = log_conf[raters, :, labels]  # (n, K): log P(label | true class k)
    log_post = np.tile(log_prior, (n_items, 1))
    for c in range(k):
        log_post[:, c] += np.bincount(items, weights=per_rating[:, c], minlength=n_items)
    top = log_post.max(axis=1, keepdims=True)
    post = np.exp(log_post - top)
    norm = post.sum(axis=1, keepdims=True)
    loglik = float((np.log(norm) + top).sum())
    return post / norm, loglik


def _m_step(items, raters, labels, posteriors, n_raters: int, k: int, smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    counts = np.empty((n_raters, k, k))
    key = raters * k + labels
    for c in range(k):
        counts[:, c, :] = np.bincount(key, weights=posteriors[items, c], minlength=n_raters * k).reshape(n_raters, k)
    counts += smoothing
    confusions = counts / counts.sum(axis=2, keepdims=True)
    priors = posteriors.sum(axis=0) + smoothing
    return priors / priors.sum(), confusions


def dawid_skene(
    items,
    raters,
    labels,
    *,
    n_classes: int | None = None,
    n_items: int | None = None,
    n_raters: int | None = None,
    max_iter: int = 500,
    tol: float = 1e-7,
    smoothing: float = 0.01,
    init: np.ndarray | None = None,
) -> DawidSkeneResult:
    """Fit Dawid-Skene to long-form labels: rating n is class `labels[n]` given to item `items[n]`
    by rater `raters[n]` (all 0-based indices).

    Starts from the per-item vote shares (majority vote as soft labels) unless `init` posteriors
    are given; stops when the log-likelihood gains less than `tol` relative to its size, or no
    posterior moves more than `tol`.
    """
    items = np.asarray(items, dtype=np.int64)
    raters = np.asarray(raters, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    k = int(n_classes if n_classes is not None else (labels.max() + 1 if labels.size else 1))
    n_items = int(n_items if n_items is not None else (items.max() + 1 if items.size else 0))
    n_raters = int(n_raters if n_raters is not None else (raters.max() + 1 if raters.size else 0))

    if init is None:
        votes = np.bincount(items * k + labels, minlength=n_items * k).reshape(n_items, k).astype(np.float64)
        totals = votes.sum(axis=1, keepdims=True)
        posteriors = np.where(totals > 0, votes / np.where(totals > 0, totals, 1), 1.0 / k)
    else:
        posteriors = np.asarray(init, dtype=np.float64)

    loglik, converged, iteration = -np.inf, False, 0
    for iteration in range(1, max_iter + 1):
        priors, confusions = _m_step(items, raters, labels, posteriors, n_raters, k, smoothing)
        new, new_loglik = _posteriors(items, raters, labels, np.log(priors), _log_conf(confusions), n_items)
        change = float(np.abs(new - posteriors).max()) if new.size else 0.0
        gain = new_loglik - loglik
        posteriors, loglik = new, new_loglik
        # EM can crawl for hundreds of iterations once the labels are settled; stop when the
        # likelihood no longer moves (relative) or no posterior does.
        if change < tol or gain <= tol * abs(loglik):
            converged = True
            break

    rated = np.bincount(items, minlength=n_items) > 0
    out_labels = np.where(rated, posteriors.argmax(axis=1), -1)
    seen = np.bincount(raters, minlength=n_raters) > 0
    reliability = np.where(seen, np.einsum("k,jkk->j", priors, confusions), np.nan)
    return DawidSkeneResult(posteriors, out_labels, confusions, priors, reliability, iteration, loglik, converged)


def preference_margin(p_chosen, p_rejected, strength=None):
    """A TRL `margin` for a preference pair from soft labels: (P(chosen) - P(rejected)) x strength.

    The reward-model loss -log sigmoid(r_chosen - r_rejected - margin) (Touvron et al. 2023) then
    asks for a larger gap where the aggregated judgment is confident and the raters said the
    preference was strong (strength 1-3, the mean stated strength of the votes for the chosen
    response; 1 when none was stated). Clipped at 0: a pair whose chosen side is not the more
    probable one gets no margin.
    """
    confidence = np.clip(np.asarray(p_chosen, dtype=np.float64) - np.asarray(p_rejected, dtype=np.float64), 0.0, 1.0)
    strength = 1.0 if strength is None else np.where(np.isnan(np.asarray(strength, dtype=np.float64)), 1.0, strength)
    out = confidence * strength
    return float(out) if np.ndim(out) == 0 else out
