"""Bulk actions of the task browser on a selection of a project's tasks; each writes an audit row (TaskAction).

- requeue: the tasks go back to the queue for `extra` more labels each (status open, `extra` more slots);
  the labels already given stay, and nobody gets a task they already had, so the new labels come from
  other people. Gold tasks are already open to everyone: they are only reopened.
- set_priority: the queue hands out higher priorities first.
- mark_gold: each task's human majority label (the verdict more than half of its current human labels
  give; annotation/task_stats.py) becomes its known answer; tasks without one are left as they are.
- unmark_gold: the tasks stop being gold.
- export: a dataset snapshot of the selected tasks only (annotation/services/exports.py).
"""

from collections import Counter, defaultdict

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Value

from common.errors import Invalid

from ..models import (
    Annotation, AnnotationSource, DatasetSnapshot, Project, Task, TaskAction, TaskActionKind, TaskKind, TaskStatus,
)
from ..rows import id_set
from ..task_stats import verdict
from .content import task_set_gold

MAX_SELECTION = 100_000
MAX_EXTRA = 50
PRIORITY_LIMIT = 1_000_000


def task_selection(*, project: Project, task_ids) -> list[int]:
    """The given ids, checked: integers, not too many, every one a task of this project (Invalid naming the rest)."""
    try:
        ids = sorted({int(i) for i in task_ids})
    except (TypeError, ValueError):
        raise Invalid("tasks must be a list of task ids", fields={"tasks": ["a list of task ids"]}) from None
    if not ids:
        raise Invalid("select at least one task", fields={"tasks": ["select at least one task"]})
    if len(ids) > MAX_SELECTION:
        raise Invalid(f"at most {MAX_SELECTION:,} tasks at once", fields={"tasks": [f"at most {MAX_SELECTION:,}"]})
    found = set(Task.objects.filter(project=project, pk__in=id_set(ids)).values_list("id", flat=True))
    missing = [i for i in ids if i not in found]
    if missing:
        named = ", ".join(map(str, missing[:10])) + (" and more" if len(missing) > 10 else "")
        raise Invalid(f"not tasks of this project: {named}", fields={"tasks": [f"unknown task ids: {named}"]})
    return ids


def _audit(*, project, actor, action: str, task_ids: list[int], **params) -> TaskAction:
    return TaskAction.objects.create(project=project, actor=actor, action=action, params=params, task_ids=task_ids,
                                     task_count=len(task_ids))


def _selected(project, task_ids):
    return Task.objects.filter(project=project, pk__in=id_set(task_ids))


@transaction.atomic
def tasks_requeue(*, project: Project, actor: AbstractBaseUser | None, task_ids: list[int], extra: int = 1) -> TaskAction:
    """Send the tasks back to the queue for `extra` (1 to 50) more labels each."""
    if not isinstance(extra, int) or isinstance(extra, bool) or not 1 <= extra <= MAX_EXTRA:
        raise Invalid(f"extra must be a whole number from 1 to {MAX_EXTRA}", fields={"extra": [f"1 to {MAX_EXTRA}"]})
    # A steps task with no steps (an imported record that labels nothing) has nothing to ask for.
    tasks = _selected(project, task_ids).exclude(kind=TaskKind.STEPS, n_steps=0)
    more = tasks.filter(gold__isnull=True).update(
        required=F("required") + extra, open_slots=F("open_slots") + extra, status=Value(TaskStatus.OPEN)
    )
    tasks.filter(gold__isnull=False).update(status=Value(TaskStatus.OPEN))
    return _audit(project=project, actor=actor, action=TaskActionKind.REQUEUE, task_ids=task_ids, extra=extra,
                  given_more_slots=more)


@transaction.atomic
def tasks_set_priority(*, project: Project, actor: AbstractBaseUser | None, task_ids: list[int], priority: int) -> TaskAction:
    if not isinstance(priority, int) or isinstance(priority, bool) or abs(priority) > PRIORITY_LIMIT:
        message = f"priority must be a whole number from -{PRIORITY_LIMIT:,} to {PRIORITY_LIMIT:,}"
        raise Invalid(message, fields={"priority": [message]})
    _selected(project, task_ids).update(priority=priority)
    return _audit(project=project, actor=actor, action=TaskActionKind.SET_PRIORITY, task_ids=task_ids, priority=priority)


