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
import time
import uuid
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import Project, Prompt, Response, ResponseOrigin, TaskKind
from annotation.services import response_create, task_create
from common.errors import Invalid

from ..backends import Sampling, backend_for, storable_text
from ..jobs import runtime
from ..jobs.runtime import Heartbeat, JobKind, LostClaim
from ..models import Backend, CandidateTasks, GenerationJob, JobStatus, Model, ModelRole
from ..webhooks import generation_finished
from .launch import insert_once, launched_once

MAX_SAMPLES = 16
MAX_GROUP = 16  # the largest ranking task annotation accepts
FILTER_KEYS = {"ids", "external_ids", "tags", "limit", "without_model_responses"}
GENERATION_JOBS = JobKind(model=GenerationJob, task="training.generation_job_run", what="generation job",
                          on_finish=generation_finished, progress=lambda job: f"at prompt {job.cursor}")


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
@launched_once(GenerationJob)
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

    With a `client_id` the launch is idempotent (`launch.launched_once`): a retry returns the first job."""
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
        GenerationJob, project=project, client_id=client_id, created_by=created_by,
        model=model, prompt_filter=prompt_filter, prompt_ids=ids, n=n, sampling=_sampling(model, sampling),
        task_kind=task_kind, group_size=k, task_priority=task_priority, total=len(ids) * n,
        batch_prompts=max(1, min(int(batch_prompts), 256)),
        queue="default" if model.backend == Backend.OPENAI else "gpu",
    )
    if job.replayed:  # a concurrent launch with this client id came first
        return job
    runtime.enqueue(GENERATION_JOBS, job)
    return job


def generation_job_cancel(*, job: GenerationJob) -> GenerationJob:
    """Stop a job: at once when it waits in the queue, after its current batch when a worker runs it."""
    return runtime.cancel(GENERATION_JOBS, job)


# --- running -------------------------------------------------------------------------------
def generation_job_run_slice(*, job_id: int, ticket: str, worker: str = "") -> str:
    """Run the job for up to JOB_SLICE_SECONDS. Returns what happened:

    "succeeded" / "cancelled" / "failed": the job ended; "continued": handed on to a new message;
    "stale": the message is outdated, nothing to do; "busy": a live worker holds the job (retry later);
    "lost": another worker took the job over mid-slice. Raises RetryLater on transient errors.
    """
    return runtime.run_claimed(GENERATION_JOBS, job_id=job_id, ticket=ticket, worker=worker,
                               body=lambda owner, heartbeat: _run(job_id, owner, heartbeat))


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
            return runtime.end(GENERATION_JOBS, job_id, owner, JobStatus.CANCELLED)
        if cursor >= len(prompt_ids):
            return runtime.end(GENERATION_JOBS, job_id, owner, JobStatus.SUCCEEDED)
        if batches and time.monotonic() >= deadline:  # at least one batch per slice, so a job always advances
            return runtime.hand_on(GENERATION_JOBS, job_id, owner)
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
                        content=storable_text(completion.text),
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


# --- reconciling ---------------------------------------------------------------------------
def generation_jobs_reconcile(*, now: datetime | None = None) -> dict:
    """Re-queue or end generation jobs nobody is working on (`runtime.reconcile`): none stays queued or running
    forever, a silent worker's job resumes from its cursor, and every job ended here is reported."""
    return runtime.reconcile(GENERATION_JOBS, now=now)
