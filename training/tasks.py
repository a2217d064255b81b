"""Celery tasks of the training app. They take ids, do their work through services, and are idempotent."""

from __future__ import annotations

import logging
import os
import threading

from celery import shared_task
from celery.signals import worker_process_init
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from annotation.services import leases_expire

from .broker import purge_taken_messages
from .feedback.jobs import FEEDBACK_JOBS, feedback_job_run_slice
from .jobs import runtime
from .jobs.runtime import RetryLater
from .rounds.runner import ROUNDS, round_advance_now
from .services.generation import GENERATION_JOBS, generation_job_run_slice
from .services.runs import TRAINING_RUNS, training_run_execute_now

log = logging.getLogger(__name__)


@worker_process_init.connect
def _preload_model_libraries(**_):
    """With QUORUM_WORKER_PRELOAD=1, import torch and transformers in the background as a worker process starts.

    Importing them takes 5-20 s on a small machine; done here, it overlaps with whatever happens before the first
    generation task instead of delaying it. A thread, because a process that is slow to start is killed by Celery.
    """
    global _preloading
    if os.environ.get("QUORUM_WORKER_PRELOAD") not in ("1", "true", "yes"):
        return

    def load():
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

        from .backends import transformers_local  # noqa: F401

    _preloading = threading.Thread(target=load, name="preload", daemon=True)
    _preloading.start()


_preloading: threading.Thread | None = None


def wait_for_preload() -> None:
    # transformers' lazy module is not safe to import from two threads at once.
    if _preloading is not None:
        _preloading.join()


def _run_message(task, kind: runtime.JobKind, run, job_id: int, ticket: str) -> str:
    """Run one message of a job row (`run(job_id=, ticket=, worker=)`). Retries only transient failures; everything
    else ends the row."""
    close_old_connections()
    wait_for_preload()
    try:
        outcome = run(job_id=job_id, ticket=ticket, worker=task.request.hostname or "")
    except RetryLater as exc:
        log.warning("%s %s: %s; retrying in %.0f s", kind.what, job_id, exc, exc.countdown)
        raise task.retry(args=[job_id, exc.ticket], countdown=exc.countdown)
    except (OperationalError, InterfaceError) as exc:
        # The database went away or stayed locked: the claim will look stale once the heartbeat stops,
        # and this same message (same ticket) can take the row back then.
        log.warning("%s %s: database error %s; retrying", kind.what, job_id, exc)
        close_old_connections()
        raise task.retry(args=[job_id, ticket], countdown=settings.JOB_STALE_SECONDS + 1)
    if outcome == "busy":
        # A redelivered message while the first delivery still runs, or a worker that died a moment ago:
        # look again once its heartbeat would have gone stale.
        raise task.retry(args=[job_id, ticket], countdown=settings.JOB_STALE_SECONDS + 1)
    return outcome


@shared_task(bind=True, name=GENERATION_JOBS.task, acks_late=True, ignore_result=True, max_retries=None)
def generation_job_run(self, job_id: int, ticket: str) -> str:
    """Run one slice of a generation job."""
    return _run_message(self, GENERATION_JOBS, generation_job_run_slice, job_id, ticket)


@shared_task(bind=True, name=FEEDBACK_JOBS.task, acks_late=True, ignore_result=True, max_retries=None)
def feedback_job_run(self, job_id: int, ticket: str) -> str:
    """Run one slice of a feedback job (critique-revision or AI judge)."""
    return _run_message(self, FEEDBACK_JOBS, feedback_job_run_slice, job_id, ticket)


@shared_task(bind=True, name=ROUNDS.task, acks_late=True, ignore_result=True, max_retries=None)
def round_advance(self, round_id: int, ticket: str) -> str:
    """Take a round as far as it goes; it sends itself a later message while it waits for a job, a run or people."""
    def advance(*, job_id, ticket, worker):
        return round_advance_now(round_id=job_id, ticket=ticket, worker=worker)

    return _run_message(self, ROUNDS, advance, round_id, ticket)


@shared_task(bind=True, name=TRAINING_RUNS.task, ignore_result=True)
def training_run_execute(self, run_id: int, ticket: str | None = None) -> str:
    """Run a training run's trainer process to its end (on the `gpu` queue). Not acked late: a worker that dies
    leaves the run to the reconciler, which fails it; a relaunch resumes from the last checkpoint."""
    close_old_connections()
    return training_run_execute_now(run_id=run_id, ticket=ticket, worker=self.request.hostname or "")


JOB_KINDS = (GENERATION_JOBS, TRAINING_RUNS, ROUNDS, FEEDBACK_JOBS)


@shared_task(name="training.reconcile", ignore_result=True)
def reconcile() -> dict:
    """Periodic (beat): expire annotation leases, re-queue jobs whose worker died, clean the embedded broker."""
    close_old_connections()
    counts: dict = {}
    for kind in JOB_KINDS:
        counts.update(runtime.reconcile(kind))
    moved = any(counts[kind.prefix + key] for kind in JOB_KINDS for key in ("requeued", "failed", "resent"))
    counts["leases_expired"] = leases_expire()
    counts["broker_messages_purged"] = purge_taken_messages(settings.CELERY_BROKER_URL)
    if moved:
        log.warning("reconciled: %s", counts)
    return counts
