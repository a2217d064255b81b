"""Who runs a job row: claim it for one worker, and beat on it while that worker runs it.

Generation jobs, AI feedback jobs and rounds share the same columns for this (`ticket`, `status`,
`owner`, `heartbeat_at`, `cancel_requested`, `started_at`, `finished_at`): a Celery message names the
row and its ticket; the worker whose claim succeeds owns the row until it lets go, and a row whose
owner stopped beating for JOB_STALE_SECONDS can be claimed by another worker (or the reconciler).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from ..models import JobStatus

log = logging.getLogger(__name__)


def row_claim(model, pk: int, ticket: str, owner: str, now: datetime, active, **also) -> str:
    """Claim the row for `owner` (setting `also` with it): "claimed"; "busy" while a live worker holds it;
    "stale" when the message is outdated (another ticket, an ended row) or the row was cancelled before anyone
    ran it (it ends cancelled). `active` are the statuses a row can be claimed in."""
    stale = now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    with transaction.atomic():
        claimed = (
            model.objects.filter(pk=pk, ticket=ticket, status__in=active, cancel_requested=False)
            .filter(Q(owner="") | Q(heartbeat_at__lt=stale))
            .update(status=JobStatus.RUNNING, owner=owner, heartbeat_at=now, **also)
        )
        if claimed:
            model.objects.filter(pk=pk, started_at__isnull=True).update(started_at=now)
            return "claimed"
        row = model.objects.filter(pk=pk).only("ticket", "status", "cancel_requested", "owner").first()
        if row is None or row.ticket != ticket or row.status not in active:
            return "stale"
        if row.cancel_requested:
            model.objects.filter(pk=pk, owner="").update(status=JobStatus.CANCELLED, finished_at=now)
            return "stale"
        return "busy"


class Heartbeat(threading.Thread):
    """Beats on the row while this worker owns it; `lost` turns true once someone else took it over."""

    def __init__(self, model, pk: int, owner: str, interval: float):
        super().__init__(name=f"heartbeat-{model._meta.model_name}-{pk}", daemon=True)
        self.model, self.pk, self.owner, self.interval = model, pk, owner, interval
        self.lost = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(self.interval):
                try:
                    beaten = self.model.objects.filter(pk=self.pk, owner=self.owner).update(heartbeat_at=timezone.now())
                except Exception:  # a locked or lost database: try again next beat
                    log.warning("heartbeat for %s %s failed", self.model._meta.model_name, self.pk, exc_info=True)
                    continue
                if not beaten:
                    self.lost = True
                    return
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)
