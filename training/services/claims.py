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


def jobs_reconcile(model, *, now: datetime, active, enqueue, finished, what: str, unit: str = "item",
                   prefix: str = "") -> dict:
    """Re-queue or end job rows nobody is working on, so that no row stays queued or running forever.

    A running row whose worker has been silent for JOB_STALE_SECONDS is re-queued (`enqueue`: it resumes from
    its cursor) or, past JOB_MAX_ATTEMPTS, failed; a row waiting for a message that never came (the broker lost
    it, the sender died after commit) gets a new one; a cancelled row nobody runs is closed. Every row this
    ends is reported through `finished(job_id=...)` (the project's webhooks), as a worker's own ending is.
    Counts come back as `{prefix}requeued`, `{prefix}failed`, `{prefix}cancelled` and `{prefix}resent`.
    """
    stale = now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    waiting_too_long = now - timedelta(seconds=settings.JOB_QUEUED_STALE_SECONDS)
    counts = dict.fromkeys(("requeued", "failed", "cancelled", "resent"), 0)

    def end(job, status: str, error: str | None = None) -> None:
        job.status, job.owner, job.finished_at = status, "", now
        fields = ["status", "owner", "finished_at"]
        if error is not None:
            job.error = error
            fields.append("error")
        job.save(update_fields=fields)
        finished(job_id=job.pk)
        counts["cancelled" if status == JobStatus.CANCELLED else "failed"] += 1

    silent = model.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale).exclude(owner="")
    for job_id in list(silent.values_list("id", flat=True)[:500]):
        with transaction.atomic():
            job = (model.objects.select_for_update()
                   .filter(pk=job_id, status=JobStatus.RUNNING, heartbeat_at__lt=stale).exclude(owner="").first())
            if job is None:
                continue
            if job.cancel_requested:
                end(job, JobStatus.CANCELLED)
            elif job.attempts + 1 >= settings.JOB_MAX_ATTEMPTS:
                end(job, JobStatus.FAILED, f"its worker stopped responding {job.attempts + 1} times; giving up")
            else:
                log.warning("%s %s: worker %s silent since %s, re-queued", what, job.pk, job.owner, job.heartbeat_at)
                job.attempts += 1
                job.error = f"worker {job.owner} stopped responding; re-queued at {unit} {job.cursor}"[:4000]
                job.owner = ""
                job.save(update_fields=["attempts", "owner", "error"])
                enqueue(job)
                counts["requeued"] += 1
    orphans = model.objects.filter(status__in=active, owner="", enqueued_at__lt=waiting_too_long)
    for job_id in list(orphans.values_list("id", flat=True)[:500]):
        with transaction.atomic():
            job = (model.objects.select_for_update()
                   .filter(pk=job_id, status__in=active, owner="", enqueued_at__lt=waiting_too_long).first())
            if job is None:
                continue
            if job.cancel_requested:
                end(job, JobStatus.CANCELLED)
            else:
                enqueue(job)
                counts["resent"] += 1
    return {prefix + key: value for key, value in counts.items()}
