"""Writing an AI rater's label onto a task: the one way AI labels enter the data, whoever judged.

An AI label is written beside people's (no assignment, no slot taken), once per client id; a rater has at most
one current label per task (a database constraint), so a new one supersedes the rater's earlier label, which is
kept. The payload is validated as a person's would be, in canonical positions.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from ..models import Annotation, AnnotationSource, ConstitutionVersion, Task
from ..payloads import validate_payload


@transaction.atomic
def ai_annotation_write(*, task: Task, rater: AbstractBaseUser, payload: dict, details: dict, client_id: uuid.UUID,
                        constitution: ConstitutionVersion | None = None) -> Annotation | None:
    """Write the rater's label on the task (source ai, under the project's guideline version and `constitution`),
    superseding its current one. None when this client id was written already (a retried job)."""
    if Annotation.objects.filter(client_id=client_id).exists():
        return None
    canonical = validate_payload(task.kind, payload, n_responses=task.n_responses, n_steps=task.n_steps,
                                 aspects=task.project.aspects)
    old = (Annotation.objects.select_for_update()
           .filter(task=task, author=rater, source=AnnotationSource.AI, is_current=True).first())
    if old is not None:
        old.is_current = False
        old.save(update_fields=["is_current"])
    try:
        with transaction.atomic():
            return Annotation.objects.create(
                task=task, kind=task.kind, assignment=None, author=rater, source=AnnotationSource.AI,
                payload=canonical, shown_order=list(range(task.n_responses)),
                guideline_version_id=task.project.current_guideline_id, constitution_version=constitution,
                details=details, client_id=client_id, supersedes=old,
            )
    except IntegrityError:  # a concurrent run of the same job wrote it first
        return None
