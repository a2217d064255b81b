"""The annotation queue: lease the next task, skip it, and reclaim expired leases.

The decision is one short transaction in the database. A denormalized `open_slots` on the task
(required minus active and submitted assignments) and a partial index on open tasks keep the
candidate scan cheap; `NOT EXISTS` against the unique (task, annotator) index excludes what the
person already had. On PostgreSQL `FOR UPDATE SKIP LOCKED` lets concurrent annotators pass each
other, and the whole lease is one statement (`hotpath.py`); SQLite has no SKIP LOCKED, and there
the ORM code below runs serialized (BEGIN IMMEDIATE).
"""

import random
from datetime import datetime, timedelta
from itertools import groupby

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from common.errors import Conflict, NotFound

from . import hotpath
from ..models import Assignment, AssignmentState, Project, Task, TaskKind, TaskStatus

SHUFFLED_KINDS = (TaskKind.PAIRWISE, TaskKind.RANKING)


def _locking(queryset, **options):
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True, **options)
    return queryset


def leases_expire(*, project: Project | None = None, now: datetime | None = None, limit: int = 1000) -> int:
    """Mark leases past their time as expired and give their slots back. Returns how many."""
    now = now or timezone.now()
    # No savepoint when called inside the queue's own transaction: it is one more round trip.
    with transaction.atomic(savepoint=False):
        stale = Assignment.objects.filter(state=AssignmentState.ACTIVE, leased_until__lte=now)
        if project is not None:
            stale = stale.filter(project=project)
        # SKIP LOCKED: a lease being submitted right now is left to its submit.
        rows = list(_locking(stale.order_by("id")).values_list("id", "task_id")[:limit])
        if not rows:
            return 0
        Assignment.objects.filter(id__in=[r[0] for r in rows]).update(state=AssignmentState.EXPIRED, ended_at=now)
        # Tasks are updated in id order so that two sweeps never lock them in opposite orders.
        for task_id, group in groupby(sorted(r[1] for r in rows)):
            Task.objects.filter(pk=task_id).update(open_slots=F("open_slots") + len(list(group)))
        return len(rows)


def _pick(*, project: Project, annotator: AbstractBaseUser, gold: bool | None) -> Task | None:
    """The best open task this person never had: gold only (known answers, in random order),
    regular only (gold=False), or any (gold=None)."""
    already_had = Assignment.objects.filter(task=OuterRef("pk"), annotator=annotator)
    candidates = Task.objects.filter(project=project, open_slots__gt=0, status=TaskStatus.OPEN)
    if gold is not None:
        candidates = candidates.filter(gold__isnull=not gold)
    candidates = (
        candidates.filter(~Exists(already_had))
        .select_related("prompt")
        .order_by("?" if gold else "-priority", "id")
    )
    return _locking(candidates, of=("self",)).first()


def task_next_for(*, annotator: AbstractBaseUser, project: Project, now: datetime | None = None) -> Assignment | None:
    """Lease the next task for this annotator: the one they hold already, else the best open one.

    Highest priority first, then oldest; never a task this person already had; never more than
    `required` active and submitted assignments per task. With `settings["gold_rate"]` set, that
    share of leases is a gold task (known answer) the person has not seen, while any are left.
    Returns None when nothing is left.
    """
    now = now or timezone.now()
    gold_rate = float(project.settings.get("gold_rate") or 0)
    if hotpath.available():
        assignment = None
        if gold_rate > 0 and random.random() < gold_rate:
            assignment = hotpath.lease(project=project, annotator=annotator, now=now, gold=True)
        if assignment is None:
            assignment = hotpath.lease(
                project=project, annotator=annotator, now=now, gold=False if gold_rate > 0 else None
            )
        return assignment
    with transaction.atomic():
        held = (
            Assignment.objects.filter(
                annotator=annotator, project=project, state=AssignmentState.ACTIVE, leased_until__gt=now
            )
            .select_related("task", "task__prompt")
            .order_by("id")
            .first()
        )
        if held is not None:
            return held
        leases_expire(project=project, now=now)
        task = None
        if gold_rate > 0 and random.random() < gold_rate:
            task = _pick(project=project, annotator=annotator, gold=True)
        if task is None:
            # Without a gold rate, gold tasks are ordinary work in priority order.
            task = _pick(project=project, annotator=annotator, gold=False if gold_rate > 0 else None)
        if task is None:
            return None
        Task.objects.filter(pk=task.pk).update(open_slots=F("open_slots") - 1)
        task.open_slots -= 1
        order = list(range(task.n_responses))
        if task.kind in SHUFFLED_KINDS:
            random.shuffle(order)
        assignment = Assignment.objects.create(
            task=task,
            project=project,
            annotator=annotator,
            leased_until=now + timedelta(seconds=project.lease_seconds),
            shown_order=order,
        )
        return assignment


def assignment_skip(*, assignment: Assignment, annotator: AbstractBaseUser, reason: str = "") -> Assignment:
    """Give the task back without annotating it; it will not be offered to this person again."""
    with transaction.atomic():
        locked = Assignment.objects.select_for_update().filter(pk=assignment.pk, annotator=annotator).first()
        if locked is None:
            raise NotFound("no such assignment")
        if locked.state == AssignmentState.SKIPPED:
            return locked
        if locked.state == AssignmentState.SUBMITTED:
            raise Conflict("this task was already submitted", code="already_submitted")
        if locked.state == AssignmentState.ACTIVE:
            Task.objects.filter(pk=locked.task_id).update(open_slots=F("open_slots") + 1)
        locked.state = AssignmentState.SKIPPED
        locked.skip_reason = reason[:300]
        locked.ended_at = timezone.now()
        locked.save(update_fields=["state", "skip_reason", "ended_at"])
        return locked
