"""Pairwise AI judgments for the loop: the product's AI judge (`training.feedback.judge.judge_pairs`), which reads
the judge model's probabilities of "(A)" and "(B)" with each pair shown in both orders and averages them, so the
judge's position bias cancels. This module adapts its verdicts to what rounds store and count, and writes them as
the judge's AI labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from annotation.models import Project, Task

from ..backends.base import GenerationBackend
from ..feedback.judge import PairItem, Verdict, judge_pairs
from ..feedback.labels import Label, pairwise_payload
from ..feedback.rater import ai_rater_ensure, write_direct
from .models import Round

QUESTION = "Which response is more helpful, honest and harmless?"


@dataclass(frozen=True)
class PairJudgment:
    """P(first response is better), averaged over both orders, with the judge's verdict for provenance."""

    verdict: Verdict

    @property
    def p(self) -> float:
        return float(self.verdict.p_first)

    @property
    def ok(self) -> bool:
        return self.verdict.ok

    @property
    def p_first(self) -> float:
        """P(first) with the first response shown as (A)."""
        return float(self.verdict.order_ab[0])

    @property
    def p_first_swapped(self) -> float:
        """P(first) with the first response shown as (B)."""
        return float(self.verdict.order_ba[1])

    @property
    def choice(self) -> str:
        return self.verdict.choice

    @property
    def outcome(self) -> float:
        """1 when the first response wins, 0 when it loses, 0.5 for an exact tie."""
        return 1.0 if self.p > 0.5 else 0.0 if self.p < 0.5 else 0.5

    def details(self) -> dict:
        return {**self.verdict.details(), "p_a": round(self.p, 6), "both_orders": True}


def compare_pairs(
    backend: GenerationBackend, items: Sequence[tuple[Sequence[dict], str, str]], *, question: str = QUESTION,
    batch_size: int = 8,
) -> list[PairJudgment]:
    """Judge each (messages, first, second) in both orders; one verdict per item, in order."""
    if not items:
        return []
    verdicts = judge_pairs(backend, [PairItem(list(m), a, b, question, key=i) for i, (m, a, b) in enumerate(items)],
                           batch_size=batch_size)
    return [PairJudgment(v) for v in verdicts]


def write_judgments(rnd: Round, project: Project, judged: Iterable[tuple[Task, PairJudgment]]) -> None:
    """The round judge's verdicts on pairwise tasks of `project`, (task, PairJudgment) pairs, written as its AI
    rater's labels: the same label and provenance a feedback job writes. A pair the judge could not read (too
    long for it) stays unlabelled."""
    labels = [Label(task.pk, pairwise_payload(j.p), "", j.details()) for task, j in judged if j.ok]
    rater = ai_rater_ensure(project=project, model_name=rnd.judge.name)
    write_direct(rater=rater, labels=labels, model_name=rnd.judge.name, constitution=None, round_id=rnd.pk)
