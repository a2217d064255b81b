"""Turn tasks into judge prompts and the judge's answers into annotation payloads (canonical positions).

Plain Python around `judge.py`: a `TaskView` carries what a task shows (kind, prompt messages, responses,
steps); `label_tasks` judges a batch of them with one principle sampled per task and returns, per task, the
canonical payload and the details an AI annotation stores. Pairwise: both orders, averaged. Ranking: all pairs
or a sorting-network subset, ranked by soft wins. Rating: one scoring prompt per aspect, the expected Likert
score. Steps: one prompt per step (good / neutral / bad).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

from ..backends.base import BackendError, TransientBackendError
from .judge import PairItem, judge_pairs, normalize, rank_from_verdicts, ranking_pairs
from .prompts import rating_prompt, step_prompt

JUDGEABLE = ("pairwise", "ranking", "rating", "steps")
RATING_OPEN = "The rating is: "
RATING_CANDIDATES = tuple(str(i) for i in range(1, 8))
STEP_OPEN = "The answer is: ("
STEP_CANDIDATES = ("A", "B", "C")
STEP_LABELS = (1, 0, -1)
# A pairwise AI label from P(first response is better), by its distance from a coin flip |p - 0.5|:
TIE_BAND = 1e-9  # within it, a tie (an exact coin flip, e.g. pure position bias averaged out)
STRENGTH_2_FROM = 0.1  # from here on, stated strength 2 (below it, 1)
STRENGTH_3_FROM = 0.25  # from here on, stated strength 3


@dataclass(frozen=True)
class TaskView:
    id: int
    kind: str
    messages: Sequence[dict]
    responses: Sequence[str]
    steps: Sequence[str] = ()


@dataclass
class Label:
    task_id: int
    payload: dict | None
    principle: str
    details: dict = field(default_factory=dict)
    error: str = ""


def pick_principle(principles: Sequence, *, seed: int | str, item: int | str, round: int = 0):
    """A principle drawn uniformly, reproducibly from (seed, item, round): a retried job draws the same one."""
    if not principles:
        raise ValueError("the constitution has no principles")
    return random.Random(f"{seed}:{item}:{round}").choice(list(principles))


def strength_of(p_first: float) -> int:
    """Stated strength (1-3) from how far the soft label is from a coin flip."""
    margin = abs(p_first - 0.5)
    return 3 if margin >= STRENGTH_3_FROM else 2 if margin >= STRENGTH_2_FROM else 1


def pairwise_payload(p_first: float) -> dict:
    """The pairwise label stored for an AI judge's P(first is better): the one mapping every AI label goes
    through, from feedback jobs and rounds alike."""
    if abs(p_first - 0.5) < TIE_BAND:
        return {"choice": "tie", "strength": None}
    return {"choice": "A" if p_first > 0.5 else "B", "strength": strength_of(p_first)}


def label_tasks(
    backend,
    tasks: Sequence[TaskView],
    principles: Sequence,
    *,
    seed: int | str = 0,
    cot: bool = False,
    ranking_subset: str = "all",
    aspects: Sequence[str] = ("helpful", "honest", "harmless"),
    batch_size: int = 16,
) -> list[Label]:
    """Judge every task (one principle each) and return a `Label` per task, in order.

    A task the backend cannot take gets a Label with `error` and no payload; transient errors propagate.
    """
    chosen = {t.id: pick_principle(principles, seed=seed, item=t.id) for t in tasks}
    labels: dict[int, Label] = {}
    items: list[PairItem] = []
    for t in tasks:
        p = chosen[t.id]
        if t.kind == "pairwise" and len(t.responses) == 2:
            items.append(PairItem(t.messages, t.responses[0], t.responses[1], p.comparison_question, key=(t.id, 0, 1), principle=p.key))
        elif t.kind == "ranking" and len(t.responses) >= 2:
            for i, j in dict.fromkeys(ranking_pairs(len(t.responses), subset=ranking_subset)):
                items.append(PairItem(t.messages, t.responses[i], t.responses[j], p.comparison_question, key=(t.id, i, j), principle=p.key))
    verdicts = judge_pairs(backend, items, cot=cot, batch_size=batch_size) if items else []
    by_task: dict[int, list] = {}
    for v in verdicts:
        by_task.setdefault(v.key[0], []).append(v)
    for t in tasks:
        p = chosen[t.id]
        base = {"principle": p.key, "principle_name": getattr(p, "name", ""), "cot": cot}
        if t.kind == "pairwise" and t.id in by_task:
            v = by_task[t.id][0]
            if not v.ok:
                labels[t.id] = Label(t.id, None, p.key, error=v.error)
                continue
            labels[t.id] = Label(t.id, pairwise_payload(v.p_first), p.key, {**base, **v.details()})
        elif t.kind == "ranking" and t.id in by_task:
            vs = by_task[t.id]
            bad = [v.error for v in vs if not v.ok]
            if bad:
                labels[t.id] = Label(t.id, None, p.key, error=bad[0])
                continue
            soft = [(v.key[1], v.key[2], v.p_first) for v in vs]
            ranks = rank_from_verdicts(len(t.responses), soft)
            order = sorted(range(len(ranks)), key=lambda k: ranks[k])
            labels[t.id] = Label(t.id, {"order": [[k] for k in order]}, p.key, {
                **base, "subset": ranking_subset,
                "pairs": [{"i": v.key[1], "j": v.key[2], "p_i": v.p_first, "order_ab": list(v.order_ab),
                           "order_ba": list(v.order_ba), "flipped": v.flipped} for v in vs],
                "prompt_ab": vs[0].prompt_ab if vs else [],
            })
    rating = [t for t in tasks if t.kind == "rating" and t.responses]
    if rating:
        for t, label in zip(rating, _score_ratings(backend, rating, chosen, aspects, batch_size)):
            labels[t.id] = label
    steps = [t for t in tasks if t.kind == "steps" and t.steps]
    if steps:
        for t, label in zip(steps, _score_steps(backend, steps, chosen, batch_size)):
            labels[t.id] = label
    return [labels.get(t.id) or Label(t.id, None, chosen[t.id].key, error=f"a {t.kind} task cannot be judged") for t in tasks]


def _logprobs_each(backend, conversations, candidates, prefix, batch_size) -> list[dict | str]:
    """Scores per conversation, or the error message for a conversation the backend refused."""
    out: list[dict | str] = []
    for start in range(0, len(conversations), batch_size):
        chunk = conversations[start : start + batch_size]
        try:
            out.extend(backend.logprobs(chunk, candidates, prefix=prefix))
        except TransientBackendError:
            raise
        except BackendError:
            for c in chunk:
                try:
                    out.extend(backend.logprobs([c], candidates, prefix=prefix))
                except TransientBackendError:
                    raise
                except BackendError as exc:
                    out.append(str(exc))
    return out


def _score_ratings(backend, tasks, chosen, aspects, batch_size) -> list[Label]:
    conversations, index = [], []
    for t in tasks:
        for aspect in aspects:
            conversations.append(rating_prompt(t.messages, t.responses[0], aspect, chosen[t.id].comparison_question))
            index.append((t.id, aspect))
    scores = _logprobs_each(backend, conversations, RATING_CANDIDATES, RATING_OPEN, batch_size)
    per_task: dict[int, dict] = {}
    for (task_id, aspect), s in zip(index, scores):
        per_task.setdefault(task_id, {})[aspect] = s
    labels = []
    for t in tasks:
        p = chosen[t.id]
        got = per_task[t.id]
        errors = [s for s in got.values() if isinstance(s, str)]
        if errors:
            labels.append(Label(t.id, None, p.key, error=errors[0]))
            continue
        likert, dists = {}, {}
        for aspect, s in got.items():
            probs = normalize(s, RATING_CANDIDATES)
            expected = sum(int(c) * q for c, q in zip(RATING_CANDIDATES, probs))
            likert[aspect] = int(min(7, max(1, round(expected))))
            dists[aspect] = {"expected": expected, "probabilities": list(probs)}
        labels.append(Label(t.id, {"likert": likert}, p.key, {
            "principle": p.key, "scores": dists, "prompt": rating_prompt(t.messages, t.responses[0], "<aspect>", p.comparison_question),
            "answer_open": RATING_OPEN,
        }))
    return labels


def _score_steps(backend, tasks, chosen, batch_size) -> list[Label]:
    conversations, index = [], []
    for t in tasks:
        for k in range(len(t.steps)):
            conversations.append(step_prompt(t.messages, t.steps, k, chosen[t.id].comparison_question))
            index.append(t.id)
    scores = _logprobs_each(backend, conversations, STEP_CANDIDATES, STEP_OPEN, batch_size)
    per_task: dict[int, list] = {}
    for task_id, s in zip(index, scores):
        per_task.setdefault(task_id, []).append(s)
    labels = []
    for t in tasks:
        p = chosen[t.id]
        got = per_task[t.id]
        errors = [s for s in got if isinstance(s, str)]
        if errors:
            labels.append(Label(t.id, None, p.key, error=errors[0]))
            continue
        probs = [normalize(s, STEP_CANDIDATES) for s in got]
        values = [STEP_LABELS[max(range(3), key=lambda k: q[k])] for q in probs]
        labels.append(Label(t.id, {"labels": values}, p.key, {
            "principle": p.key, "step_probabilities": [list(q) for q in probs], "answer_open": STEP_OPEN,
            "prompt": step_prompt(t.messages, t.steps, 0, p.comparison_question),
        }))
    return labels
