"""Reliability-weighted labels for exports and review: Dawid-Skene soft labels per task.

Exports call `pairwise_soft_labels` to replace the majority vote (and derive TRL's `margin`);
the review queue calls `review_candidates` to find the tasks the raters disagree on most.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..models import Project, TaskKind
from ..payloads import PAIRWISE_CHOICES
from .dawid_skene import DawidSkeneResult, dawid_skene, preference_margin
from .selectors import ALL_SOURCES, LabelTable, Raters, pairwise_table, rating_table


@dataclass(frozen=True)
class SoftLabel:
    task_id: int
    probabilities: dict[str, float]  # class -> P(true class | all ratings)
    label: str  # most probable class
    majority: str  # plurality vote (ties broken at random, seeded)
    ratings: int
    strength: float | None  # pairwise: mean stated strength of the votes for the label (A/B only)
    margin: float | None  # pairwise: TRL margin for chosen = label (A/B only), see preference_margin

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _fit(table: LabelTable, name: str, n_classes: int) -> tuple[DawidSkeneResult, np.ndarray, np.ndarray]:
    values = table.values[name]
    keep = ~np.isnan(values)
    items, raters, codes = table.items[keep], table.raters[keep], values[keep].astype(np.int64)
    n_raters = table.n_raters
    raters = np.where(raters >= 0, raters, n_raters)  # unknown raters pooled into one
    result = dawid_skene(items, raters, codes, n_classes=n_classes, n_items=table.n_items, n_raters=n_raters + 1)
    # Majority labels over the same class codes (categories_of would renumber absent classes).
    counts = np.bincount(items * n_classes + codes, minlength=table.n_items * n_classes).reshape(table.n_items, n_classes)
    rng = np.random.default_rng(0)
    majority = np.argmax(counts + rng.random(counts.shape) * 0.5, axis=1)
    return result, majority, counts.sum(axis=1)


def pairwise_soft_labels(*, project: Project, sources: Iterable[str] = ALL_SOURCES) -> dict[int, SoftLabel]:
    """task id -> Dawid-Skene soft label over A / B / tie / both_bad for every judged pairwise task.

    For a preference export: chosen = label when it is A or B; `margin` is
    (P(label) - P(other side)) x mean stated strength of the votes for the label.
    """
    table = pairwise_table(project=project, sources=sources, raters=Raters())
    if not len(table):
        return {}
    k = len(PAIRWISE_CHOICES)
    result, majority, n_ratings = _fit(table, "choice", k)
    strength, choice = table.values["strength"], table.values["choice"]
    side_strength = np.full((table.n_items, 2), np.nan)
    for side in (0, 1):
        mask = (choice == side) & ~np.isnan(strength)
        total = np.bincount(table.items[mask], weights=strength[mask], minlength=table.n_items)
        count = np.bincount(table.items[mask], minlength=table.n_items)
        with np.errstate(divide="ignore", invalid="ignore"):
            side_strength[:, side] = np.where(count > 0, total / count, np.nan)
    out = {}
    for i, task_id in enumerate(table.item_tasks):
        p = result.posteriors[i]
        label = int(result.labels[i])
        strength_i = margin = None
        if label in (0, 1):
            s = side_strength[i, label]
            strength_i = None if np.isnan(s) else float(s)
            margin = preference_margin(p[label], p[1 - label], strength_i)
        out[int(task_id)] = SoftLabel(
            task_id=int(task_id),
            probabilities={c: float(p[j]) for j, c in enumerate(PAIRWISE_CHOICES)},
            label=PAIRWISE_CHOICES[label],
            majority=PAIRWISE_CHOICES[int(majority[i])],
            ratings=int(n_ratings[i]),
            strength=strength_i,
            margin=margin,
        )
    return out


def review_candidates(
    *,
    project: Project,
    kind: str = TaskKind.PAIRWISE,
    sources: Iterable[str] = ALL_SOURCES,
    max_confidence: float = 0.8,
    limit: int = 100,
) -> list[dict]:
    """Tasks rated at least twice whose Dawid-Skene label is least certain (pairwise choice or
    rating thumb), most uncertain first: what a reviewer should adjudicate."""
    if kind == TaskKind.PAIRWISE:
        table = pairwise_table(project=project, sources=sources, raters=Raters())
        name, classes = "choice", list(PAIRWISE_CHOICES)
    elif kind == TaskKind.RATING:
        table = rating_table(project=project, sources=sources, raters=Raters())
        name, classes = "thumb", ["down", "up"]
    else:
        raise ValueError("review candidates are computed for pairwise and rating tasks")
    if not len(table) or np.isnan(table.values[name]).all():
        return []
    result, majority, n_ratings = _fit(table, name, len(classes))
    confidence = result.posteriors.max(axis=1)
    pick = np.flatnonzero((n_ratings >= 2) & (confidence <= max_confidence))
    pick = pick[np.argsort(confidence[pick], kind="stable")][:limit]
    return [
        {
            "task_id": int(table.item_tasks[i]),
            "label": classes[int(result.labels[i])],
            "confidence": float(confidence[i]),
            "majority": classes[int(majority[i])],
            "ratings": int(n_ratings[i]),
        }
        for i in pick
    ]

