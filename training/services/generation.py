"""Generation jobs: launch, cancel, run one slice on a worker, and reconcile jobs whose worker died.

The job row is the truth. A worker claims the job (owner + heartbeat), then for each batch of prompts it
generates `n` samples per prompt and, in one transaction that also checks it still owns the job, writes the
responses (dedupe key `gen:{job}:{sample}` per prompt), the tasks (`gen:{job}:{prompt}:{group}`) and moves the
cursor. A killed worker therefore loses at most the batch it was generating, never half of one, and a job
resumed by anyone continues from the cursor. After `JOB_SLICE_SECONDS` the worker hands the job on to a fresh
message, so no message runs longer than the broker's visibility timeout. Every message carries the job's
current ticket; a message with an older ticket (a redelivery that lost the race, a re-queue by the
reconciler) finds nothing to do.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import Project, Prompt, Response, ResponseOrigin, TaskKind
from annotation.services import response_create, task_create
from common.errors import Conflict, Invalid

from ..backends import BackendError, Sampling, TransientBackendError, backend_for
from ..models import ACTIVE_STATUSES, Backend, CandidateTasks, GenerationJob, JobStatus, Model, ModelRole
from ..webhooks import generation_finished
from .claims import Heartbeat, jobs_reconcile, row_claim
from .launch import earlier_launch, insert_once

log = logging.getLogger(__name__)

MAX_SAMPLES = 16
MAX_GROUP = 16  # the largest ranking task annotation accepts
FILTER_KEYS = {"ids", "external_ids", "tags", "limit", "without_model_responses"}


# --- launching -----------------------------------------------------------------------------
def prompts_in_scope(*, project: Project, prompt_filter: dict, model: Model | None = None) -> list[int]:
    """Resolve a prompt filter into prompt ids, oldest first.

    Keys (all optional, combined with AND): `ids`, `external_ids`, `tags` (a prompt with any of them),
    `without_model_responses` (skip prompts that already have a response from this model), `limit`.
    """
    unknown = set(prompt_filter) - FILTER_KEYS
    if unknown:
        raise Invalid(f"unknown prompt filter keys: {', '.join(sorted(unknown))}",
                      fields={"prompt_filter": [f"allowed keys: {', '.join(sorted(FILTER_KEYS))}"]})
    qs = Prompt.objects.filter(project=project).order_by("id")
    if prompt_filter.get("ids") is not None:
        qs = qs.filter(pk__in=[int(i) for i in prompt_filter["ids"]])
    if prompt_filter.get("external_ids") is not None:
        qs = qs.filter(external_id__in=[str(i) for i in prompt_filter["external_ids"]])
    if prompt_filter.get("without_model_responses") and model is not None:
        answered = Response.objects.filter(prompt__project=project, model_name=model.name).values("prompt_id")
        qs = qs.exclude(pk__in=answered)
    tags = set(prompt_filter.get("tags") or [])
    limit = prompt_filter.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise Invalid("limit must be a positive integer", fields={"prompt_filter": ["limit must be a positive integer"]})
    ids = []
    # Tags live in a JSON list, which SQLite cannot search: filter them here, streaming.
    for pk, prompt_tags in qs.values_list("id", "tags").iterator(chunk_size=2000):
        if tags and not tags.intersection(prompt_tags or []):
            continue
        ids.append(pk)
        if limit is not None and len(ids) >= limit:
            break
    return ids


def _group_size(task_kind: str, n: int, group_size: int | None) -> int:
    if task_kind == CandidateTasks.PAIRWISE:
        if n < 2:
            raise Invalid("pairs need at least 2 samples per prompt", fields={"n": ["at least 2 for pairwise tasks"]})
        return 2
    if task_kind == CandidateTasks.RANKING:
        k = group_size or min(n, MAX_GROUP)
        if not 2 <= k <= min(n, MAX_GROUP):
            raise Invalid(f"ranking groups take 2 to {min(n, MAX_GROUP)} responses here",
                          fields={"group_size": [f"between 2 and min(n, {MAX_GROUP})"]})
        return k
    return 1


def _sampling(model: Model, overrides: dict | None) -> dict:
    try:
        return Sampling.from_dict({**(model.sampling or {}), **(overrides or {})}).as_dict()
    except (TypeError, ValueError) as exc:
        raise Invalid(f"bad sampling parameters: {exc}", fields={"sampling": [str(exc)]}) from None


@transaction.atomic
def generation_job_create(
    *,
    project: Project,
    model: Model,
    created_by: AbstractBaseUser | None = None,
    prompt_filter: dict | None = None,
    n: int = 2,
    sampling: dict | None = None,
    task_kind: str = CandidateTasks.PAIRWISE,
    group_size: int | None = None,
    task_priority: int = 0,
    batch_prompts: int | None = None,
    client_id: uuid.UUID | str | None = None,
) -> GenerationJob:
    """Record a generation job over the prompts the filter selects and queue it (after commit).

    With a `client_id` the launch is idempotent (`launch.earlier_launch`): a retry returns the first job."""
    earlier = earlier_launch(GenerationJob, project=project, client_id=client_id, created_by=created_by)
    if earlier is not None:
        return earlier
    if not model.is_active:
        raise Invalid(f"model {model.name} is archived", fields={"model": ["archived"]})
    if ModelRole.POLICY not in (model.roles or []):
        raise Invalid(f"model {model.name} is not registered as a policy", fields={"model": ["not a policy model"]})
    if not isinstance(n, int) or not 1 <= n <= MAX_SAMPLES:
        raise Invalid(f"n must be from 1 to {MAX_SAMPLES}", fields={"n": [f"between 1 and {MAX_SAMPLES}"]})
    if task_kind not in CandidateTasks.values:
        raise Invalid(f"unknown task kind {task_kind!r}", fields={"task_kind": [f"one of {', '.join(CandidateTasks.values)}"]})
    k = _group_size(task_kind, n, group_size)
    prompt_filter = dict(prompt_filter or {})
    ids = prompts_in_scope(project=project, prompt_filter=prompt_filter, model=model)
    if not ids:
        raise Invalid("no prompt matches this filter", fields={"prompt_filter": ["selects no prompt"]})
    if batch_prompts is None:
        batch_prompts = max(1, int((model.options or {}).get("max_batch_size", 8)) // n)
    job = insert_once(
        GenerationJob,
        project=project,
        client_id=client_id,
        created_by=created_by,
        model=model,
        prompt_filter=prompt_filter,
        prompt_ids=ids,
        n=n,
        sampling=_sampling(model, sampling),
        task_kind=task_kind,
        group_size=k,
        task_priority=task_priority,
        batch_prompts=max(1, min(int(batch_prompts), 256)),
        queue="default" if model.backend == Backend.OPENAI else "gpu",
        total=len(ids) * n,
    )
    if job.replayed:  # a concurrent launch with this client id came first
        return job
    _enqueue(job)
    return job


@transaction.atomic
def generation_job_cancel(*, job: GenerationJob) -> GenerationJob:
    """Stop a job: at once when it waits in the queue, after its current batch when a worker runs it."""
    locked = GenerationJob.objects.select_for_update().get(pk=job.pk)
    if locked.status not in ACTIVE_STATUSES:
        raise Conflict(f"the job has already {locked.status}", code="job_finished")
    now = timezone.now()
    if locked.status == JobStatus.QUEUED or not locked.owner:
        locked.status, locked.finished_at, locked.owner = JobStatus.CANCELLED, now, ""
    locked.cancel_requested = True
    locked.save(update_fields=["status", "finished_at", "owner", "cancel_requested"])
    return locked


# --- messages ------------------------------------------------------------------------------
def _send(job_id: int, ticket: str, queue: str, countdown: float | None) -> None:
    from ..tasks import generation_job_run

    generation_job_run.apply_async(args=[job_id, ticket], queue=queue, countdown=countdown)


def _enqueue(job: GenerationJob, *, countdown: float | None = None) -> str:
    """Give the job a new ticket and send a message carrying it once the transaction commits.

    If the send fails (broker down) the job keeps waiting with no message, and the reconciler sends another.
    """
    ticket = uuid.uuid4().hex
    enqueued_at = timezone.now() + timedelta(seconds=countdown or 0)
    GenerationJob.objects.filter(pk=job.pk).update(ticket=ticket, enqueued_at=enqueued_at)
    job.ticket, job.enqueued_at = ticket, enqueued_at
    job_id, queue = job.pk, job.queue
    transaction.on_commit(lambda: _send(job_id, ticket, queue, countdown), robust=True)
    return ticket


# --- running -------------------------------------------------------------------------------
class LostClaim(Exception):
    """Another worker (or the reconciler, or a cancel) took the job over; this one stops quietly."""


class RetryLater(Exception):
    """A transient failure: the job was released and must be retried with `ticket` after `countdown` s."""

    def __init__(self, message: str, *, ticket: str, countdown: float):
        super().__init__(message)
        self.ticket, self.countdown = ticket, countdown


def _owner_name(worker: str) -> str:
    return f"{worker or socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:128]


def generation_job_run_slice(*, job_id: int, ticket: str, worker: str = "") -> str:
    """Run the job for up to JOB_SLICE_SECONDS. Returns what happened:

    "succeeded" / "cancelled" / "failed": the job ended; "continued": handed on to a new message;
    "stale": the message is outdated, nothing to do; "busy": a live worker holds the job (retry later);
    "lost": another worker took the job over mid-slice. Raises RetryLater on transient errors.
    """
    owner = _owner_name(worker)
    state = row_claim(GenerationJob, job_id, ticket, owner, timezone.now(), ACTIVE_STATUSES)
    if state != "claimed":
        return state
    heartbeat = Heartbeat(GenerationJob, job_id, owner, settings.JOB_HEARTBEAT_SECONDS)
    heartbeat.start()
    try:
        return _run(job_id, owner, heartbeat)
    except LostClaim:
        return "lost"
    except TransientBackendError as exc:
        outcome = _release_for_retry(job_id, owner, f"{type(exc).__name__}: {exc}")
        if isinstance(outcome, RetryLater):
            raise outcome from exc
        return outcome
    except (BackendError, Invalid) as exc:
        _fail(job_id, owner, str(exc))
        return "failed"
    except (OperationalError, InterfaceError):
        raise  # a database that went away or stayed locked: the task retries
    except Exception as exc:
        log.exception("generation job %s failed", job_id)
        _fail(job_id, owner, f"{type(exc).__name__}: {exc}")
        return "failed"
    finally:
        heartbeat.stop()


def _run(job_id: int, owner: str, heartbeat: Heartbeat) -> str:
    job = GenerationJob.objects.select_related("model", "project").get(pk=job_id)
    deadline = time.monotonic() + settings.JOB_SLICE_SECONDS
    backend = backend_for(job.model)
    sampling = Sampling.from_dict(job.sampling)
    prompt_ids = list(job.prompt_ids)
    batches = 0
    while True:
        current = GenerationJob.objects.filter(pk=job_id).values("owner", "cursor", "cancel_requested").first()
        if current is None or current["owner"] != owner or heartbeat.lost:
            raise LostClaim()
        cursor = current["cursor"]
        if current["cancel_requested"]:
            return _finish(job_id, owner, JobStatus.CANCELLED)
        if cursor >= len(prompt_ids):
            return _finish(job_id, owner, JobStatus.SUCCEEDED)
        if batches and time.monotonic() >= deadline:  # at least one batch per slice, so a job always advances
            _hand_on(job_id, owner)
            return "continued"
        batch_ids = prompt_ids[cursor : cursor + job.batch_prompts]
        found = Prompt.objects.in_bulk(batch_ids)
        prompts = [found[i] for i in batch_ids if i in found]  # a prompt deleted since launch is skipped
        batch_sampling = sampling
        if sampling.seed is not None:
            # Seeded by position, so a resumed job draws what an uninterrupted one would have.
            batch_sampling = dataclasses.replace(sampling, seed=sampling.seed + cursor)
        t0 = time.perf_counter()
        completions = backend.generate([p.messages for p in prompts], job.n, batch_sampling) if prompts else []
        seconds = time.perf_counter() - t0
        _commit_batch(job, owner, cursor, cursor + len(batch_ids), prompts, completions, seconds)
        batches += 1


def _task_groups(job: GenerationJob, responses: list[Response]) -> list[list[Response]]:
    kind, k = job.task_kind, job.group_size
    if kind == CandidateTasks.NONE:
        return []
    if kind in (CandidateTasks.PAIRWISE, CandidateTasks.RANKING):
        groups = [responses[i : i + k] for i in range(0, len(responses), k)]
        return [g for g in groups if len(g) == k or (kind == CandidateTasks.RANKING and len(g) >= 2)]
    if kind == CandidateTasks.STEPS:
        return [[r] for r in responses if r.steps]
    return [[r] for r in responses]


def _commit_batch(job, owner, start, end, prompts, completions, seconds) -> None:
    now = timezone.now()
    with transaction.atomic():
        locked = GenerationJob.objects.select_for_update().filter(pk=job.pk).values("owner", "cursor").first()
        if locked is None or locked["owner"] != owner or locked["cursor"] != start:
            raise LostClaim()
        sampling_used = job.sampling
        tasks = prompt_tokens = completion_tokens = 0
        for prompt, samples in zip(prompts, completions):
            responses = []
            for i, completion in enumerate(samples):
                responses.append(
                    response_create(
                        prompt=prompt,
                        # Models do emit NUL characters, which PostgreSQL text cannot hold.
                        content=completion.text.replace("\x00", ""),
                        origin=ResponseOrigin.GENERATED,
                        model_name=job.model.name,
                        generation={
                            "job": job.pk,
                            "sample": i,
                            "sampling": sampling_used,
                            "prompt_tokens": completion.prompt_tokens,
                            "completion_tokens": completion.completion_tokens,
                            "finish_reason": completion.finish_reason,
                        },
                        dedupe_key=f"gen:{job.pk}:{i}",
                        metadata={"generation_job": job.pk},
                    )
                )
                prompt_tokens += completion.prompt_tokens
                completion_tokens += completion.completion_tokens
            for g, group in enumerate(_task_groups(job, responses)):
                task_create(
                    project=job.project,
                    kind=TaskKind(job.task_kind),
                    prompt=prompt,
                    responses=group,
                    priority=job.task_priority,
                    dedupe_key=f"gen:{job.pk}:{prompt.pk}:{g}",
                    metadata={"generation_job": job.pk},
                )
                tasks += 1
        missing = (end - start) - len(prompts)
        GenerationJob.objects.filter(pk=job.pk).update(
            cursor=end,
            done=F("done") + len(prompts) * job.n,
            total=F("total") - missing * job.n,
            tasks_created=F("tasks_created") + tasks,
            prompt_tokens=F("prompt_tokens") + prompt_tokens,
            completion_tokens=F("completion_tokens") + completion_tokens,
            generation_seconds=F("generation_seconds") + seconds,
            heartbeat_at=now,
        )


def _finish(job_id: int, owner: str, status: str) -> str:
    updated = GenerationJob.objects.filter(pk=job_id, owner=owner).update(
        status=status, owner="", finished_at=timezone.now(), error=""
    )
    if not updated:
        raise LostClaim()
    generation_finished(job_id=job_id)  # generation.finished webhooks
    return status


def _hand_on(job_id: int, owner: str) -> None:
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().filter(pk=job_id, owner=owner).first()
        if job is None:
            raise LostClaim()
        GenerationJob.objects.filter(pk=job_id).update(owner="")
        _enqueue(job)


def _fail(job_id: int, owner: str, message: str) -> None:
    if GenerationJob.objects.filter(pk=job_id, owner=owner).update(
        status=JobStatus.FAILED, owner="", error=message[:4000], finished_at=timezone.now()
    ):
        generation_finished(job_id=job_id)  # generation.finished webhooks


def retry_delay(attempt: int) -> float:
    return float(min(120, 2 ** max(0, attempt)))


def _release_for_retry(job_id: int, owner: str, message: str) -> RetryLater | str:
    """Let go of the job after a transient error: RetryLater with a new ticket, or "failed" past the limit."""
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().filter(pk=job_id, owner=owner).first()
        if job is None:
            return "lost"
        if job.attempts + 1 >= settings.JOB_MAX_ATTEMPTS:
            _fail(job_id, owner, f"gave up after {job.attempts + 1} attempts: {message}")
            return "failed"
        countdown = retry_delay(job.attempts)
        ticket = uuid.uuid4().hex
        GenerationJob.objects.filter(pk=job_id).update(
            owner="", attempts=F("attempts") + 1, error=f"retrying: {message}"[:4000], ticket=ticket,
            enqueued_at=timezone.now() + timedelta(seconds=countdown),
        )
    return RetryLater(message, ticket=ticket, countdown=countdown)


# --- reconciling ---------------------------------------------------------------------------
def generation_jobs_reconcile(*, now: datetime | None = None) -> dict:
    """Re-queue or end generation jobs nobody is working on (`claims.jobs_reconcile`): none stays queued or
    running forever, a silent worker's job resumes from its cursor, and every job ended here is reported."""
    return jobs_reconcile(GenerationJob, now=now or timezone.now(), active=ACTIVE_STATUSES, enqueue=_enqueue,
                          finished=generation_finished, what="generation job", unit="prompt")
