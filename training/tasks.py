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
from .services.generation import RetryLater, generation_job_run_slice, generation_jobs_reconcile
from .services.runs import training_run_execute_now, training_runs_reconcile
from .rounds.services import rounds_reconcile
from .rounds.tasks import round_advance  # noqa: F401  (registers the loop's task with the worker)

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


def _wait_for_preload() -> None:
    # transformers' lazy module is not safe to import from two threads at once.
    if _preloading is not None:
        _preloading.join()


@shared_task(bind=True, name="training.generation_job_run", acks_late=True, ignore_result=True, max_retries=None)
def generation_job_run(self, job_id: int, ticket: str) -> str:
    """Run one slice of a generation job. Retries only transient failures; everything else ends the job."""
    close_old_connections()
    _wait_for_preload()
    try:
        outcome = generation_job_run_slice(job_id=job_id, ticket=ticket, worker=self.request.hostname or "")
    except RetryLater as exc:
        log.warning("generation job %s: %s; retrying in %.0f s", job_id, exc, exc.countdown)
        raise self.retry(args=[job_id, exc.ticket], countdown=exc.countdown)
    except (OperationalError, InterfaceError) as exc:
        # The database went away or stayed locked: the claim will look stale once the heartbeat stops,
        # and this same message (same ticket) can take the job back then.
        log.warning("generation job %s: database error %s; retrying", job_id, exc)
        close_old_connections()
        raise self.retry(args=[job_id, ticket], countdown=settings.JOB_STALE_SECONDS + 1)
    if outcome == "busy":
        # A redelivered message while the first delivery still runs, or a worker that died a moment ago:
        # look again once its heartbeat would have gone stale.
        raise self.retry(args=[job_id, ticket], countdown=settings.JOB_STALE_SECONDS + 1)
    return outcome


@shared_task(bind=True, name="training.feedback_job_run", acks_late=True, ignore_result=True, max_retries=None)
def feedback_job_run(self, job_id: int, ticket: str) -> str:
    """Run one slice of a feedback job (critique-revision or AI judge), as `generation_job_run` does."""
    from .feedback.jobs import RetryLater as FeedbackRetryLater
    from .feedback.jobs import feedback_job_run_slice

    close_old_connections()
    _wait_for_preload()
    try:
        outcome = feedback_job_run_slice(job_id=job_id, ticket=ticket, worker=self.request.hostname or "")
    except FeedbackRetryLater as exc:
        log.warning("feedback job %s: %s; retrying in %.0f s", job_id, exc, exc.countdown)
        raise self.retry(args=[job_id, exc.ticket], countdown=exc.countdown)
    except (OperationalError, InterfaceError) as exc:
        log.warning("feedback job %s: database error %s; retrying", job_id, exc)
        close_old_connections()
        raise self.retry(args=[job_id, ticket], countdown=settings.JOB_STALE_SECONDS + 1)
    if outcome == "busy":
        raise self.retry(args=[job_id, ticket], countdown=settings.JOB_STALE_SECONDS + 1)
    return outcome


@shared_task(bind=True, name="training.training_run_execute", ignore_result=True)
def training_run_execute(self, run_id: int) -> str:
    """Run a training run's trainer process to its end (on the `gpu` queue). Not acked late: a worker that dies
    leaves the run to the reconciler, which fails it; a relaunch resumes from the last checkpoint."""
    close_old_connections()
    return training_run_execute_now(run_id=run_id, worker=self.request.hostname or "")


@shared_task(name="training.reconcile", ignore_result=True)
def reconcile() -> dict:
    """Periodic (beat): expire annotation leases, re-queue jobs whose worker died, clean the embedded broker."""
    close_old_connections()
    counts = generation_jobs_reconcile()
    counts.update(training_runs_reconcile())
    counts.update(rounds_reconcile())
    from .feedback.jobs import feedback_jobs_reconcile

    counts.update(feedback_jobs_reconcile())
    counts["leases_expired"] = leases_expire()
    counts["broker_messages_purged"] = purge_taken_messages(settings.CELERY_BROKER_URL)
    if counts["requeued"] or counts["failed"] or counts["resent"] or counts["runs_failed"] or counts["rounds_requeued"] or counts["feedback_requeued"]:
        log.warning("reconciled: %s", counts)
    return counts
