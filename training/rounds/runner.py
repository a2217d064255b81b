"""Rounds on the job runtime: create, cancel, advance on a worker, and reconcile.

A round moves through generate → select → label → export → train → evaluate → done (`stages`). Everything it has
done is on the row (links to the generation job, the snapshot, the runs; the stage and its times), so any worker
can pick it up where the last one stopped. A worker claims the round (owner + heartbeat), does every stage that
needs no waiting, and when it must wait (for the generation job, the training runs or people's labels) it lets go
and sends itself a message due later. The reconciler re-sends a message for a round nobody holds past its due time
and takes back a round whose worker stopped beating, so a round is never left "running" without a worker.
Each stage is idempotent: tasks are keyed `round:{id}:…`, AI labels are written once per (task, judge), and the
links are saved in the same transaction that creates what they point to.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotation.models import Project
from common.errors import Conflict, Invalid

from ..backends import BackendError
from ..jobs import runtime
from ..jobs.runtime import Heartbeat, JobKind, LostClaim
from ..models import Backend, Model, ModelRole
from ..services.generation import generation_job_cancel
from ..services.launch import insert_once, launched_once
from ..services.runs import training_run_cancel
from .config import RoundConfig
from .models import ROUND_ACTIVE, STAGE_ORDER, LabelMode, Round, RoundStage, RoundStatus
from .selectors import latest_output_model, training_prompt_ids
from .stages import STEPS, RoundFailed


def _queue(rnd: Round) -> str:
    return getattr(settings, "ROUND_QUEUE", "gpu")


ROUNDS = JobKind(model=Round, task="training.round_advance", what="round", noun="round", queue=_queue,
                 claimable=ROUND_ACTIVE, progress=lambda rnd: f"in stage {rnd.stage}",
                 requeued_status=RoundStatus.QUEUED, release_fields={"waiting_for": ""}, prefix="rounds_")


# --- launching -----------------------------------------------------------------------------
def _check_model(model: Model | None, role: str, field: str, *, local: bool = False) -> None:
    if model is None:
        return
    if not model.is_active:
        raise Invalid(f"model {model.name} is archived", fields={field: ["archived"]})
    if role not in (model.roles or []):
        raise Invalid(f"model {model.name} is not registered as a {role} model", fields={field: [f"needs the {role} role"]})
    if local and (model.backend == Backend.OPENAI or not model.path):
        raise Invalid(f"model {model.name} has no local weights", fields={field: ["must be a local model"]})


@transaction.atomic
@launched_once(Round)
def round_create(
    *,
    project: Project,
    policy: Model | None = None,
    judge: Model | None = None,
    reward_model: Model | None = None,
    label_mode: str = LabelMode.AI,
    human_quota: int | None = None,
    rounds: int = 1,
    config: dict | None = None,
    created_by: AbstractBaseUser | None = None,
    previous: Round | None = None,
    client_id: uuid.UUID | str | None = None,
) -> Round:
    """Record round n+1 of the project and queue it (after commit). `rounds` > 1 chains that many rounds, each
    generating with the model the one before it trained. The policy defaults to the last round's output model.
    With a `client_id` the launch is idempotent (`launch.launched_once`): a retry returns the first round, even
    while it runs."""
    if label_mode not in LabelMode.values:
        raise Invalid(f"unknown label mode {label_mode!r}", fields={"label_mode": [f"one of {', '.join(LabelMode.values)}"]})
    if not isinstance(rounds, int) or isinstance(rounds, bool) or not 1 <= rounds <= 100:
        raise Invalid("rounds must be from 1 to 100", fields={"rounds": ["an integer from 1 to 100"]})
    if human_quota is not None and (not isinstance(human_quota, int) or isinstance(human_quota, bool) or human_quota < 0):
        raise Invalid("human_quota must be a non-negative integer", fields={"human_quota": ["a non-negative integer"]})
    Project.objects.select_for_update().filter(pk=project.pk).first()  # one round launch per project at a time
    if Round.objects.filter(project=project, status__in=ROUND_ACTIVE).exists():
        raise Conflict("a round of this project is still in progress", code="round_active")
    policy = policy or latest_output_model(project=project)
    if policy is None:
        raise Invalid("choose the policy model for the first round", fields={"policy": ["required for the first round"]})
    _check_model(policy, ModelRole.POLICY, "policy", local=True)
    if label_mode in (LabelMode.AI, LabelMode.BOTH) and judge is None:
        raise Invalid("AI labels need a judge model", fields={"judge": ["required for ai and both label modes"]})
    _check_model(judge, ModelRole.JUDGE, "judge")
    _check_model(reward_model, ModelRole.REWARD, "reward_model", local=True)
    validated = RoundConfig.from_dict(project, config)
    if validated.reward_base:
        base = Model.objects.filter(name=validated.reward_base, is_active=True).first()
        if base is None or base.backend == Backend.OPENAI or not base.path:
            raise Invalid(f"no local model named {validated.reward_base!r}", fields={"config.reward_base": ["no such local model"]})
    last = Round.objects.filter(project=project).order_by("-number").first()
    used_before = sum(len(r.prompt_ids or []) for r in Round.objects.filter(project=project).only("prompt_ids"))
    prompt_ids = training_prompt_ids(project, validated, used_before)
    if not prompt_ids:
        raise Invalid("the project has no prompts to train on (beyond the held-out ones)",
                      fields={"project": ["import prompts first"]})
    if previous is None and last is not None and last.output_model_id == policy.pk and not hasattr(last, "next_round"):
        previous = last  # continuing the loop by hand links the rounds as the chained ones are
    rnd = insert_once(
        Round, project=project, client_id=client_id, created_by=created_by, number=(last.number + 1) if last else 1,
        policy=policy, judge=judge, reward_model=reward_model, label_mode=label_mode, human_quota=human_quota or 0,
        config=validated.as_dict(), rounds_after=rounds - 1, previous=previous, prompt_ids=prompt_ids,
    )
    if rnd.replayed:  # a concurrent launch with this client id came first
        return rnd
    runtime.enqueue(ROUNDS, rnd)
    return rnd


@transaction.atomic
def round_cancel(*, rnd: Round) -> Round:
    """Stop a round: at once when no worker holds it, at the next stage boundary otherwise. Its generation job and
    training runs still active are cancelled too."""
    locked = runtime.cancel(ROUNDS, rnd, rounds_after=0)
    _cancel_children(locked)
    return locked


def _cancel_children(rnd: Round) -> None:
    if rnd.generation_job_id and rnd.generation_job.is_active:
        generation_job_cancel(job=rnd.generation_job)
    for run in (rnd.training_run, rnd.reward_run):
        if run is not None and run.is_active:
            training_run_cancel(run=run)


# --- running -------------------------------------------------------------------------------
def round_advance_now(*, round_id: int, ticket: str, worker: str = "") -> str:
    """Take the round as far as it goes without waiting. Returns "succeeded", "failed", "cancelled", "waiting",
    "stale" (an outdated message), "busy" (a live worker holds it) or "lost"."""
    return runtime.run_claimed(ROUNDS, job_id=round_id, ticket=ticket, worker=worker,
                               body=lambda owner, heartbeat: _advance(round_id, owner, heartbeat),
                               failures=(RoundFailed, BackendError, Invalid, Conflict), transient_retry=False,
                               waiting_for="")


def _check_owner(round_id: int, owner: str, heartbeat: Heartbeat) -> Round:
    rnd = Round.objects.select_related(
        "project", "policy", "judge", "reward_model", "generation_job", "snapshot", "training_run", "reward_run",
        "output_model", "created_by",
    ).get(pk=round_id)
    if rnd.owner != owner or heartbeat.lost:
        raise LostClaim()
    return rnd


def _advance(round_id: int, owner: str, heartbeat: Heartbeat) -> str:
    while True:
        rnd = _check_owner(round_id, owner, heartbeat)
        if rnd.cancel_requested:
            _cancel_children(rnd)
            return runtime.end(ROUNDS, round_id, owner, RoundStatus.CANCELLED)
        stage = rnd.stage
        if stage == RoundStage.DONE:
            return _succeed(rnd, owner)
        _stage_started(rnd, stage)
        STEPS[stage](rnd, owner)
        _stage_finished(rnd, owner, stage)


def _stage_started(rnd: Round, stage: str) -> None:
    times = dict(rnd.stage_times or {})
    if stage not in times:
        times[stage] = {"started": timezone.now().isoformat()}
        Round.objects.filter(pk=rnd.pk).update(stage_times=times)
        rnd.stage_times = times


def _stage_finished(rnd: Round, owner: str, stage: str, **fields) -> None:
    times = dict(Round.objects.filter(pk=rnd.pk).values_list("stage_times", flat=True).first() or {})
    entry = dict(times.get(stage) or {"started": timezone.now().isoformat()})
    now = timezone.now()
    entry["finished"] = now.isoformat()
    entry["seconds"] = round((now - datetime.fromisoformat(entry["started"])).total_seconds(), 2)
    times[stage] = entry
    following = STAGE_ORDER[STAGE_ORDER.index(stage) + 1]
    if not Round.objects.filter(pk=rnd.pk, owner=owner, stage=stage).update(stage=following, stage_times=times, **fields):
        raise LostClaim()


def _succeed(rnd: Round, owner: str) -> str:
    """Close the round and, when more rounds were asked for, start the next with this round's model."""
    with transaction.atomic():
        runtime.end(ROUNDS, rnd.pk, owner, RoundStatus.SUCCEEDED)
        if rnd.rounds_after > 0 and rnd.output_model_id and not Round.objects.filter(previous=rnd).exists():
            round_create(
                project=rnd.project, policy=rnd.output_model, judge=rnd.judge,
                reward_model=rnd.output_reward_model or rnd.reward_model, label_mode=rnd.label_mode,
                human_quota=rnd.human_quota or None, rounds=rnd.rounds_after, config=_carried_config(rnd),
                created_by=rnd.created_by, previous=rnd,
            )
    return RoundStatus.SUCCEEDED


def _carried_config(rnd: Round) -> dict:
    # The next round re-reads the project's settings; only what was set for this loop is carried over.
    project_level = (rnd.project.settings or {}).get("rounds") or {}
    defaults = RoundConfig().as_dict()
    return {k: v for k, v in rnd.config.items() if k not in project_level and v != defaults.get(k)}


# --- upkeep --------------------------------------------------------------------------------
def rounds_reconcile(*, now: datetime | None = None) -> dict:
    """No round stays running without a worker (`runtime.reconcile`): one whose worker stopped beating is handed
    to a new message (or failed past JOB_MAX_ATTEMPTS); one waiting for a message that never came (past its due
    time) gets another."""
    return runtime.reconcile(ROUNDS, now=now)
