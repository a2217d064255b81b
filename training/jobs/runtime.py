"""How every job row runs: enqueue, claim, heartbeat, finish, fail, cancel, retry, and the reconciler.

Generation jobs, feedback jobs, training runs and rounds share the columns of `training.jobs.models.JobRow`;
each kind describes itself once with a `JobKind` (its model, the name of the Celery task that runs a message for
it, its webhook hook) and this module moves its rows:

* `enqueue` gives the row a new ticket and, once the transaction commits, sends a message carrying it to the task
  *by name*, so no service imports the task module. A message with an older ticket finds nothing to do.
* `claim` makes one worker the row's owner; `Heartbeat` beats on it while that worker runs it; a row whose owner
  stopped beating for JOB_STALE_SECONDS can be claimed again (or is taken back by `reconcile`).
* `finish` is the one way a row ends: status, owner released, end time, the error (cleared unless one is given),
  and the kind's `on_finish` hook (webhooks). `fail` is `finish` with an error.
* `release` lets go of a row and sends it a new message (a slice handed on, a round waiting);
  `retry_later` does so after a transient error, with backoff, until JOB_MAX_ATTEMPTS; `RetryLater` tells the
  Celery task to retry with the new ticket.
* `cancel` stops a row (at once when nobody runs it), `retry` queues an ended one again.
* `reconcile` re-queues (or fails) rows whose worker went silent and re-sends messages that never came.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from common.errors import Conflict, Invalid

from ..backends.base import BackendError, TransientBackendError
from .models import ACTIVE_STATUSES, JobStatus

log = logging.getLogger(__name__)

__all__ = [
    "Heartbeat", "JobKind", "LostClaim", "RetryLater", "Wait", "cancel", "claim", "end", "enqueue", "fail", "finish",
    "hand_on", "owner_name", "reconcile", "release", "retry", "retry_delay", "retry_later", "run_claimed", "send",
]


def _row_queue(row) -> str:
    return row.queue


def _nowhere(row) -> str:
    return ""


@dataclass(frozen=True, eq=False)
class JobKind:
    """One kind of job row and the hooks it passes to the runtime."""

    model: type
    task: str  # the Celery task that runs one message: (row id, ticket)
    what: str  # "generation job": in logs and messages
    noun: str = "job"  # in conflict messages and codes: "the job has already …", job_finished
    queue: Callable[[Any], str] = _row_queue
    on_finish: Callable[..., None] | None = None  # called with job_id= once a row ended (webhooks)
    claimable: tuple = ACTIVE_STATUSES  # the statuses a message may claim the row in
    progress: Callable[[Any], str] = _nowhere  # where a row stands ("at prompt 3"), for messages
    requeue_silent: bool = True  # False: a row whose worker went silent fails (a relaunch resumes it)
    requeued_status: str | None = None  # the status a re-queued row takes (None: it keeps its own)
    silence_hint: str = ""  # said after a silent worker's failure
    release_fields: dict = field(default_factory=dict)  # set whenever a worker lets go of the row
    prefix: str = ""  # of the reconciler's counts


class LostClaim(Exception):
    """Another worker (or the reconciler, or a cancel) took the row over; this one stops quietly."""


class RetryLater(Exception):
    """A transient failure: the row was released and must be retried with `ticket` after `countdown` s."""

    def __init__(self, message: str, *, ticket: str, countdown: float):
        super().__init__(message)
        self.ticket, self.countdown = ticket, countdown


class Wait(Exception):
    """Raised by a worker's body: let go of the row and look again in `seconds` (setting `fields`)."""

    def __init__(self, seconds: float, **fields):
        super().__init__(f"waiting {seconds} s")
        self.seconds, self.fields = seconds, fields


# --- messages ------------------------------------------------------------------------------
def send(task: str, args: list, *, queue: str, countdown: float | None = None) -> None:
    """Send a message to the Celery task named `task` (a task this process knows runs as the app configures it,
    eagerly included; any other is sent by name)."""
    from celery import current_app

    options = {"queue": queue} if countdown is None else {"queue": queue, "countdown": countdown}
    current_app.signature(task, args=args, **options).apply_async()


