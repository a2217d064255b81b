"""A reviewer's verdict on an annotation that needs no correction.

Corrections are revisions (`annotation_revise(..., as_reviewer=True)`); accepting writes no new
annotation, only a note of who accepted it and when, so the author and payload stay as they were.
"""

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from common.errors import Conflict, NotFound

from ..models import Annotation


def annotation_accept(*, annotation: Annotation, reviewer: AbstractBaseUser, now: datetime | None = None) -> Annotation:
    now = now or timezone.now()
    with transaction.atomic():
        locked = Annotation.objects.select_for_update().filter(pk=annotation.pk).first()
        if locked is None:
            raise NotFound("no such annotation")
        if not locked.is_current:
            raise Conflict("a newer revision exists; review that one", code="stale_revision")
        locked.details = {
            **(locked.details or {}),
            "review": {
                "verdict": "accepted",
                "reviewer_id": reviewer.pk,
                "reviewer": reviewer.get_username(),
                "at": now.isoformat(),
            },
        }
        locked.save(update_fields=["details"])
        return locked
