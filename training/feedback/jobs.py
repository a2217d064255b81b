"""Feedback jobs: launch, cancel, run one slice on a worker, reconcile jobs whose worker died.

Same machinery as generation jobs (`training.services.generation`): the row is the truth; a worker claims the
job with the message's ticket (owner + heartbeat), processes a batch of items, commits their rows with the
cursor, and hands the job on to a fresh message after JOB_SLICE_SECONDS; the reconciler re-queues a running
job whose worker went silent and re-sends a queued job's lost message, so no job stays queued or running
forever. Items that fail are recorded in `failures` with their error and retried once when the cursor reaches
the end; what still fails stays listed (the job succeeds with them, or fails when nothing succeeded).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import ConstitutionVersion, Membership, Project, Prompt, Task, TaskStatus
from common.errors import Invalid

from ..backends import Sampling, backend_for
from ..jobs import runtime
from ..jobs.runtime import Heartbeat, JobKind, LostClaim
from ..models import Backend, FeedbackJob, FeedbackKind, JobStatus, Model
from ..services.generation import prompts_in_scope
from ..services.launch import insert_once, launched_once
from ..webhooks import feedback_finished
from .labels import JUDGEABLE

MAX_ROUNDS = 8
TASK_FILTER_KEYS = {"ids", "kinds", "limit", "with_human_labels", "status"}
FEEDBACK_JOBS = JobKind(model=FeedbackJob, task="training.feedback_job_run", what="feedback job",
                        on_finish=feedback_finished, progress=lambda job: f"at item {job.cursor}", prefix="feedback_")


# --- reads ---------------------------------------------------------------------------------
def feedback_jobs_for(*, project: Project):
    return FeedbackJob.objects.filter(project=project).select_related("model", "constitution", "rater")


def feedback_job_get(*, project: Project, job_id: int) -> FeedbackJob | None:
    return feedback_jobs_for(project=project).filter(pk=job_id).first()


def tasks_in_scope(*, project: Project, task_filter: dict) -> list[int]:
    """Task ids a judge job labels, oldest first. Keys (optional): `ids`, `kinds` (default: every judgeable kind),
    `with_human_labels` (only tasks people labelled: what agreement needs), `status` (open/complete), `limit`."""
    unknown = set(task_filter) - TASK_FILTER_KEYS
    if unknown:
        raise Invalid(f"unknown task filter keys: {', '.join(sorted(unknown))}",
                      fields={"scope": [f"allowed keys: {', '.join(sorted(TASK_FILTER_KEYS))}"]})
    kinds = task_filter.get("kinds") or list(JUDGEABLE)
    bad = [k for k in kinds if k not in JUDGEABLE]
    if bad:
        raise Invalid(f"cannot judge {bad}", fields={"scope": [f"kinds must be among {', '.join(JUDGEABLE)}"]})
    qs = Task.objects.filter(project=project, kind__in=kinds).exclude(status=TaskStatus.ARCHIVED).order_by("id")
    if task_filter.get("ids") is not None:
        qs = qs.filter(pk__in=[int(i) for i in task_filter["ids"]])
    if task_filter.get("status"):
        qs = qs.filter(status=task_filter["status"])
    if task_filter.get("with_human_labels"):
        qs = qs.filter(annotations__source="human", annotations__is_current=True).distinct()
    limit = task_filter.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise Invalid("limit must be a positive integer", fields={"scope": ["limit must be a positive integer"]})
    ids = list(qs.values_list("id", flat=True))
    return ids[:limit] if limit else ids


# --- launching -----------------------------------------------------------------------------
def _clean_scope(scope) -> dict:
    """Type-check the scope's common keys so a malformed one is a 400 naming `scope`, never a 500."""
    if scope is None:
        return {}
    if not isinstance(scope, dict):
        raise Invalid("scope must be an object", fields={"scope": ["must be an object"]})
    scope = dict(scope)
    ids = scope.get("ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
        raise Invalid("scope.ids must be a list of integers", fields={"scope": ["ids: a list of integers"]})
    for key in ("kinds", "tags", "external_ids"):
        value = scope.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise Invalid(f"scope.{key} must be a list of strings", fields={"scope": [f"{key}: a list of strings"]})
    limit = scope.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise Invalid("scope.limit must be a positive integer", fields={"scope": ["limit: a positive integer"]})
    status = scope.get("status")
    if status is not None and status not in ("open", "complete"):
        raise Invalid("scope.status must be open or complete", fields={"scope": ["status: open or complete"]})
    return scope


def _bool(value) -> bool:
    return value in (True, "true", "1", 1, "on", "yes")


@transaction.atomic
@launched_once(FeedbackJob)
def feedback_job_create(
    *,
    project: Project,
    kind: str,
    model: Model,
    created_by=None,
    scope: dict | None = None,
    rounds: int = 1,
    cot: bool = False,
    principles: list[str] | None = None,
    counts_toward_overlap: bool = False,
    ranking_subset: str = "all",
    export_pairs: bool = False,
    seed: int | None = None,
    batch_items: int | None = None,
    critique_sampling: dict | None = None,
    revision_sampling: dict | None = None,
    client_id: uuid.UUID | str | None = None,
) -> FeedbackJob:
    """Record a feedback job under the project's current constitution version and queue it (after commit).

    kind "critique_revision": `scope` is a prompt filter (as generation jobs take); `rounds` rounds per prompt;
    the final revisions are exported as an SFT snapshot (and as preference pairs with `export_pairs`).
    kind "judge": `scope` is a task filter (`tasks_in_scope`); labels are written by the judge model's AI rater,
    beside the people, or through the queue when `counts_toward_overlap` (then `scope.limit` tasks at most).
    `principles`: keys to sample from (default: all of the version's).
    With a `client_id` the launch is idempotent (`launch.launched_once`): a retry returns the first job.
    """
    if kind not in FeedbackKind.values:
        raise Invalid(f"unknown kind {kind!r}", fields={"kind": [f"one of {', '.join(FeedbackKind.values)}"]})
    if not model.is_active:
        raise Invalid(f"model {model.name} is archived", fields={"model": ["archived"]})
    if not {"policy", "judge"} & set(model.roles or []):
        raise Invalid(f"model {model.name} is neither a judge nor a policy", fields={"model": ["not a judge or policy model"]})
    # Read from the row, not the object handed in: a version saved since it was loaded is the one in force.
    current_id = Project.objects.filter(pk=project.pk).values_list("current_constitution", flat=True).first()
    constitution = ConstitutionVersion.objects.filter(pk=current_id).first() if current_id else None
    if constitution is None:
        raise Invalid("this project has no constitution yet; write one first",
                      fields={"constitution": ["no constitution in force"]})
    keys = list(constitution.principles.values_list("key", flat=True))
    if not keys:
        raise Invalid("the constitution in force has no principles", fields={"principles": ["none to sample"]})
    principles = list(principles or [])
    unknown = [k for k in principles if k not in keys]
    if unknown:
        raise Invalid(f"no principle {unknown[0]!r} in version {constitution.number}",
                      fields={"principles": [f"choose from {', '.join(keys)}"]})
    if not isinstance(rounds, int) or not 1 <= rounds <= MAX_ROUNDS:
        raise Invalid(f"rounds must be from 1 to {MAX_ROUNDS}", fields={"rounds": [f"between 1 and {MAX_ROUNDS}"]})
    if ranking_subset not in ("all", "network"):
        raise Invalid("ranking_subset must be all or network", fields={"ranking_subset": ["all or network"]})
    scope = _clean_scope(scope)
    for name, value in (("critique_sampling", critique_sampling), ("revision_sampling", revision_sampling)):
        try:
            Sampling.from_dict(value or {})
        except (TypeError, ValueError) as exc:
            raise Invalid(f"bad {name}: {exc}", fields={name: [str(exc)]}) from None
    rater = None
    if kind == FeedbackKind.CRITIQUE_REVISION:
        try:
            ids = prompts_in_scope(project=project, prompt_filter=scope, model=None)
        except Invalid as exc:
            raise Invalid(exc.message, fields={"scope": [exc.message]}) from None
        if not ids:
            raise Invalid("no prompt matches this filter", fields={"scope": ["selects no prompt"]})
        total = len(ids)
    else:
        from .rater import ai_rater_ensure

        rater = ai_rater_ensure(project=project, model_name=model.name, counts_toward_overlap=_bool(counts_toward_overlap))
        if _bool(counts_toward_overlap):
            ids = []  # the queue decides which tasks
            total = int(scope.get("limit") or project.tasks.filter(kind__in=JUDGEABLE, open_slots__gt=0).count())
            if not total:
                raise Invalid("no open task to take through the queue", fields={"scope": ["no open judgeable task"]})
        else:
            ids = tasks_in_scope(project=project, task_filter=scope)
            if not ids:
                raise Invalid("no judgeable task matches this filter", fields={"scope": ["selects no task"]})
            total = len(ids)
    parameters = {
        "rounds": rounds, "cot": _bool(cot), "principles": principles, "counts_toward_overlap": _bool(counts_toward_overlap),
        "ranking_subset": ranking_subset, "export_pairs": _bool(export_pairs),
        "critique_sampling": critique_sampling or {}, "revision_sampling": revision_sampling or {},
    }
    job = insert_once(
        FeedbackJob, project=project, client_id=client_id, created_by=created_by, kind=kind, model=model,
        constitution=constitution, rater=rater, scope=scope, item_ids=ids, parameters=parameters, total=total,
        batch_items=max(1, min(int(batch_items or (16 if kind == FeedbackKind.JUDGE else 4)), 256)),
        queue="default" if model.backend == Backend.OPENAI else "gpu",
    )
    if job.replayed:
        return job
    job.parameters["seed"] = job.pk if seed is None else int(seed)
    job.save(update_fields=["parameters"])
    runtime.enqueue(FEEDBACK_JOBS, job)
    return job


def feedback_job_cancel(*, job: FeedbackJob) -> FeedbackJob:
    """Stop a job: at once when it waits in the queue, after its current batch when a worker runs it."""
    return runtime.cancel(FEEDBACK_JOBS, job)


# --- running -------------------------------------------------------------------------------
def feedback_job_run_slice(*, job_id: int, ticket: str, worker: str = "", backend=None) -> str:
    """Run the job for up to JOB_SLICE_SECONDS; returns succeeded/failed/cancelled/continued/stale/busy/lost.
    Raises RetryLater on transient backend errors. `backend` replaces the registry's (tests, benchmarks)."""
    return runtime.run_claimed(FEEDBACK_JOBS, job_id=job_id, ticket=ticket, worker=worker,
                               body=lambda owner, heartbeat: _run(job_id, owner, heartbeat, backend))


def _principles(job: FeedbackJob):
    qs = job.constitution.principles.order_by("position")
    keys = (job.parameters or {}).get("principles") or []
    return list(qs.filter(key__in=keys) if keys else qs)


def _process(job: FeedbackJob, backend, item_ids: list[int]) -> tuple[int, list[dict], dict]:
    """Process items; returns (items done, failures, counters to add to the result)."""
    params = job.parameters or {}
    principles = _principles(job)
    if job.kind == FeedbackKind.CRITIQUE_REVISION:
        from .chains import chains_run_batch

        found = Prompt.objects.in_bulk(item_ids)
        prompts = [found[i] for i in item_ids if i in found]
        counts = chains_run_batch(backend=backend, job=job, prompts=prompts, principles=principles,
                                  constitution=job.constitution)
        failures = counts.pop("failures")
        return len(item_ids), failures, counts
    from .labels import label_tasks
    from .rater import task_views, write_direct

    labels = label_tasks(backend, task_views(item_ids), principles, seed=params.get("seed", job.pk),
                         cot=params.get("cot", False), ranking_subset=params.get("ranking_subset", "all"),
                         aspects=job.project.aspects,
                         batch_size=job.batch_items)
    written = write_direct(rater=job.rater, labels=labels, model_name=job.model.name, constitution=job.constitution,
                           job_id=job.pk)
    flipped = sum(1 for l in labels if l.payload is not None and l.details.get("flipped"))
    return len(item_ids), written.failed, {"labels": written.labelled, "already_labelled": written.skipped,
                                           "flipped": flipped}


def _process_queue(job: FeedbackJob, backend, limit: int) -> tuple[int, list[dict], dict, bool]:
    from .rater import label_through_queue

    params = job.parameters or {}
    written = label_through_queue(
        backend=backend, project=job.project, rater=job.rater, principles=_principles(job),
        constitution=job.constitution, model_name=job.model.name, limit=limit, seed=params.get("seed", job.pk),
        cot=params.get("cot", False), ranking_subset=params.get("ranking_subset", "all"), job_id=job.pk,
        batch_size=job.batch_items,
    )
    taken = written.labelled + written.skipped + len(written.failed)
    return taken, written.failed, {"labels": written.labelled, "already_labelled": written.skipped}, taken < limit


def _add(result: dict, counts: dict) -> dict:
    out = dict(result)
    for k, v in counts.items():
        out[k] = out.get(k, 0) + v
    return out


def _run(job_id: int, owner: str, heartbeat: Heartbeat, backend) -> str:
    job = FeedbackJob.objects.select_related("model", "project", "constitution", "rater").get(pk=job_id)
    deadline = time.monotonic() + settings.JOB_SLICE_SECONDS
    backend = backend or backend_for(job.model)
    via_queue = job.kind == FeedbackKind.JUDGE and (job.parameters or {}).get("counts_toward_overlap")
    batches = 0
    while True:
        current = FeedbackJob.objects.filter(pk=job_id).values("owner", "cursor", "cancel_requested", "retried").first()
        if current is None or current["owner"] != owner or heartbeat.lost:
            raise LostClaim()
        if current["cancel_requested"]:
            return runtime.end(FEEDBACK_JOBS, job_id, owner, JobStatus.CANCELLED)
        cursor = current["cursor"]
        end = job.total if via_queue else len(job.item_ids)
        if cursor >= end:
            if not current["retried"]:
                _retry_failures(job, owner, backend)
                continue
            return _complete(job, owner)
        if batches and time.monotonic() >= deadline:
            return runtime.hand_on(FEEDBACK_JOBS, job_id, owner)
        if via_queue:
            want = min(job.batch_items, end - cursor)
            taken, failures, counts, exhausted = _process_queue(job, backend, want)
            step = end - cursor if exhausted else max(taken, 1)
        else:
            batch = list(job.item_ids[cursor : cursor + job.batch_items])
            taken, failures, counts = _process(job, backend, batch)
            step = len(batch)
        _commit(job_id, owner, cursor, cursor + step, taken, failures, counts)
        batches += 1


def _commit(job_id, owner, start, end, done, failures, counts) -> None:
    with transaction.atomic():
        locked = FeedbackJob.objects.select_for_update().filter(pk=job_id).first()
        if locked is None or locked.owner != owner or locked.cursor != start:
            raise LostClaim()
        locked.cursor = end
        locked.done = min(locked.total, locked.done + done)
        locked.failures = [*locked.failures, *[{**f, "attempts": 1} for f in failures]]
        locked.result = _add(locked.result, counts)
        locked.heartbeat_at = timezone.now()
        locked.save(update_fields=["cursor", "done", "failures", "result", "heartbeat_at"])


def _retry_failures(job: FeedbackJob, owner: str, backend) -> None:
    """The failed items' second try; what fails again stays in `failures` with attempts 2."""
    failed = [f for f in job.__class__.objects.get(pk=job.pk).failures if f.get("attempts", 1) < 2]
    items = list(dict.fromkeys(int(f["item"]) for f in failed))
    again: list[dict] = []
    counts: dict = {}
    if items and job.kind == FeedbackKind.JUDGE and (job.parameters or {}).get("counts_toward_overlap"):
        again = [{**f, "attempts": 2} for f in failed]  # the queue has given those tasks back; nothing to redo
    elif items:
        _, again_raw, counts = _process(job, backend, items)
        again = [{**f, "attempts": 2} for f in again_raw]
    with transaction.atomic():
        locked = FeedbackJob.objects.select_for_update().filter(pk=job.pk).first()
        if locked is None or locked.owner != owner:
            raise LostClaim()
        recovered = len(items) - len({f["item"] for f in again})
        locked.failures = again
        locked.retried = True
        locked.result = _add(locked.result, {**counts, "recovered_on_retry": recovered})
        locked.save(update_fields=["failures", "retried", "result"])


def _complete(job: FeedbackJob, owner: str) -> str:
    job = FeedbackJob.objects.select_related("project", "model", "constitution").get(pk=job.pk)
    result = dict(job.result)
    if job.kind == FeedbackKind.CRITIQUE_REVISION and not result.get("sft_snapshot"):
        from .chains import chains_export

        if result.get("revisions"):
            result.update(chains_export(job=job, pairs=(job.parameters or {}).get("export_pairs", False),
                                        created_by=job.created_by))
    produced = result.get("labels", 0) + result.get("revisions", 0) + result.get("already_labelled", 0)
    status = JobStatus.SUCCEEDED if produced or not job.failures else JobStatus.FAILED
    error = "" if status == JobStatus.SUCCEEDED else f"every item failed; first error: {job.failures[0].get('error', '')}"
    return runtime.end(FEEDBACK_JOBS, job.pk, owner, status, error=error, result=result,
                       done=F("total") if status == JobStatus.SUCCEEDED else F("done"))


def feedback_jobs_reconcile(*, now: datetime | None = None) -> dict:
    """Re-queue or end feedback jobs nobody works on (`runtime.reconcile`), as for every job kind."""
    return runtime.reconcile(FEEDBACK_JOBS, now=now)


def ai_raters_of(*, project: Project):
    return Membership.objects.filter(project=project, is_ai=True).select_related("user")
