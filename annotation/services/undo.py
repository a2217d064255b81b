"""Taking back one's own last submission while its lease still runs.

An undone submission is kept, as every annotation is, but withdrawn: it is no longer current,
so no export or agreement figure sees it (the raw audit export still does, marked). The
assignment goes back to active, so the same person gets the same task again (prefilled by the
caller) until the lease ends.
"""

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from common.errors import Conflict, NotFound

from ..models import Annotation, AnnotationSource, Assignment, AssignmentState, Task, TaskStatus


def annotation_undo(*, annotation: Annotation, annotator: AbstractBaseUser, now: datetime | None = None) -> Assignment:
    """Withdraw `annotation` (the annotator's own submission) and reopen its assignment.

    Refused once the lease has ended, once the annotation was revised or reviewed, and for
    anything but a plain human submission.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            Annotation.objects.select_for_update()
            .filter(pk=annotation.pk, author=annotator, source=AnnotationSource.HUMAN)
            .first()
        )
        if locked is None:
            raise NotFound("no such submission")
        if not locked.is_current or locked.is_review or locked.supersedes_id is not None:
            raise Conflict("this annotation has been revised; edit it from My work", code="undo_not_possible")
        if locked.assignment_id is None:
            raise Conflict("this annotation was not made from the queue", code="undo_not_possible")
        assignment = Assignment.objects.select_for_update().get(pk=locked.assignment_id)
        if assignment.state != AssignmentState.SUBMITTED:
            raise Conflict("this task is not in a submitted state", code="undo_not_possible")
        if assignment.leased_until <= now:
            raise Conflict("the lease on this task has ended; edit it from My work", code="lease_expired")
        locked.is_current = False
        locked.details = {**locked.details, "withdrawn_at": now.isoformat()}
        locked.save(update_fields=["is_current", "details"])
        assignment.state = AssignmentState.ACTIVE
        assignment.ended_at = None
        assignment.save(update_fields=["state", "ended_at"])
        # Submitted -> active keeps the slot taken, so open_slots does not change.
        Task.objects.filter(pk=assignment.task_id).update(
            submitted_count=F("submitted_count") - 1,
            status=Case(When(status=TaskStatus.COMPLETE, then=Value(TaskStatus.OPEN)), default=F("status")),
        )
        return assignment
