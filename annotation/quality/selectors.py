"""Reads for quality figures: current annotations of a project as numpy arrays, one table per task kind.

Only current revisions count (`is_current`), and reviewers' adjudications (`is_review`) are left
out: they replace a rater's label rather than add an independent one. Rows are streamed with
`.values_list(...).iterator()`, pulling single payload keys out in SQL where one key is enough.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Q
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Coalesce

from ..models import Annotation, AnnotationSource, Project, Task, TaskKind, TaskResponse
from ..payloads import PAIRWISE_CHOICES
from .agreement import Ratings
from .bradley_terry import ranking_votes

CHUNK = 5000
ALL_SOURCES = (AnnotationSource.HUMAN.value, AnnotationSource.AI.value)
PAIRWISE_CODE = {choice: i for i, choice in enumerate(PAIRWISE_CHOICES)}  # A, B, tie, both_bad
NO_VERSION = -1
# AI raters are told apart by the judge model recorded in the annotation's details.
AI_NAME_KEYS = ("judge_model", "model", "judge")


@dataclass
class Raters:
    """Rater index <-> identity, shared by every table of one report."""

    keys: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)

    def index(self, author_id, username, source: str, ai_name) -> int:
        if source == AnnotationSource.AI and ai_name:
            key, name = f"ai:{ai_name}", ai_name
        elif author_id is not None:
            key, name = f"user:{author_id}", username or f"user {author_id}"
        else:
            return -1  # imported without an author: counts for alpha, not for per-rater figures
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = len(self.keys)
            self.keys.append(key)
            self.names.append(name)
            self.sources.append(source)
        return found

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class LabelTable:
    """Long-form labels of one kind: rating n gave values[name][n] to item items[n] (NaN: not given).

    An item is a task, or a (task, step) / (task, position) unit for step labels and ranks;
    `item_tasks` maps item -> task id. `versions` holds the guideline version number (-1: none).
    """

    kind: str
    item_tasks: np.ndarray
    items: np.ndarray
    raters: np.ndarray
    versions: np.ndarray
    sources: np.ndarray
    values: dict[str, np.ndarray]
    n_raters: int
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.items.size)

    @property
    def n_items(self) -> int:
        return int(self.item_tasks.size)

    def ratings(self, name: str, mask: np.ndarray | None = None) -> Ratings:
        values = self.values[name]
        keep = ~np.isnan(values) if mask is None else mask & ~np.isnan(values)
        return Ratings(self.items[keep], self.raters[keep], values[keep], self.n_items, self.n_raters)


def current_annotations(*, project: Project, kind: str, sources: Iterable[str] = ALL_SOURCES):
    return Annotation.objects.filter(
        task__project=project, kind=kind, source__in=list(sources), is_current=True, is_review=False
    )


def _ai_name():
    return Coalesce(*(KeyTextTransform(k, "details") for k in AI_NAME_KEYS))


_COMMON = ("task_id", "author_id", "author__username", "source", "guideline_version__number")


def _rows(qs, *extra):
    return qs.order_by("task_id", "id").values_list(*_COMMON, *extra).iterator(chunk_size=CHUNK)


def _table(
    kind: str, task_ids: list, raters_idx: list, versions: list, sources: list, values: dict, raters: Raters, **extra
):
    unique_tasks, items = np.unique(np.asarray(task_ids, dtype=np.int64), return_inverse=True)
    return LabelTable(
        kind=kind,
        item_tasks=unique_tasks,
        items=items.astype(np.int64),
        raters=np.asarray(raters_idx, dtype=np.int64),
        versions=np.asarray(versions, dtype=np.int64),
        sources=np.asarray(sources, dtype=object),
        values={k: np.asarray(v, dtype=np.float64) for k, v in values.items()},
        n_raters=len(raters),
        extra=extra,
    )


def pairwise_table(*, project: Project, sources: Iterable[str], raters: Raters) -> LabelTable:
    """values: "choice" (0 A, 1 B, 2 tie, 3 both_bad) and "preference" (signed strength: +s for A,
    -s for B, 0 for tie and both_bad), for ordinal and interval agreement on how strongly."""
    qs = current_annotations(project=project, kind=TaskKind.PAIRWISE, sources=sources)
    strength = KeyTransform("strength", "payload")  # the JSON value: SQLite casts a JSON null to 0
    tasks, idx, versions, srcs, choice, preference, strengths = [], [], [], [], [], [], []
    for task_id, author_id, username, source, version, ai_name, ch, st in _rows(
        qs, _ai_name(), KeyTextTransform("choice", "payload"), strength
    ):
        code = PAIRWISE_CODE.get(ch)
        if code is None:
            continue
        tasks.append(task_id)
        idx.append(raters.index(author_id, username, source, ai_name))
        versions.append(NO_VERSION if version is None else version)
        srcs.append(source)
        choice.append(code)
        s = 1.0 if st is None else float(st)
        preference.append(s if code == 0 else -s if code == 1 else 0.0)
        strengths.append(np.nan if code > 1 or st is None else s)
    values = {"choice": choice, "preference": preference, "strength": strengths}
    return _table(TaskKind.PAIRWISE, tasks, idx, versions, srcs, values, raters)


def rating_table(*, project: Project, sources: Iterable[str], raters: Raters) -> LabelTable:
    """values: "thumb" (1 up, 0 down) and "likert:<aspect>" (1-7) per aspect."""
    qs = current_annotations(project=project, kind=TaskKind.RATING, sources=sources)
    aspects = list(project.aspects)
    tasks, idx, versions, srcs, thumbs = [], [], [], [], []
    likert: dict[str, list] = {a: [] for a in aspects}
    for task_id, author_id, username, source, version, ai_name, payload in _rows(qs, _ai_name(), "payload"):
        payload = payload or {}
        tasks.append(task_id)
        idx.append(raters.index(author_id, username, source, ai_name))
        versions.append(NO_VERSION if version is None else version)
        srcs.append(source)
        thumb = payload.get("thumb")
        thumbs.append(1.0 if thumb == "up" else 0.0 if thumb == "down" else np.nan)
        scores = payload.get("likert") or {}
        for aspect in scores:
            if aspect not in likert:
                likert[aspect] = [np.nan] * (len(tasks) - 1)
                aspects.append(aspect)
        for aspect in aspects:
            score = scores.get(aspect)
            likert[aspect].append(np.nan if score is None else float(score))
    values = {"thumb": thumbs, **{f"likert:{a}": v for a, v in likert.items()}}
    return _table(TaskKind.RATING, tasks, idx, versions, srcs, values, raters, aspects=aspects)


def steps_tables(*, project: Project, sources: Iterable[str], raters: Raters) -> tuple[LabelTable, LabelTable]:
    """(step labels with one item per (task, step), first bad step with one item per task: step index
    or -1 for "no bad step")."""
    qs = current_annotations(project=project, kind=TaskKind.STEPS, sources=sources)
    tasks, idx, versions, srcs, first_errors = [], [], [], [], []
    unit_keys, unit_idx, unit_versions, unit_srcs, unit_labels = [], [], [], [], []
    for task_id, author_id, username, source, version, ai_name, payload in _rows(qs, _ai_name(), "payload"):
        payload = payload or {}
        labels = payload.get("labels")
        if not isinstance(labels, list) or not labels:
            continue  # no step labelled (an imported PRM800K bad problem): nothing to agree on
        rater = raters.index(author_id, username, source, ai_name)
        version = NO_VERSION if version is None else version
        tasks.append(task_id)
        idx.append(rater)
        versions.append(version)
        srcs.append(source)
        first = payload.get("first_error")
        first_errors.append(-1.0 if first is None else float(first))
        for step, label in enumerate(labels):
            unit_keys.append((task_id, step))
            unit_idx.append(rater)
            unit_versions.append(version)
            unit_srcs.append(source)
            unit_labels.append(float(label))
    first_table = _table(TaskKind.STEPS, tasks, idx, versions, srcs, {"first_error": first_errors}, raters)
    keys = np.asarray(unit_keys, dtype=np.int64).reshape(-1, 2)
    unique_units, unit_items = np.unique(keys, axis=0, return_inverse=True) if len(keys) else (keys, np.zeros(0, np.int64))
    steps_table = LabelTable(
        kind=TaskKind.STEPS,
        item_tasks=unique_units[:, 0] if len(keys) else np.zeros(0, np.int64),
        items=np.asarray(unit_items, dtype=np.int64).reshape(-1),
        raters=np.asarray(unit_idx, dtype=np.int64),
        versions=np.asarray(unit_versions, dtype=np.int64),
        sources=np.asarray(unit_srcs, dtype=object),
        values={"label": np.asarray(unit_labels, dtype=np.float64)},
        n_raters=len(raters),
    )
    return steps_table, first_table


def ranking_table(*, project: Project, sources: Iterable[str], raters: Raters) -> LabelTable:
    """One item per task; extra["ranks"] holds each rating's rank per canonical position (lower is
    better, equal ranks tie)."""
    qs = current_annotations(project=project, kind=TaskKind.RANKING, sources=sources)
    tasks, idx, versions, srcs, ranks = [], [], [], [], []
    for task_id, author_id, username, source, version, ai_name, value in _rows(
        qs, _ai_name(), KeyTransform("ranks", "payload")
    ):
        if not isinstance(value, list) or not value:
            continue
        tasks.append(task_id)
        idx.append(raters.index(author_id, username, source, ai_name))
        versions.append(NO_VERSION if version is None else version)
        srcs.append(source)
        ranks.append([float(x) for x in value])
    return _table(TaskKind.RANKING, tasks, idx, versions, srcs, {}, raters, ranks=ranks)


def demonstration_count(*, project: Project, sources: Iterable[str]) -> int:
    return current_annotations(project=project, kind=TaskKind.DEMONSTRATION, sources=sources).count()


def gold_answers(*, project: Project, kind: str) -> dict[int, dict]:
    """task id -> gold payload (canonical positions, same shape as an annotation payload)."""
    rows = (
        Task.objects.filter(project=project, kind=kind)
        .exclude(Q(gold__isnull=True) | Q(gold={}))
        .values_list("id", "gold")
    )
    return {task_id: gold for task_id, gold in rows if isinstance(gold, dict)}


# --- Leaderboard votes ------------------------------------------------------------------------


@dataclass
class ModelVotes:
    """Pairwise votes between registered models: outcome 1 = model a won, 0 = b won, 0.5 = tie."""

    models: list[str]
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray
    from_pairwise: int
    from_ranking: int


def _position_models(project: Project, kind: str, names: dict[str, int]) -> dict[int, list[int]]:
    rows = (
        TaskResponse.objects.filter(task__project=project, task__kind=kind)
        .order_by("task_id", "position")
        .values_list("task_id", "position", "response__model_name")
        .iterator(chunk_size=CHUNK)
    )
    out: dict[int, list[int]] = {}
    for task_id, position, name in rows:
        slots = out.setdefault(task_id, [])
        slots.extend([-1] * (position + 1 - len(slots)))
        slots[position] = names.setdefault(name, len(names)) if name else -1
    return out


def model_votes(*, project: Project, sources: Iterable[str] = ALL_SOURCES) -> ModelVotes:
    """Every current judgment between responses of two different named models.

    Pairwise: A or B is a win, tie and both_bad a tie (as Chatbot Arena counts "both bad").
    Ranking: every pair of positions of one ranking, the better rank winning, equal ranks a tie.
    """
    sources = list(sources)
    names: dict[str, int] = {}
    a_parts, b_parts, o_parts = [], [], []

    positions = _position_models(project, TaskKind.PAIRWISE, names)
    outcome_of = {"A": 1.0, "B": 0.0, "tie": 0.5, "both_bad": 0.5}
    pa, pb, po = [], [], []
    rows = (
        current_annotations(project=project, kind=TaskKind.PAIRWISE, sources=sources)
        .values_list("task_id", KeyTextTransform("choice", "payload"))
        .iterator(chunk_size=CHUNK)
    )
    for task_id, choice in rows:
        slots = positions.get(task_id)
        outcome = outcome_of.get(choice)
        if not slots or len(slots) < 2 or outcome is None or slots[0] < 0 or slots[1] < 0 or slots[0] == slots[1]:
            continue
        pa.append(slots[0])
        pb.append(slots[1])
        po.append(outcome)
    a_parts.append(np.asarray(pa, dtype=np.int64))
    b_parts.append(np.asarray(pb, dtype=np.int64))
    o_parts.append(np.asarray(po, dtype=np.float64))

    positions = _position_models(project, TaskKind.RANKING, names)
    by_k: dict[int, tuple[list, list]] = {}
    rows = (
        current_annotations(project=project, kind=TaskKind.RANKING, sources=sources)
        .values_list("task_id", KeyTransform("ranks", "payload"))
        .iterator(chunk_size=CHUNK)
    )
    for task_id, ranks in rows:
        slots = positions.get(task_id)
        if not slots or not isinstance(ranks, list) or len(ranks) != len(slots):
            continue
        models_k, ranks_k = by_k.setdefault(len(slots), ([], []))
        models_k.append(slots)
        ranks_k.append(ranks)
    from_ranking = 0
    for models_k, ranks_k in by_k.values():
        a, b, o = ranking_votes(np.asarray(models_k), np.asarray(ranks_k, dtype=np.float64))
        from_ranking += len(a)
        a_parts.append(a)
        b_parts.append(b)
        o_parts.append(o)

    models = [None] * len(names)
    for name, i in names.items():
        models[i] = name
    return ModelVotes(
        models=models,  # type: ignore[arg-type]
        a=np.concatenate(a_parts),
        b=np.concatenate(b_parts),
        outcome=np.concatenate(o_parts),
        from_pairwise=len(pa),
        from_ranking=from_ranking,
    )
