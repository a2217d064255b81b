"""Dawid-Skene finds the annotator who answers at random and beats majority vote."""

import numpy as np
import pytest

from annotation.quality import agreement as ag
from annotation.quality.dawid_skene import dawid_skene, preference_margin


def _simulate(seed: int, items=400, classes=3, accuracies=(0.9, 0.75, 0.65, 0.6, None)):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, size=items)
    rows = []
    for rater, acc in enumerate(accuracies):
        if acc is None:  # answers at random
            labels = rng.integers(0, classes, size=items)
        else:
            wrong = (truth + rng.integers(1, classes, size=items)) % classes
            labels = np.where(rng.random(items) < acc, truth, wrong)
        rows.append(np.column_stack([np.arange(items), np.full(items, rater), labels]))
    data = np.concatenate(rows)
    return truth, data[:, 0], data[:, 1], data[:, 2]


@pytest.mark.parametrize("seed", range(3))
def test_random_annotator_gets_the_lowest_reliability_and_aggregation_beats_majority(seed):
    truth, items, raters, labels = _simulate(seed)
    result = dawid_skene(items, raters, labels, n_classes=3)
    assert result.converged
    assert int(np.argmin(result.reliability)) == 4
    assert result.reliability[4] < 0.45
    majority, _ = ag.majority_labels(ag.Ratings.from_arrays(items, raters, labels.astype(float)), seed=seed)
    assert (result.labels == truth).mean() > (majority == truth).mean()
    assert np.allclose(result.posteriors.sum(axis=1), 1.0)
    assert np.allclose(result.confusions.sum(axis=2), 1.0)


def test_reliability_orders_annotators_by_their_accuracy():
    truth, items, raters, labels = _simulate(5, items=1000, accuracies=(0.95, 0.8, 0.6, 0.45))
    result = dawid_skene(items, raters, labels, n_classes=3)
    assert list(np.argsort(-result.reliability)) == [0, 1, 2, 3]
    assert result.reliability[0] == pytest.approx(0.95, abs=0.03)


def test_unlabelled_items_and_unseen_raters_are_marked():
    result = dawid_skene([0, 0, 2, 2], [0, 1, 0, 1], [1, 1, 0, 0], n_classes=2, n_items=3, n_raters=3)
    assert result.labels.tolist() == [1, -1, 0]
    assert np.isnan(result.reliability[2])


def test_preference_margin_grows_with_confidence_and_stated_strength():
    assert preference_margin(0.9, 0.1, 3) == pytest.approx(2.4)
    assert preference_margin(0.9, 0.1, None) == pytest.approx(0.8)
    assert preference_margin(0.4, 0.5, 2) == 0.0
    assert np.allclose(preference_margin(np.array([0.6, 1.0]), np.array([0.4, 0.0]), np.array([np.nan, 2])), [0.2, 2.0])