def enqueue(kind: JobKind, row, *, countdown: float | None = None) -> str:
    """Give the row a new ticket and send a message carrying it once the transaction commits.

    If the send fails (broker down) the row keeps waiting with no message, and the reconciler sends another."""
    ticket = uuid.uuid4().hex
    due = timezone.now() + timedelta(seconds=countdown or 0)
    kind.model.objects.filter(pk=row.pk).update(ticket=ticket, enqueued_at=due)
    row.ticket, row.enqueued_at = ticket, due
    args, queue = [row.pk, ticket], kind.queue(row)
    transaction.on_commit(lambda: send(kind.task, args, queue=queue, countdown=countdown), robust=True)
    return ticket


# --- claiming ------------------------------------------------------------------------------
def owner_name(worker: str = "") -> str:
    """This worker process, uniquely: host (or Celery's name), pid and a random part."""
    return f"{worker or socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:128]


def claim(kind: JobKind, pk: int, owner: str, *, ticket: str | None, **also) -> str:
    """Claim the row for `owner` (setting `also` with it): "claimed"; "busy" while a live worker holds it;
    "stale" when the message is outdated (another ticket, an ended row) or the row was cancelled before anyone
    ran it (it ends cancelled). `ticket` None claims whatever the row's ticket."""
    model, now = kind.model, timezone.now()
    stale = now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    with transaction.atomic():
        rows = model.objects.filter(pk=pk, status__in=kind.claimable, cancel_requested=False)
        if ticket is not None:
            rows = rows.filter(ticket=ticket)
        claimed = rows.filter(Q(owner="") | Q(heartbeat_at__lt=stale)).update(
            status=JobStatus.RUNNING, owner=owner, heartbeat_at=now, **also)
        if claimed:
            model.objects.filter(pk=pk, started_at__isnull=True).update(started_at=now)
            return "claimed"
        row = model.objects.filter(pk=pk).only("ticket", "status", "cancel_requested", "owner").first()
        if row is None or (ticket is not None and row.ticket != ticket) or row.status not in kind.claimable:
            return "stale"
        if row.cancel_requested:
            model.objects.filter(pk=pk, owner="").update(
                **kind.release_fields, status=JobStatus.CANCELLED, finished_at=now, error="")
            return "stale"
        return "busy"


class Heartbeat(threading.Thread):
    """Beats while this worker holds its work; `lost` turns true once the work is no longer its own.

    `beat()` stamps the heartbeat and answers whether the work is still this worker's; `Heartbeat.of_row` beats on
    a job row this worker owns. An error in one beat (a locked or lost database) is tried again at the next.
    """

    def __init__(self, beat: Callable[[], bool], *, name: str, interval: float):
        super().__init__(name=name, daemon=True)
        self.beat, self.interval = beat, interval
        self.lost = False
        self._stop_event = threading.Event()

    @classmethod
    def of_row(cls, model, pk: int, owner: str, interval: float | None = None) -> "Heartbeat":
        def beat() -> bool:
            return bool(model.objects.filter(pk=pk, owner=owner).update(heartbeat_at=timezone.now()))

        return cls(beat, name=f"heartbeat-{model._meta.model_name}-{pk}",
                   interval=settings.JOB_HEARTBEAT_SECONDS if interval is None else interval)

    def run(self) -> None:
        try:
            while not self._stop_event.wait(self.interval):
                try:
                    beaten = self.beat()
                except Exception:  # a locked or lost database: try again next beat
                    log.warning("%s failed", self.name, exc_info=True)
                    continue
                if not beaten:
                    self.lost = True
                    return
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


def run_claimed(kind: JobKind, *, job_id: int, ticket: str, worker: str, body: Callable[[str, Heartbeat], str],
                failures: tuple = (BackendError, Invalid), transient_retry: bool = True, **also) -> str:
    """Claim the row, beat on it and run `body(owner, heartbeat)`; returns what `body` returns, or what became of
    the row: "stale"/"busy" (not claimed), "lost", "waiting" (`Wait`), "failed".

    A transient backend error releases the row for a retry (`RetryLater` is raised) when `transient_retry`; an
    error among `failures` or any unexpected one fails the row; a database error propagates (the task retries
    with the same ticket once the claim looks stale)."""
    owner = owner_name(worker)
    state = claim(kind, job_id, owner, ticket=ticket, **also)
    if state != "claimed":
        return state
    heartbeat = Heartbeat.of_row(kind.model, job_id, owner)
    heartbeat.start()
    try:
        return body(owner, heartbeat)
    except LostClaim:
        return "lost"
    except Wait as wait:
        return "waiting" if release(kind, job_id, owner, countdown=wait.seconds, **wait.fields) else "lost"
    except TransientBackendError as exc:
        if not transient_retry:
            fail(kind, job_id, owner, str(exc))
            return JobStatus.FAILED
        outcome = retry_later(kind, job_id, owner, f"{type(exc).__name__}: {exc}")
        if isinstance(outcome, RetryLater):
            raise outcome from exc
        return outcome
    except failures as exc:
        fail(kind, job_id, owner, str(exc))
        return JobStatus.FAILED
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        log.exception("%s %s failed", kind.what, job_id)
        fail(kind, job_id, owner, f"{type(exc).__name__}: {exc}")
        return JobStatus.FAILED
    finally:
        heartbeat.stop()


