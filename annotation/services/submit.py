"""Submitting and revising annotations: one transaction each, idempotent by client id.

On PostgreSQL a submit on an active lease is one statement (`hotpath.py`); everything else
(replays, expired or skipped leases, strangers) takes the ORM path below, which owns those rules.
"""

import uuid
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from common.errors import Conflict, NotAllowed, NotFound

from . import hotpath
from ..models import Annotation, AnnotationSource, Assignment, AssignmentState, Project, Task, TaskStatus
from ..payloads import validate_payload
from .webhooks import webhook_task_submitted


def _validate_raw(kind: str, payload: dict, n_responses: int, n_steps: int, shown_order: list, settings: dict) -> dict:
    return validate_payload(kind, payload, n_responses=n_responses, n_steps=n_steps, shown_order=shown_order,
                            aspects=Project.aspects_in(settings))


def _replay(client_id: uuid.UUID, author: AbstractBaseUser) -> Annotation | None:
    existing = Annotation.objects.filter(client_id=client_id).first()
    if existing is not None and existing.author_id != author.pk:
        raise Conflict("this client id belongs to another submission", code="client_id_reused")
    return existing


def annotation_submit(
    *,
    assignment: Assignment | int,
    annotator: AbstractBaseUser,
    payload: dict,
    client_id: uuid.UUID,
    seconds_spent: float | None = None,
    rationale: str = "",
    now: datetime | None = None,
) -> Annotation:
    """Store the annotator's answer for their assignment (an Assignment or its id).

    A retry with the same client id returns the first result. A submit after the lease expired
    is accepted while the task still has a free slot, and refused with `lease_expired` otherwise.
    Only the assignment's annotator, while still a member of its project, may submit.
    """
    now = now or timezone.now()
    assignment_id = assignment if isinstance(assignment, int) else assignment.pk
    if hotpath.available():
        done = hotpath.submit(
            assignment_id=assignment_id, annotator=annotator, payload=payload, client_id=client_id,
            seconds_spent=seconds_spent, rationale=rationale, now=now, validate=_validate_raw,
        )
        if done is not None:
            annotation, completed_in = done
            if completed_in is not None:
                webhook_task_submitted(task_id=annotation.task_id, project_id=completed_in)
            return annotation
    try:
        with transaction.atomic():
            locked = (
                Assignment.objects.select_for_update(of=("self",))
                .select_related("task", "project")
                .filter(pk=assignment_id, annotator=annotator, project__memberships__user=annotator)
                .first()
            )
            if locked is None:
                raise NotFound("no such assignment")
            if locked.state == AssignmentState.SUBMITTED:
                existing = _replay(client_id, annotator)
                if existing is not None:
                    return existing
                raise Conflict(
                    "this task was already submitted; edit the annotation to change it", code="already_submitted"
                )
            if locked.state == AssignmentState.SKIPPED:
                raise Conflict("this task was skipped", code="skipped")
            task, project = locked.task, locked.project
            canonical = validate_payload(
                task.kind,
                payload,
                n_responses=task.n_responses,
                n_steps=task.n_steps,
                shown_order=locked.shown_order,
                aspects=project.aspects,
            )
            if locked.state == AssignmentState.EXPIRED:
                # The slot went back to the pool; take it again if it is still free.
                if not Task.objects.filter(pk=task.pk, open_slots__gt=0).update(open_slots=F("open_slots") - 1):
                    raise Conflict("your lease expired and the task has been taken by others", code="lease_expired")
            # No savepoint: a duplicate client id aborts the whole transaction, handled below.
            annotation = Annotation.objects.create(
                task=task,
                kind=task.kind,
                assignment=locked,
                author=annotator,
                source=AnnotationSource.HUMAN,
                payload=canonical,
                shown_order=locked.shown_order,
                rationale=rationale,
                seconds_spent=seconds_spent,
                guideline_version_id=project.current_guideline_id,
                constitution_version_id=project.current_constitution_id,
                client_id=client_id,
            )
            locked.state = AssignmentState.SUBMITTED
            locked.ended_at = now
            locked.save(update_fields=["state", "ended_at"])
            Task.objects.filter(pk=task.pk).update(
                submitted_count=F("submitted_count") + 1,
                status=Case(
                    When(submitted_count__gte=F("required") - 1, then=Value(TaskStatus.COMPLETE)),
                    default=F("status"),
                ),
            )
            webhook_task_submitted(task_id=task.pk, project_id=project.pk)  # task.completed, after commit
            return annotation
    except IntegrityError:
        # The client id is taken: a concurrent retry of this submit won (return its row),
        # or the id belongs to another submission.
        existing = _replay(client_id, annotator)
        if existing is None or existing.assignment_id != assignment_id:
            raise Conflict("this client id belongs to another submission", code="client_id_reused") from None
        return existing


def annotation_revise(
    *,
    annotation: Annotation,
    author: AbstractBaseUser,
    payload: dict,
    client_id: uuid.UUID | None = None,
    rationale: str | None = None,
    seconds_spent: float | None = None,
    as_reviewer: bool = False,
) -> Annotation:
    """Write a new revision that supersedes `annotation`; the old row is kept.

    The author revises their own work; a reviewer (as_reviewer) may revise anyone's, and the
    revision is marked as an adjudication.
    """
    client_id = client_id or uuid.uuid4()
    existing = _replay(client_id, author)
    if existing is not None:
        return existing
    with transaction.atomic():
        old = Annotation.objects.select_for_update().select_related("task", "task__project").get(pk=annotation.pk)
        if not as_reviewer and old.author_id != author.pk:
            raise NotAllowed("only the author or a reviewer can revise an annotation")
        if not old.is_current:
            raise Conflict("a newer revision exists; revise that one", code="stale_revision")
        task: Task = old.task
        canonical = validate_payload(
            task.kind,
            payload,
            n_responses=task.n_responses,
            n_steps=task.n_steps,
            shown_order=old.shown_order,
            aspects=task.project.aspects,
        )
        old.is_current = False
        old.save(update_fields=["is_current"])
        try:
            with transaction.atomic():
                return Annotation.objects.create(
                    task=task,
                    kind=task.kind,
                    assignment=old.assignment,
                    author=author,
                    source=AnnotationSource.HUMAN,
                    payload=canonical,
                    shown_order=old.shown_order,
                    rationale=old.rationale if rationale is None else rationale,
                    seconds_spent=seconds_spent,
                    guideline_version_id=task.project.current_guideline_id,
                    constitution_version_id=task.project.current_constitution_id,
                    client_id=client_id,
                    supersedes=old,
                    is_review=as_reviewer,
                )
        except IntegrityError:
            raise Conflict("this annotation was revised at the same moment", code="stale_revision") from None
