"""The round's Celery task: advance the round, retrying only while a live worker still holds it."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from .services import round_advance_now

log = logging.getLogger(__name__)


@shared_task(bind=True, name="training.round_advance", acks_late=True, ignore_result=True, max_retries=None)
def round_advance(self, round_id: int, ticket: str) -> str:
    """Take the round as far as it goes; it sends itself a later message while it waits for a job, a run or people."""
    close_old_connections()
    try:
        outcome = round_advance_now(round_id=round_id, ticket=ticket, worker=self.request.hostname or "")
    except (OperationalError, InterfaceError) as exc:
        log.warning("round %s: database error %s; retrying", round_id, exc)
        close_old_connections()
        raise self.retry(args=[round_id, ticket], countdown=settings.JOB_STALE_SECONDS + 1)
    if outcome == "busy":
        raise self.retry(args=[round_id, ticket], countdown=settings.JOB_STALE_SECONDS + 1)
    return outcome