# --- ending --------------------------------------------------------------------------------
def finish(kind: JobKind, pk: int, owner: str, status: str, *, error: str = "", **fields) -> bool:
    """End the row `owner` holds with `status`: released, its end time set, its error replaced by `error` (an
    earlier retry's message does not outlive a success), `fields` written with it, and `on_finish` told.
    False when `owner` no longer holds it (nothing is written)."""
    updated = kind.model.objects.filter(pk=pk, owner=owner).update(
        **{**kind.release_fields, **fields}, status=status, owner="", finished_at=timezone.now(), error=error[:4000])
    if updated and kind.on_finish is not None:
        kind.on_finish(job_id=pk)
    return bool(updated)


def fail(kind: JobKind, pk: int, owner: str, message: str, **fields) -> bool:
    return finish(kind, pk, owner, JobStatus.FAILED, error=message, **fields)


def end(kind: JobKind, pk: int, owner: str, status: str, **fields) -> str:
    """`finish` by the worker running the row: returns `status`; LostClaim when it no longer holds the row."""
    if not finish(kind, pk, owner, status, **fields):
        raise LostClaim()
    return status


def release(kind: JobKind, pk: int, owner: str, *, countdown: float | None = None, **fields) -> bool:
    """Let go of the row (setting `fields`) and send it a new message, due after `countdown` s. False when
    `owner` no longer holds it."""
    with transaction.atomic():
        row = kind.model.objects.select_for_update().filter(pk=pk, owner=owner).first()
        if row is None:
            return False
        kind.model.objects.filter(pk=pk).update(**{**kind.release_fields, **fields}, owner="")
        enqueue(kind, row, countdown=countdown)
    return True


def hand_on(kind: JobKind, pk: int, owner: str) -> str:
    """`release` by the worker running the row when its slice of time is up: "continued" (a new message goes on
    from where it stopped); LostClaim when it no longer holds the row."""
    if not release(kind, pk, owner):
        raise LostClaim()
    return "continued"


def retry_delay(attempt: int) -> float:
    return float(min(120, 2 ** max(0, attempt)))


def retry_later(kind: JobKind, pk: int, owner: str, message: str) -> RetryLater | str:
    """Let go of the row after a transient error: RetryLater with a new ticket, or "failed" past the limit."""
    with transaction.atomic():
        row = kind.model.objects.select_for_update().filter(pk=pk, owner=owner).first()
        if row is None:
            return "lost"
        if row.attempts + 1 >= settings.JOB_MAX_ATTEMPTS:
            fail(kind, pk, owner, f"gave up after {row.attempts + 1} attempts: {message}")
            return JobStatus.FAILED
        countdown = retry_delay(row.attempts)
        ticket = uuid.uuid4().hex
        kind.model.objects.filter(pk=pk).update(
            owner="", attempts=F("attempts") + 1, error=f"retrying: {message}"[:4000], ticket=ticket,
            enqueued_at=timezone.now() + timedelta(seconds=countdown), **kind.release_fields,
        )
    return RetryLater(message, ticket=ticket, countdown=countdown)


