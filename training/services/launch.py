"""Launches a retry cannot double: a client id makes starting a job, a run or a round idempotent.

A launch request may carry a `client_id` (a UUID the client makes up once per launch, as it does for an
annotation). The same id again in the same project returns the row the first request made, whatever the state
of the project since (a round of it still running, say): a client that lost the first answer and
retried gets what it asked for once, not a second GPU job. Another person's id is refused with 409.

    @transaction.atomic
    @launched_once(GenerationJob)       # an earlier launch with this id is returned (replayed True) unvalidated
    def generation_job_create(*, project, client_id=None, created_by=None, ...):
        ...validate...
        job = insert_once(GenerationJob, project=project, client_id=client_id, created_by=created_by, **fields)
        if job.replayed:                # a concurrent request with the same id committed first
            return job

Every launching service is `launched_once` (it calls `earlier_launch` before anything is validated) and creates
its row with `insert_once`; the database's unique (project, client_id) constraint settles concurrent requests.
"""

from __future__ import annotations

import functools
import uuid

from django.db import IntegrityError, transaction

from common.errors import Conflict


__all__ = ["earlier_launch", "insert_once", "launched_once"]


def earlier_launch(row_class, /, *, project, client_id: uuid.UUID | str | None, created_by):
    """The row an earlier launch with this client id made in the project (marked `replayed`), or None."""
    if client_id is None:
        return None
    row = row_class.objects.filter(project=project, client_id=client_id).first()
    if row is None:
        return None
    if row.created_by_id != getattr(created_by, "pk", None):
        raise Conflict("this client_id was already used by someone else in this project; make up a new one",
                       code="client_id_taken")
    row.replayed = True
    return row


def insert_once(row_class, /, *, project, client_id: uuid.UUID | str | None, created_by, **fields):
    """Create the row (`replayed` False); when a concurrent launch with the same client id committed first, its
    row instead (`replayed` True)."""
    try:
        with transaction.atomic():
            row = row_class.objects.create(project=project, client_id=client_id, created_by=created_by, **fields)
    except IntegrityError:
        row = earlier_launch(row_class, project=project, client_id=client_id, created_by=created_by)
        if row is None:  # another constraint failed: not a replay
            raise
        return row
    row.replayed = False
    return row


def launched_once(row_class, /):
    """Make a launching service (keywords `project`, `client_id`, `created_by`) idempotent by client id: the row an
    earlier launch with the same id made is returned as it is (marked `replayed`), before anything is validated."""

    def decorate(launch):
        @functools.wraps(launch)
        def launch_once(*, project, client_id: uuid.UUID | str | None = None, created_by=None, **kwargs):
            earlier = earlier_launch(row_class, project=project, client_id=client_id, created_by=created_by)
            if earlier is not None:
                return earlier
            return launch(project=project, client_id=client_id, created_by=created_by, **kwargs)

        return launch_once

    return decorate
