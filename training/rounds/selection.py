"""Active selection: which candidate pairs go to people.

With a reward model, a pair is worth a person's time when the model is unsure about it: the members of an ensemble
disagree on which response is better (the spread of their score differences), or a single model's reward gap is
near zero. A configured fraction is drawn uniformly at random from the rest, so that figures measured on human
labels (reward-model accuracy, agreement) stay unbiased. Plain Python and numpy; no Django.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

POLICIES = ("uncertainty", "disagreement", "gap", "random")


@dataclass(frozen=True)
class SelectionPolicy:
    """Project setting `rounds.selection`: {"policy", "random_fraction", "pairs_per_prompt"}."""

    policy: str = "uncertainty"  # disagreement with an ensemble, gap with one model, random without a reward model
    random_fraction: float = 0.2
    pairs_per_prompt: int = 1

    @classmethod
    def from_settings(cls, data: dict | None) -> "SelectionPolicy":
        data = dict(data or {})
        unknown = set(data) - {"policy", "random_fraction", "pairs_per_prompt"}
        problems = [f"{k}: unknown setting" for k in sorted(unknown)]
        policy = data.get("policy", cls.policy)
        if policy not in POLICIES:
            problems.append(f"policy: one of {', '.join(POLICIES)}")
        fraction = data.get("random_fraction", cls.random_fraction)
        if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 <= fraction <= 1:
            problems.append("random_fraction: a number from 0 to 1")
        per_prompt = data.get("pairs_per_prompt", cls.pairs_per_prompt)
        if not isinstance(per_prompt, int) or isinstance(per_prompt, bool) or per_prompt < 1:
            problems.append("pairs_per_prompt: a positive integer")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(policy=policy, random_fraction=float(fraction), pairs_per_prompt=per_prompt)

    def as_dict(self) -> dict:
        return {"policy": self.policy, "random_fraction": self.random_fraction, "pairs_per_prompt": self.pairs_per_prompt}


def candidate_pairs(n: int) -> list[tuple[int, int]]:
    """Every unordered pair of a prompt's n candidates."""
    return list(itertools.combinations(range(n), 2))


def pair_uncertainty(scores_a: np.ndarray, scores_b: np.ndarray, how: str) -> np.ndarray:
    """Uncertainty of each pair from per-member scores `(members, pairs)` of its two responses.

    disagreement: the standard deviation over members of the score difference (0 for a single model);
    gap: minus the absolute mean score difference (a gap near zero is the most uncertain).
    """
    diff = np.asarray(scores_a, dtype=np.float64) - np.asarray(scores_b, dtype=np.float64)
    if diff.ndim == 1:
        diff = diff[None, :]
    if how == "disagreement":
        return diff.std(axis=0, ddof=1) if diff.shape[0] > 1 else np.zeros(diff.shape[1])
    if how == "gap":
        return -np.abs(diff.mean(axis=0))
    raise ValueError(f"unknown uncertainty {how!r}")


def resolve_policy(policy: str, members: int | None) -> str:
    """The policy actually applied: `uncertainty` is disagreement for an ensemble, gap for one model, and every
    policy but random falls back to random without a reward model."""
    if members is None or members < 1:
        return "random"
    if policy == "uncertainty":
        return "disagreement" if members > 1 else "gap"
    if policy == "disagreement" and members == 1:
        return "gap"
    return policy


def select(uncertainty: np.ndarray | list[float], k: int, random_fraction: float, *, seed: int = 0) -> list[tuple[int, str]]:
    """Choose `k` of the items: ⌊k·(1−random_fraction)⌉ with the highest uncertainty, the rest uniformly at random
    from the others. Returns (index, "uncertain" | "random") in the order chosen."""
    values = np.asarray(uncertainty, dtype=np.float64)
    k = max(0, min(int(k), values.size))
    n_random = int(math.floor(k * random_fraction + 0.5))
    n_top = k - n_random
    # Highest first; ties broken by position so the choice is reproducible.
    order = np.lexsort((np.arange(values.size), -values))
    top = [int(i) for i in order[:n_top]]
    rest = np.setdiff1d(np.arange(values.size), np.array(top, dtype=np.int64))
    rng = np.random.default_rng(seed)
    drawn = rng.choice(rest, size=min(n_random, rest.size), replace=False) if n_random else np.array([], dtype=np.int64)
    return [(i, "uncertain") for i in top] + [(int(i), "random") for i in drawn]