# --- cancelling and retrying ---------------------------------------------------------------
@transaction.atomic
def cancel(kind: JobKind, row, **also):
    """Stop the row: at once when no worker holds it, at its worker's next look otherwise (`also` is written
    either way). Conflict when it has already ended."""
    locked = kind.model.objects.select_for_update().get(pk=row.pk)
    if not locked.is_active:
        raise Conflict(f"the {kind.noun} has already {locked.status}", code=f"{kind.noun}_finished")
    locked.cancel_requested = True
    fields = {"cancel_requested", *also}
    for name, value in also.items():
        setattr(locked, name, value)
    if not locked.owner:
        ended = {**kind.release_fields, "status": JobStatus.CANCELLED, "finished_at": timezone.now(), "error": ""}
        for name, value in ended.items():
            setattr(locked, name, value)
        fields |= set(ended)
    locked.save(update_fields=sorted(fields))
    return locked


@transaction.atomic
def retry(kind: JobKind, row):
    """Queue a failed or cancelled row again (its work resumes from what it kept); Conflict otherwise."""
    locked = kind.model.objects.select_for_update().get(pk=row.pk)
    if locked.is_active or locked.status == JobStatus.SUCCEEDED:
        raise Conflict(f"the {kind.noun} is {locked.status}", code=f"{kind.noun}_not_resumable")
    locked.status, locked.cancel_requested, locked.owner, locked.error = JobStatus.QUEUED, False, "", ""
    locked.finished_at = None
    locked.attempts += 1
    locked.save(update_fields=["status", "cancel_requested", "owner", "error", "finished_at", "attempts"])
    enqueue(kind, locked)
    return locked


# --- reconciling ---------------------------------------------------------------------------
def reconcile(kind: JobKind, *, now: datetime | None = None) -> dict:
    """Re-queue or end rows nobody is working on, so that no row stays queued or running forever.

    A running row whose worker has been silent for JOB_STALE_SECONDS is re-queued (it resumes from what it kept)
    or, past JOB_MAX_ATTEMPTS (at once for a kind that does not `requeue_silent`), failed; a row waiting for a
    message that never came (the broker lost it, the sender died after commit) gets a new one; a cancelled row
    nobody runs is closed. Every ending goes through `finish`, so it is reported as a worker's own ending is.
    Counts come back as `{prefix}requeued`, `{prefix}failed`, `{prefix}cancelled` and `{prefix}resent`.
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    late = now - timedelta(seconds=settings.JOB_QUEUED_STALE_SECONDS)
    counts = dict.fromkeys(("requeued", "failed", "cancelled", "resent"), 0)
    silent = {"status": JobStatus.RUNNING, "heartbeat_at__lt": stale}
    for row in _locked_each(kind, kind.model.objects.filter(**silent).exclude(owner="")):
        counts[_take_back(kind, row)] += 1
    orphans = kind.model.objects.filter(status__in=kind.claimable, owner="", enqueued_at__lt=late)
    for row in _locked_each(kind, orphans):
        if row.cancel_requested:
            finish(kind, row.pk, "", JobStatus.CANCELLED)
            counts["cancelled"] += 1
        else:
            enqueue(kind, row)
            counts["resent"] += 1
    return {kind.prefix + key: value for key, value in counts.items()}


def _locked_each(kind: JobKind, rows):
    """Each row of `rows` (500 at most), locked in its own transaction and still matching when locked."""
    for pk in list(rows.values_list("id", flat=True)[:500]):
        with transaction.atomic():
            row = rows.select_for_update().filter(pk=pk).first()
            if row is not None:
                yield row


def _take_back(kind: JobKind, row) -> str:
    """End or re-queue a row whose worker went silent; returns which count it adds to."""
    where = f" {kind.progress(row)}".rstrip()
    if row.cancel_requested:
        finish(kind, row.pk, row.owner, JobStatus.CANCELLED)
        return "cancelled"
    if not kind.requeue_silent:
        fail(kind, row.pk, row.owner, f"worker {row.owner} stopped responding{where}; {kind.silence_hint}".strip("; "))
        return "failed"
    if row.attempts + 1 >= settings.JOB_MAX_ATTEMPTS:
        fail(kind, row.pk, row.owner, f"its worker stopped responding {row.attempts + 1} times{where}; giving up")
        return "failed"
    log.warning("%s %s: worker %s silent since %s, re-queued", kind.what, row.pk, row.owner, row.heartbeat_at)
    fields = {"attempts": row.attempts + 1, "owner": "",
              "error": f"worker {row.owner} stopped responding{where}; re-queued"[:4000]}
    if kind.requeued_status:
        fields["status"] = kind.requeued_status
    kind.model.objects.filter(pk=row.pk).update(**fields)
    enqueue(kind, row)
    return "requeued"
