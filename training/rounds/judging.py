"""Pairwise AI judgments for the loop, read from the judge's log-probabilities of "(A)" and "(B)" in both orders.

The product's AI judge (`training.feedback.judge`) is used when it is installed; until then this module asks the
judge model itself through the backends' `logprobs(conversations, candidates)`: each pair is shown once as (A, B)
and once swapped, and the two probabilities that the first response is better are averaged, which cancels the
judge's position bias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..backends.base import GenerationBackend

QUESTION = "Which response is more helpful, honest and harmless?"
CANDIDATES = ("(A)", "(B)")
PREFIX = "The better response is "


@dataclass(frozen=True)
class PairJudgment:
    """P(first response is better), as shown first and swapped, and their mean."""

    p_first: float
    p_first_swapped: float

    @property
    def p(self) -> float:
        return (self.p_first + self.p_first_swapped) / 2

    @property
    def choice(self) -> str:
        return "A" if self.p > 0.5 else "B" if self.p < 0.5 else "tie"

    @property
    def outcome(self) -> float:
        """1 when the first response wins, 0 when it loses, 0.5 for an exact tie."""
        return 1.0 if self.p > 0.5 else 0.0 if self.p < 0.5 else 0.5

    def details(self) -> dict:
        return {"p_a": round(self.p, 6), "p_a_as_shown": round(self.p_first, 6),
                "p_a_swapped": round(self.p_first_swapped, 6), "both_orders": True}


def judge_conversation(messages: Sequence[dict], first: str, second: str, question: str = QUESTION) -> list[dict]:
    asked = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
    return [{
        "role": "user",
        "content": (
            f"Here is a conversation:\n{asked}\n\nResponse (A):\n{first}\n\nResponse (B):\n{second}\n\n"
            f"{question} Answer with (A) or (B)."
        ),
    }]


def _p_first(scores: dict[str, float]) -> float:
    a, b = scores[CANDIDATES[0]], scores[CANDIDATES[1]]
    top = max(a, b)
    ea, eb = math.exp(a - top), math.exp(b - top)
    return ea / (ea + eb)


def compare_pairs(
    backend: GenerationBackend, items: Sequence[tuple[Sequence[dict], str, str]], *, question: str = QUESTION
) -> list[PairJudgment]:
    """Judge each (messages, first, second) in both orders with one batched log-probability call."""
    if not items:
        return []
    shown = [judge_conversation(m, a, b, question) for m, a, b in items]
    swapped = [judge_conversation(m, b, a, question) for m, a, b in items]
    scores = backend.logprobs(shown + swapped, list(CANDIDATES), prefix=PREFIX)
    n = len(items)
    # Swapped, the first response of the pair is shown as (B).
    return [PairJudgment(_p_first(scores[i]), 1.0 - _p_first(scores[n + i])) for i in range(n)]


def product_judge():
    """The product's batched judge when it is installed (None until then)."""
    try:
        from ..feedback import judge  # noqa: F401
    except ImportError:
        return None
    return judge