def _majority_labels(task_ids: list[int]) -> dict[int, dict]:
    """task id -> the payload of the earliest current human label giving the task's majority verdict."""
    labels = defaultdict(list)
    rows = (Annotation.objects.filter(task_id__in=id_set(task_ids), is_current=True, source=AnnotationSource.HUMAN)
            .order_by("task_id", "id").values_list("task_id", "payload"))
    for task_id, payload in rows.iterator(chunk_size=2000):
        if verdict(payload) is not None:
            labels[task_id].append(payload)
    out = {}
    for task_id, payloads in labels.items():
        top, n = Counter(verdict(p) for p in payloads).most_common(1)[0]
        if n * 2 > len(payloads):
            out[task_id] = next(p for p in payloads if verdict(p) == top)
    return out


@transaction.atomic
def tasks_mark_gold(*, project: Project, actor: AbstractBaseUser | None, task_ids: list[int]) -> TaskAction:
    """Make each task's human majority label its known answer; tasks without a majority are skipped."""
    answers = _majority_labels(task_ids)
    for task in _selected(project, task_ids).filter(pk__in=list(answers)):
        task_set_gold(task=task, gold=answers[task.pk])
    skipped = [i for i in task_ids if i not in answers]
    return _audit(project=project, actor=actor, action=TaskActionKind.MARK_GOLD, task_ids=task_ids,
                  marked=len(answers), skipped_without_majority=skipped)


@transaction.atomic
def tasks_unmark_gold(*, project: Project, actor: AbstractBaseUser | None, task_ids: list[int]) -> TaskAction:
    gold = list(_selected(project, task_ids).filter(gold__isnull=False))
    for task in gold:
        task_set_gold(task=task, gold=None)
    return _audit(project=project, actor=actor, action=TaskActionKind.UNMARK_GOLD, task_ids=task_ids, unmarked=len(gold))


def tasks_export(
    *, project: Project, actor: AbstractBaseUser | None, task_ids: list[int], format: str, **options
) -> tuple[TaskAction, DatasetSnapshot]:
    """A snapshot of the selected tasks' annotations (`options` as snapshot_create takes them)."""
    from .exports import snapshot_create

    snapshot = snapshot_create(project=project, format=format, created_by=actor, task_ids=task_ids, **options)
    action = _audit(project=project, actor=actor, action=TaskActionKind.EXPORT, task_ids=task_ids, format=format,
                    snapshot=snapshot.pk, rows=snapshot.row_count, sha256=snapshot.sha256)
    return action, snapshot


def tasks_act(
    *, project: Project, actor: AbstractBaseUser | None, action: str, task_ids: list[int], extra: int = 1,
    priority: int | None = None, export: dict | None = None,
) -> tuple[TaskAction, DatasetSnapshot | None]:
    """Run one bulk action by name on checked task ids (see `task_selection`); the snapshot for an export."""
    if action == TaskActionKind.EXPORT:
        export = dict(export or {})
        if not export.get("format"):
            raise Invalid("an export needs a dataset format", fields={"format": ["choose a dataset format"]})
        return tasks_export(project=project, actor=actor, task_ids=task_ids, **export)
    if action == TaskActionKind.REQUEUE:
        done = tasks_requeue(project=project, actor=actor, task_ids=task_ids, extra=extra)
    elif action == TaskActionKind.SET_PRIORITY:
        if priority is None:
            raise Invalid("set_priority needs a priority", fields={"priority": ["give the new priority"]})
        done = tasks_set_priority(project=project, actor=actor, task_ids=task_ids, priority=priority)
    elif action == TaskActionKind.MARK_GOLD:
        done = tasks_mark_gold(project=project, actor=actor, task_ids=task_ids)
    elif action == TaskActionKind.UNMARK_GOLD:
        done = tasks_unmark_gold(project=project, actor=actor, task_ids=task_ids)
    else:
        raise Invalid(f"unknown action {action!r}", fields={"action": [f"one of {', '.join(TaskActionKind.values)}"]})
    return done, None
