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


class _Ratings:
    """The EM steps as per-class gathers from small tables and weighted bincounts: every gather
    reads either a (raters x K) table or one class column of the posteriors, both cache-sized."""

    def __init__(self, items, raters, labels, k: int, n_items: int, n_raters: int):
        self.k, self.n_items, self.n_raters = k, n_items, n_raters
        self.items = items
        self.cells = raters * k + labels  # (rater, reported label)

    def posteriors(self, log_prior: np.ndarray, confusions: np.ndarray) -> tuple[np.ndarray, float]:
        """E-step: P(z_i = c | labels) for every item, as (K, items), and the log-likelihood."""
        with np.errstate(divide="ignore"):
            # log P(label l | true class c) as (K, raters * K): column (rater, l)
            per_cell = np.ascontiguousarray(np.log(confusions).transpose(1, 0, 2).reshape(self.k, -1))
        log_post = np.empty((self.k, self.n_items))
        for c in range(self.k):
            log_post[c] = log_prior[c] + np.bincount(
                self.items, weights=np.take(per_cell[c], self.cells), minlength=self.n_items
            )
        top = log_post.max(axis=0)
        post = np.exp(log_post - top)
        norm = post.sum(axis=0)
        post /= norm
        return post, float((np.log(norm) + top).sum())

    def m_step(self, posteriors: np.ndarray, smoothing: float) -> tuple[np.ndarray, np.ndarray]:
        """M-step from (K, items) posteriors: class priors and each rater's confusion matrix
        (rows: true class), with a pseudo-count."""
        k = self.k
        counts = np.empty((self.n_raters, k, k))
        for c in range(k):
            counts[:, c, :] = np.bincount(
                self.cells, weights=np.take(posteriors[c], self.items), minlength=self.n_raters * k
            ).reshape(self.n_raters, k)
        counts += smoothing
        confusions = counts / counts.sum(axis=2, keepdims=True)
        priors = posteriors.sum(axis=1) + smoothing
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
    posteriors = np.ascontiguousarray(posteriors.T)  # (K, items) while fitting

    em = _Ratings(items, raters, labels, k, n_items, n_raters)
    loglik, converged, iteration = -np.inf, False, 0
    for iteration in range(1, max_iter + 1):
        priors, confusions = em.m_step(posteriors, smoothing)
        new, new_loglik = em.posteriors(np.log(priors), confusions)
        change = float(np.abs(new - posteriors).max()) if new.size else 0.0
        gain = new_loglik - loglik
        posteriors, loglik = new, new_loglik
        # EM can crawl for hundreds of iterations once the labels are settled; stop when the
        # likelihood no longer moves (relative) or no posterior does.
        if change < tol or gain <= tol * abs(loglik):
            converged = True
            break

    posteriors = np.ascontiguousarray(posteriors.T)
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
