"""Rounds: create, cancel, advance on a worker, and reconcile.

A round moves through generate → select → label → export → train → evaluate → done. Everything it has done is on
the row (links to the generation job, the snapshot, the runs; the stage and its times), so any worker can pick it
up where the last one stopped. A worker claims the round (owner + heartbeat), does every stage that needs no
waiting, and when it must wait (for the generation job, the training runs or people's labels) it lets go and
sends itself a message due later. The reconciler re-sends a message for a round nobody holds past its due time
and takes back a round whose worker stopped beating, so a round is never left "running" without a worker.
Each stage is idempotent: tasks are keyed `round:{id}:…`, AI labels are written once per (task, judge), and the
links are saved in the same transaction that creates what they point to.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotation.models import (
    Annotation,
    AnnotationSource,
    Membership,
    Project,
    Prompt,
    Response,
    ResponseOrigin,
    Role,
    SnapshotFormat,
    Task,
    TaskKind,
)
from annotation.services import membership_set, project_create, prompt_create, response_create, task_create
from annotation.services.exports import snapshot_create
from common.errors import Conflict, Invalid

from ..backends import BackendError, Sampling, backend_for
from ..feedback.labels import Label, label_tasks, pairwise_payload
from ..feedback.rater import ai_rater_ensure, task_views, write_direct
from ..jobs import runtime
from ..jobs.runtime import Heartbeat, JobKind, LostClaim, Wait
from ..models import Backend, CandidateTasks, JobStatus, Model, ModelRole, TrainingMethod
from ..services.launch import insert_once, launched_once
from ..services.generation import generation_job_cancel, generation_job_create
from ..services.runs import training_run_cancel, training_run_create, training_run_relaunch
from . import evaluation, judging, selection
from .models import ROUND_ACTIVE, STAGE_ORDER, LabelMode, Round, RoundStage, RoundStatus

log = logging.getLogger(__name__)

DEFAULT_CONFIG: dict = {
    "prompts_per_round": 8,
    "n": 2,
    "sampling": {"max_new_tokens": 128, "temperature": 1.0},
    "eval_prompts": 8,
    "eval_sampling": {"max_new_tokens": 128, "temperature": 0.0},
    "method": "dpo",
    "hyperparameters": {
        "max_steps": 8, "batch_size": 2, "learning_rate": 5e-5, "max_length": 384, "beta": 0.1,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0}, "save_steps": 1000, "num_threads": None,
    },
    "reward_base": None,  # a model name: train a reward model on each round's snapshot too (for the next round)
    "reward_hyperparameters": {"max_steps": 8, "batch_size": 4, "learning_rate": 1e-4, "max_length": 384},
    "selection": selection.SelectionPolicy().as_dict(),
    "queue_eval_for_humans": False,
    "probes": True,
    "probe_limit": None,
    "judge_batch": 8,
    "seed": 0,
}
CONFIG_KEYS = set(DEFAULT_CONFIG)
INT_KEYS = {"prompts_per_round": (1, 10_000), "n": (2, 16), "eval_prompts": (0, 10_000), "judge_batch": (1, 256),
            "seed": (0, 2**31 - 1)}
HELDOUT_TAG = "heldout"
RUN_RELAUNCHES = 2  # times a round relaunches a training run whose worker died


def _queue(rnd: Round) -> str:
    return getattr(settings, "ROUND_QUEUE", "gpu")


ROUNDS = JobKind(model=Round, task="training.round_advance", what="round", noun="round", queue=_queue,
                 claimable=ROUND_ACTIVE, progress=lambda rnd: f"in stage {rnd.stage}",
                 requeued_status=RoundStatus.QUEUED, release_fields={"waiting_for": ""}, prefix="rounds_")


# --- configuration -------------------------------------------------------------------------
def round_config(*, project: Project, overrides: dict | None = None) -> dict:
    """Defaults, then the project's `settings["rounds"]`, then `overrides`; validated (Invalid with field messages)."""
    if overrides is not None and not isinstance(overrides, dict):
        raise Invalid("config must be an object", fields={"config": ["must be an object"]})
    from_project = (project.settings or {}).get("rounds") or {}
    if not isinstance(from_project, dict):
        raise Invalid("the project's rounds setting must be an object", fields={"settings": ["rounds must be an object"]})
    config = {**DEFAULT_CONFIG}
    problems: dict[str, list[str]] = {}
    for source in (from_project, overrides or {}):
        for key, value in source.items():
            if key not in CONFIG_KEYS:
                problems.setdefault(key, []).append("unknown setting")
            elif isinstance(DEFAULT_CONFIG[key], dict) and isinstance(value, dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
    for key, (low, high) in INT_KEYS.items():
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            problems.setdefault(key, []).append(f"an integer from {low} to {high}")
    if config["method"] not in (TrainingMethod.DPO, TrainingMethod.ORPO):
        problems.setdefault("method", []).append("dpo or orpo (a preference method that yields a policy)")
    for key in ("sampling", "eval_sampling"):
        try:
            config[key] = Sampling.from_dict(config[key]).as_dict()
        except (TypeError, ValueError) as exc:
            problems.setdefault(key, []).append(str(exc))
    try:
        config["selection"] = selection.SelectionPolicy.from_settings(config["selection"]).as_dict()
    except (TypeError, ValueError) as exc:
        problems.setdefault("selection", []).append(str(exc))
    for key in ("hyperparameters", "reward_hyperparameters"):
        if not isinstance(config[key], dict):
            problems.setdefault(key, []).append("must be an object")
    if config["reward_base"] is not None and not isinstance(config["reward_base"], str):
        problems.setdefault("reward_base", []).append("a registered model name, or null")
    if config["probe_limit"] is not None and (not isinstance(config["probe_limit"], int) or config["probe_limit"] < 1):
        problems.setdefault("probe_limit", []).append("a positive integer, or null")
    for key in ("queue_eval_for_humans", "probes"):
        if not isinstance(config[key], bool):
            problems.setdefault(key, []).append("true or false")
    if problems:
        raise Invalid("invalid round settings: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in problems.items()),
                      fields={f"config.{k}": v for k, v in problems.items()})
    config["hyperparameters"] = {k: v for k, v in config["hyperparameters"].items() if v is not None}
    return config


def heldout_prompt_ids(*, project: Project, count: int) -> list[int]:
    """Prompts kept out of training for evaluation: those tagged `heldout`, or else the `count` prompts with the
    lowest content hash, at most half of them (stable as prompts are added: a new prompt enters only if its hash
    is lower)."""
    tagged = [pk for pk, tags in Prompt.objects.filter(project=project).values_list("id", "tags") if HELDOUT_TAG in (tags or [])]
    if tagged:
        return sorted(tagged)
    # Never more than half the prompts: the rest must stay for training.
    count = min(count, Prompt.objects.filter(project=project).count() // 2)
    if count <= 0:
        return []
    return list(Prompt.objects.filter(project=project).order_by("content_hash", "id").values_list("id", flat=True)[:count])


def _training_prompt_ids(project: Project, config: dict, used_before: int) -> list[int]:
    held = set(heldout_prompt_ids(project=project, count=config["eval_prompts"]))
    pool = [pk for pk in Prompt.objects.filter(project=project).order_by("id").values_list("id", flat=True) if pk not in held]
    if not pool:
        return []
    k = min(config["prompts_per_round"], len(pool))
    start = used_before % len(pool)  # rounds walk through the pool, wrapping around
    return [pool[(start + i) % len(pool)] for i in range(k)]


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


def latest_output_model(*, project: Project) -> Model | None:
    last = Round.objects.filter(project=project, status=RoundStatus.SUCCEEDED, output_model__isnull=False).order_by("-number").first()
    return last.output_model if last else None


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
    config = round_config(project=project, overrides=config)
    if config["reward_base"]:
        base = Model.objects.filter(name=config["reward_base"], is_active=True).first()
        if base is None or base.backend == Backend.OPENAI or not base.path:
            raise Invalid(f"no local model named {config['reward_base']!r}", fields={"config.reward_base": ["no such local model"]})
    last = Round.objects.filter(project=project).order_by("-number").first()
    used_before = sum(len(r.prompt_ids or []) for r in Round.objects.filter(project=project).only("prompt_ids"))
    prompt_ids = _training_prompt_ids(project, config, used_before)
    if not prompt_ids:
        raise Invalid("the project has no prompts to train on (beyond the held-out ones)",
                      fields={"project": ["import prompts first"]})
    if previous is None and last is not None and last.output_model_id == policy.pk and not hasattr(last, "next_round"):
        previous = last  # continuing the loop by hand links the rounds as the chained ones are
    rnd = insert_once(
        Round, project=project, client_id=client_id, created_by=created_by, number=(last.number + 1) if last else 1,
        policy=policy, judge=judge, reward_model=reward_model, label_mode=label_mode, human_quota=human_quota or 0,
        config=config, rounds_after=rounds - 1, previous=previous, prompt_ids=prompt_ids,
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
def poll_seconds() -> float:
    return float(getattr(settings, "ROUND_POLL_SECONDS", 5))


def human_poll_seconds() -> float:
    return float(getattr(settings, "ROUND_HUMAN_POLL_SECONDS", 30))


class RoundFailed(Exception):
    """The round cannot go on (a failed job or run, nothing to train on)."""


def _wait(why: str, seconds: float) -> Wait:
    """Let go of the round while it waits for `why`; a message due in `seconds` looks again."""
    return Wait(seconds, status=RoundStatus.WAITING, waiting_for=why[:300])


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
    return {k: v for k, v in rnd.config.items() if k not in project_level and v != DEFAULT_CONFIG.get(k)}


# --- stages --------------------------------------------------------------------------------
def round_tasks(rnd: Round):
    return Task.objects.filter(project_id=rnd.project_id, dedupe_key__startswith=rnd.task_key)


def _generate(rnd: Round, owner: str) -> None:
    job = rnd.generation_job
    if job is None:
        with transaction.atomic():
            job = generation_job_create(
                project=rnd.project, model=rnd.policy, created_by=rnd.created_by,
                prompt_filter={"ids": rnd.prompt_ids}, n=rnd.config["n"],
                sampling={**rnd.config["sampling"], "seed": rnd.config["seed"] + rnd.number * 1000},
                task_kind=CandidateTasks.NONE.value,
            )
            if not Round.objects.filter(pk=rnd.pk, owner=owner, generation_job__isnull=True).update(generation_job=job):
                raise LostClaim()
    job.refresh_from_db()
    if job.is_active:
        raise _wait(f"generation job {job.pk}: {job.done}/{job.total} responses", poll_seconds())
    if job.status != JobStatus.SUCCEEDED:
        raise RoundFailed(f"generation job {job.pk} {job.status}: {job.error}".strip(": "))


def _candidates(rnd: Round) -> dict[int, list[Response]]:
    """Each prompt's generated responses, in sample order."""
    prefix = f"gen:{rnd.generation_job_id}:"
    by_prompt: dict[int, list[Response]] = {}
    rows = Response.objects.filter(prompt__project_id=rnd.project_id, dedupe_key__startswith=prefix).order_by("prompt_id", "id")
    for response in rows:
        by_prompt.setdefault(response.prompt_id, []).append(response)
    for responses in by_prompt.values():
        responses.sort(key=lambda r: int(r.dedupe_key[len(prefix):]))
    return by_prompt


def _select(rnd: Round, owner: str) -> None:
    """Turn candidates into pairwise tasks, choosing which pairs by the project's selection policy."""
    import numpy as np

    policy = selection.SelectionPolicy.from_settings(rnd.config["selection"])
    by_prompt = _candidates(rnd)
    pairs: list[tuple[int, Response, Response]] = []
    for prompt_id, responses in sorted(by_prompt.items()):
        for i, j in selection.candidate_pairs(len(responses)):
            pairs.append((prompt_id, responses[i], responses[j]))
    if not pairs:
        raise RoundFailed("the generation job wrote no pairs of candidates")
    members = None
    scores = None
    if rnd.reward_model is not None and policy.policy != "random":
        from training.trainers.scoring import RewardScorer

        scorer = RewardScorer(rnd.reward_model.path)
        members = scorer.size
        prompts = {p.pk: p.messages for p in Prompt.objects.filter(pk__in=by_prompt)}
        flat = [r for responses in by_prompt.values() for r in responses]
        matrix = evaluation.score_texts(scorer, [prompts[r.prompt_id] for r in flat], [r.content for r in flat]).numpy()
        column = {r.pk: k for k, r in enumerate(flat)}
        scores = (matrix[:, [column[a.pk] for _, a, _ in pairs]], matrix[:, [column[b.pk] for _, _, b in pairs]])
    applied = selection.resolve_policy(policy.policy, members)
    uncertainty = (selection.pair_uncertainty(scores[0], scores[1], applied) if applied != "random"
                   else np.zeros(len(pairs)))
    budget = len(by_prompt) * policy.pairs_per_prompt
    chosen = selection.select(uncertainty, budget, 1.0 if applied == "random" else policy.random_fraction,
                              seed=rnd.config["seed"] + rnd.pk)
    prompts_by_id = Prompt.objects.in_bulk(list(by_prompt))
    with transaction.atomic():
        if not Round.objects.select_for_update().filter(pk=rnd.pk, owner=owner).exists():
            raise LostClaim()
        for rank, (index, reason) in enumerate(chosen):
            prompt_id, a, b = pairs[index]
            task_create(
                project=rnd.project, kind=TaskKind.PAIRWISE.value, prompt=prompts_by_id[prompt_id], responses=[a, b],
                dedupe_key=f"{rnd.task_key}{a.pk}:{b.pk}",
                metadata={
                    "round": rnd.pk, "round_number": rnd.number, "generation_job": rnd.generation_job_id,
                    "selection": {
                        "policy": policy.policy, "applied": applied, "random_fraction": policy.random_fraction,
                        "reason": reason, "rank": rank,
                        "uncertainty": None if applied == "random" else round(float(uncertainty[index]), 6),
                        "reward_model": rnd.reward_model.name if rnd.reward_model and applied != "random" else None,
                    },
                },
            )


def _label(rnd: Round, owner: str) -> None:
    if rnd.label_mode in (LabelMode.AI, LabelMode.BOTH):
        _ai_labels(rnd, owner)
    if rnd.label_mode in (LabelMode.HUMAN, LabelMode.BOTH):
        tasks = round_tasks(rnd)
        quota = rnd.human_quota or tasks.count()
        done = Annotation.objects.filter(task__in=tasks, source=AnnotationSource.HUMAN, is_current=True).count()
        if done < quota:
            raise _wait(f"human labels: {done}/{quota}", human_poll_seconds())


def _ai_labels(rnd: Round, owner: str) -> None:
    """The judge labels every task of the round it has not labelled yet, a batch per transaction.

    With a constitution in force, through the product's AI rater (`training.feedback`): one principle drawn per
    task, both orders averaged, written as the judge's rater with the constitution version. Without one, the
    judge answers the default comparison question and the label is written by the same rater, with no version.
    """
    judge = rnd.judge
    labelled = Annotation.objects.filter(source=AnnotationSource.AI, details__judge_model=judge.name).values("task_id")
    todo = list(round_tasks(rnd).exclude(pk__in=labelled).order_by("id").values_list("id", flat=True))
    if not todo:
        return
    backend = backend_for(judge)
    batch = rnd.config["judge_batch"]
    constitution = rnd.project.current_constitution
    principles = list(constitution.principles.order_by("position")) if constitution is not None else []
    if principles:
        rater = ai_rater_ensure(project=rnd.project, model_name=judge.name)
        for start in range(0, len(todo), batch):
            labels = label_tasks(backend, task_views(todo[start : start + batch]), principles, seed=rnd.pk,
                                 aspects=rnd.project.aspects, batch_size=batch)
            with transaction.atomic():
                if not Round.objects.select_for_update().filter(pk=rnd.pk, owner=owner).exists():
                    raise LostClaim()
                write_direct(rater=rater, labels=labels, model_name=judge.name, constitution=constitution,
                             round_id=rnd.pk)
        return
    tasks = {t.pk: t for t in Task.objects.filter(pk__in=todo).select_related("prompt")
             .prefetch_related("task_responses__response")}
    for start in range(0, len(todo), batch):
        chunk = [tasks[pk] for pk in todo[start : start + batch]]
        items = []
        for task in chunk:
            responses = [tr.response for tr in sorted(task.task_responses.all(), key=lambda tr: tr.position)]
            items.append((task.prompt.messages, responses[0].content, responses[1].content))
        judgments = judging.compare_pairs(backend, items, batch_size=batch)
        with transaction.atomic():
            if not Round.objects.select_for_update().filter(pk=rnd.pk, owner=owner).exists():
                raise LostClaim()
            _write_judgments(rnd, rnd.project, zip(chunk, judgments))


def _write_judgments(rnd: Round, project: Project, judged) -> None:
    """The round judge's verdicts on pairwise tasks of `project`, (task, PairJudgment) pairs, written as its AI
    rater's labels: the same label and provenance a feedback job writes. A pair the judge could not read (too
    long for it) stays unlabelled."""
    labels = [Label(task.pk, pairwise_payload(j.p), "", j.details()) for task, j in judged if j.ok]
    rater = ai_rater_ensure(project=project, model_name=rnd.judge.name)
    write_direct(rater=rater, labels=labels, model_name=rnd.judge.name, constitution=None, round_id=rnd.pk)


def _sources(rnd: Round) -> list[str]:
    return {LabelMode.AI: ["ai"], LabelMode.HUMAN: ["human"], LabelMode.BOTH: ["ai", "human"]}[rnd.label_mode]


def _export(rnd: Round, owner: str) -> None:
    if rnd.snapshot_id is None:
        with transaction.atomic():
            snapshot = snapshot_create(project=rnd.project, format=SnapshotFormat.PREFERENCE.value, sources=_sources(rnd),
                                       created_by=rnd.created_by)
            if not Round.objects.filter(pk=rnd.pk, owner=owner, snapshot__isnull=True).update(
                snapshot=snapshot, snapshot_sha256=snapshot.sha256
            ):
                raise LostClaim()
        rnd.snapshot = snapshot
    if rnd.snapshot.row_count == 0:
        raise RoundFailed("the snapshot has no preference rows (every label a tie, or none yet)")


def _train(rnd: Round, owner: str) -> None:
    config = rnd.config
    if rnd.training_run is None:
        with transaction.atomic():
            run = training_run_create(project=rnd.project, method=config["method"], base_model=rnd.policy,
                                      snapshot=rnd.snapshot, hyperparameters=config["hyperparameters"],
                                      created_by=rnd.created_by)
            reward_run = None
            if config["reward_base"]:
                # Plain-string rows: an encoder reward model (MiniLM) has no chat template to render messages.
                reward_snapshot = snapshot_create(project=rnd.project, format=SnapshotFormat.PREFERENCE.value,
                                                  style="standard", sources=_sources(rnd), created_by=rnd.created_by)
                reward_run = training_run_create(
                    project=rnd.project, method=TrainingMethod.REWARD.value,
                    base_model=Model.objects.get(name=config["reward_base"]), snapshot=reward_snapshot,
                    hyperparameters=config["reward_hyperparameters"], created_by=rnd.created_by)
            if not Round.objects.filter(pk=rnd.pk, owner=owner, training_run__isnull=True).update(
                training_run=run, reward_run=reward_run
            ):
                raise LostClaim()
        rnd.training_run, rnd.reward_run = run, reward_run
    runs = [r for r in (rnd.training_run, rnd.reward_run) if r is not None]
    for run in runs:
        run.refresh_from_db()
    active = [r for r in runs if r.is_active]
    if active:
        raise _wait(", ".join(f"training run {r.pk} ({r.method}): step {r.step}" for r in active), poll_seconds())
    lost = [r for r in runs if r.status == JobStatus.FAILED and "stopped responding" in r.error
            and r.attempts < RUN_RELAUNCHES]
    if lost:
        # The trainer's worker died: go on from its last checkpoint rather than fail the round.
        for run in lost:
            training_run_relaunch(run=run)
        raise _wait(", ".join(f"training run {r.pk} relaunched after its worker stopped" for r in lost), poll_seconds())
    bad = [r for r in runs if r.status != JobStatus.SUCCEEDED or r.output_model_id is None]
    if bad:
        raise RoundFailed("; ".join(f"training run {r.pk} {r.status}: {r.error}".strip(": ") for r in bad))
    fields = {"output_model": rnd.training_run.output_model}
    if rnd.reward_run is not None:
        fields["output_reward_model"] = rnd.reward_run.output_model
    Round.objects.filter(pk=rnd.pk, owner=owner).update(**fields)


def _evaluate(rnd: Round, owner: str) -> None:
    rnd.refresh_from_db()
    started = time.perf_counter()
    results = evaluate_round(rnd)
    results["seconds"] = round(time.perf_counter() - started, 2)
    if not Round.objects.filter(pk=rnd.pk, owner=owner).update(evaluation=results):
        raise LostClaim()


STEPS = {
    RoundStage.GENERATE: _generate,
    RoundStage.SELECT: _select,
    RoundStage.LABEL: _label,
    RoundStage.EXPORT: _export,
    RoundStage.TRAIN: _train,
    RoundStage.EVALUATE: _evaluate,
}


# --- evaluation ----------------------------------------------------------------------------
def evaluation_project(*, project: Project, queue_for_humans: bool = False) -> Project:
    """The companion project holding held-out comparisons, so they never enter the training snapshots; its
    leaderboard ranks every round's model. People join it only when evaluation tasks are queued for them."""
    slug = f"{project.slug}-eval"[:100]
    found = Project.objects.filter(slug=slug).first()
    if found is None:
        found = project_create(name=f"{project.name} · evaluation"[:200], slug=slug,
                               description=f"Held-out comparisons of the models trained in {project.name}.",
                               required_annotations=project.required_annotations,
                               settings={"evaluation_of": project.slug})
    members = Membership.objects.filter(project=project)
    if not queue_for_humans:
        members = members.filter(role__in=[Role.ADMIN, Role.ENGINEER])
    for membership in members.select_related("user"):
        if not Membership.objects.filter(project=found, user=membership.user).exists():
            membership_set(project=found, user=membership.user, role=membership.role)
    return found


def _eval_responses(backend, model: Model, prompts: list[Prompt], sampling: dict) -> list[Response]:
    """The model's answer to each held-out prompt, generated once and reused by later rounds."""
    digest = hashlib.sha256(json.dumps(sampling, sort_keys=True).encode()).hexdigest()[:12]
    key = f"eval:{model.pk}:{digest}"
    have = {r.prompt_id: r for r in Response.objects.filter(prompt__in=prompts, dedupe_key=key)}
    missing = [p for p in prompts if p.pk not in have]
    if missing:
        completions = backend.generate([p.messages for p in missing], 1, Sampling.from_dict(sampling))
        for prompt, (completion,) in zip(missing, completions):
            have[prompt.pk] = response_create(
                prompt=prompt, content=completion.text.replace("\x00", ""), origin=ResponseOrigin.GENERATED,
                model_name=model.name, dedupe_key=key,
                generation={"sampling": sampling, "completion_tokens": completion.completion_tokens,
                            "prompt_tokens": completion.prompt_tokens, "finish_reason": completion.finish_reason},
                metadata={"evaluation": True},
            )
    return [have[p.pk] for p in prompts]


def _sycophancy_of(model: Model, probes: list[dict], cache: dict) -> dict:
    if model.pk not in cache:
        cache[model.pk] = evaluation.policy_agreement(backend_for(model), probes)
    return cache[model.pk]


def evaluate_round(rnd: Round) -> dict:
    """Win rate of the new model against the round's policy on held-out prompts (AI judge, both orders), reward-model
    accuracy on the round's human labels, sycophancy of both policies and of the reward model, response lengths."""
    config, out, clock = rnd.config, {}, {}
    new, old = rnd.output_model, rnd.policy
    tick = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        clock[name] = round(clock.get(name, 0.0) + now - tick, 2)
        tick = now

    seed = config["seed"] + rnd.number
    # Lengths of what the policy generated this round (training candidates).
    generated = Response.objects.filter(prompt__project_id=rnd.project_id,
                                        dedupe_key__startswith=f"gen:{rnd.generation_job_id}:")
    texts, tokens = [], []
    for content, generation in generated.values_list("content", "generation"):
        texts.append(content)
        if isinstance((generation or {}).get("completion_tokens"), int):
            tokens.append(generation["completion_tokens"])
    out["lengths"] = {"policy_candidates": evaluation.length_summary(tokens, texts)}

    held = heldout_prompt_ids(project=rnd.project, count=config["eval_prompts"])
    out["heldout_prompts"] = len(held)
    if held:
        target = evaluation_project(project=rnd.project, queue_for_humans=config["queue_eval_for_humans"])
        prompts = [prompt_create(project=target, messages=p.messages, external_id=f"{rnd.project.slug}:{p.pk}")
                   for p in Prompt.objects.filter(pk__in=held).order_by("id")]
        sampling = {**config["eval_sampling"], "seed": config["seed"]}
        old_answers = _eval_responses(backend_for(old), old, prompts, sampling)
        new_answers = _eval_responses(backend_for(new), new, prompts, sampling)
        lap("heldout_generation")
        out["lengths"]["heldout_new"] = evaluation.length_summary(
            [r.generation.get("completion_tokens", 0) for r in new_answers], [r.content for r in new_answers])
        out["lengths"]["heldout_previous"] = evaluation.length_summary(
            [r.generation.get("completion_tokens", 0) for r in old_answers], [r.content for r in old_answers])
        tasks = []
        with transaction.atomic():
            for prompt, a, b in zip(prompts, new_answers, old_answers):
                tasks.append(task_create(
                    project=target, kind=TaskKind.PAIRWISE.value, prompt=prompt, responses=[a, b],
                    dedupe_key=f"eval:{rnd.pk}:{prompt.pk}",
                    metadata={"round": rnd.pk, "source_project": rnd.project.slug, "evaluation": True,
                              "models": [new.name, old.name]},
                ))
        out["evaluation_project"] = target.slug
        if rnd.judge is not None:
            judged = judging.compare_pairs(backend_for(rnd.judge),
                                           [(p.messages, a.content, b.content)
                                            for p, a, b in zip(prompts, new_answers, old_answers)],
                                           batch_size=config["judge_batch"])
            with transaction.atomic():
                labelled = set(Annotation.objects.filter(task__in=tasks, source=AnnotationSource.AI,
                                                         details__judge_model=rnd.judge.name).values_list("task_id", flat=True))
                _write_judgments(rnd, target, [(t, j) for t, j in zip(tasks, judged) if t.pk not in labelled])
            judgments = [j for j in judged if j.ok]
            lap("judge")
            out["win_rate"] = {**evaluation.win_rate([j.outcome for j in judgments], seed=seed),
                               "judge_errors": len(judged) - len(judgments),
                               "soft": round(sum(j.p for j in judgments) / max(1, len(judgments)), 4),
                               "judge": rnd.judge.name, "new": new.name, "previous": old.name, "both_orders": True,
                               "position_consistency": round(sum(
                                   not j.verdict.flipped for j in judgments) / max(1, len(judgments)), 4)}
        try:
            from annotation.quality.report import leaderboard_report

            board = leaderboard_report(project=target, n_resamples=200, seed=seed)
            out["leaderboard"] = [{k: m.get(k) for k in ("rank", "model", "rating", "low", "high", "games")}
                                  for m in board.get("models", [])]
        except Exception:  # figures must not fail a round that trained fine
            log.warning("leaderboard for round %s failed", rnd.pk, exc_info=True)
        lap("leaderboard")

    reward = rnd.reward_model
    scorer = new_scorer = None
    from training.trainers.scoring import RewardScorer

    human = human_preferences(rnd) if reward is not None or rnd.output_reward_model_id else []
    if reward is not None:
        scorer = RewardScorer(reward.path)
        out["reward_accuracy"] = {**evaluation.reward_accuracy(scorer, human, seed=seed), "reward_model": reward.name}
    if rnd.output_reward_model_id:
        new_scorer = RewardScorer(rnd.output_reward_model.path)
        out["reward_accuracy_new"] = {**evaluation.reward_accuracy(new_scorer, human, seed=seed),
                                      "reward_model": rnd.output_reward_model.name}
    lap("reward_accuracy")
    if config["probes"]:
        probes = evaluation.load_probes(limit=config["probe_limit"])
        cache: dict = {}
        previous = rnd.previous
        if previous is not None and previous.output_model_id == old.pk:
            before = (previous.evaluation or {}).get("sycophancy", {}).get("policy_after")
            if before:
                cache[old.pk] = before
        syco = {"probes": len(probes), "policy_before": _sycophancy_of(old, probes, cache),
                "policy_after": _sycophancy_of(new, probes, cache)}
        if scorer is not None:
            syco["reward_model"] = {**evaluation.reward_prefers_agreeable(scorer, probes, seed=seed),
                                    "reward_model": reward.name}
        if new_scorer is not None:
            syco["reward_model_new"] = {**evaluation.reward_prefers_agreeable(new_scorer, probes, seed=seed),
                                        "reward_model": rnd.output_reward_model.name}
        out["sycophancy"] = syco
        lap("sycophancy")
    out["seconds_by_part"] = clock
    return out


def human_win_rate(rnd: Round) -> dict | None:
    """The new model's win rate on the held-out comparisons as people judged them (majority per task; A is the new
    model's answer), or None while nobody has."""
    slug = (rnd.evaluation or {}).get("evaluation_project")
    if not slug:
        return None
    votes: dict[int, list[str]] = {}
    rows = Annotation.objects.filter(task__project__slug=slug, task__dedupe_key__startswith=f"eval:{rnd.pk}:",
                                     source=AnnotationSource.HUMAN, is_current=True)
    for task_id, payload in rows.values_list("task_id", "payload"):
        votes.setdefault(task_id, []).append((payload or {}).get("choice"))
    if not votes:
        return None
    outcomes = []
    for choices in votes.values():
        a, b = choices.count("A"), choices.count("B")
        outcomes.append(1.0 if a > b else 0.0 if b > a else 0.5)
    return evaluation.win_rate(outcomes, seed=rnd.number)


def human_preferences(rnd: Round) -> list[tuple[list, str, str]]:
    """(prompt messages, chosen, rejected) for each round task with a strict human A/B majority."""
    votes: dict[int, list[str]] = {}
    rows = Annotation.objects.filter(task__in=round_tasks(rnd), source=AnnotationSource.HUMAN, is_current=True)
    for task_id, payload in rows.values_list("task_id", "payload"):
        votes.setdefault(task_id, []).append((payload or {}).get("choice"))
    out = []
    tasks = Task.objects.filter(pk__in=votes).select_related("prompt").prefetch_related("task_responses__response")
    for task in tasks:
        a, b = votes[task.pk].count("A"), votes[task.pk].count("B")
        if a == b:
            continue
        responses = [tr.response.content for tr in sorted(task.task_responses.all(), key=lambda tr: tr.position)]
        chosen, rejected = (responses[0], responses[1]) if a > b else (responses[1], responses[0])
        out.append((task.prompt.messages, chosen, rejected))
    return out


# --- upkeep --------------------------------------------------------------------------------
def rounds_reconcile(*, now: datetime | None = None) -> dict:
    """No round stays running without a worker (`runtime.reconcile`): one whose worker stopped beating is handed
    to a new message (or failed past JOB_MAX_ATTEMPTS); one waiting for a message that never came (past its due
    time) gets another."""
    return runtime.reconcile(ROUNDS, now=now)


# --- reads ---------------------------------------------------------------------------------
def rounds_for(*, project: Project):
    return Round.objects.filter(project=project).select_related(
        "policy", "judge", "reward_model", "output_model", "output_reward_model", "generation_job", "snapshot",
        "training_run", "reward_run", "created_by").order_by("-number")


def round_get(*, project: Project, number: int) -> Round | None:
    return rounds_for(project=project).filter(number=number).first()


def round_lineage(rnd: Round) -> dict:
    """model → generation job → tasks → annotations → snapshot sha256 → run → model, as counts and links."""
    tasks = round_tasks(rnd)
    annotations = Annotation.objects.filter(task__in=tasks, is_current=True)
    by_source = {s: annotations.filter(source=s).count() for s in AnnotationSource.values}
    reasons: dict[str, int] = {}
    for meta in tasks.values_list("metadata", flat=True):
        reason = ((meta or {}).get("selection") or {}).get("reason", "?")
        reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "policy": rnd.policy.name,
        "generation_job": rnd.generation_job_id,
        "responses": Response.objects.filter(prompt__project_id=rnd.project_id,
                                             dedupe_key__startswith=f"gen:{rnd.generation_job_id}:").count()
        if rnd.generation_job_id else 0,
        "tasks": tasks.count(),
        "selection": reasons,
        "annotations": by_source,
        "snapshot": rnd.snapshot_id,
        "snapshot_sha256": rnd.snapshot_sha256,
        "snapshot_rows": rnd.snapshot.row_count if rnd.snapshot_id else None,
        "training_run": rnd.training_run_id,
        "reward_run": rnd.reward_run_id,
        "output_model": rnd.output_model.name if rnd.output_model_id else None,
        "output_reward_model": rnd.output_reward_model.name if rnd.output_reward_model_id else None,
        "next_round": getattr(getattr(rnd, "next_round", None), "number", None),
    }


def rounds_series(*, project: Project) -> list[dict]:
    """One row per finished round for the charts: win rate with its interval, lengths, sycophancy, RM accuracy."""
    rows = []
    for rnd in Round.objects.filter(project=project).order_by("number"):
        e = rnd.evaluation or {}
        win = e.get("win_rate") or {}
        syco = e.get("sycophancy") or {}
        rows.append({
            "number": rnd.number, "status": rnd.status,
            "win_rate": win.get("estimate"), "win_low": win.get("low"), "win_high": win.get("high"),
            "length_tokens": ((e.get("lengths") or {}).get("policy_candidates") or {}).get("mean_tokens"),
            "length_heldout": ((e.get("lengths") or {}).get("heldout_new") or {}).get("mean_tokens"),
            "policy_agrees": (syco.get("policy_after") or {}).get("estimate"),
            "reward_prefers_agreeable": (syco.get("reward_model") or {}).get("estimate"),
            "reward_accuracy": (e.get("reward_accuracy") or {}).get("estimate"),
            "stage_seconds": {k: v.get("seconds") for k, v in (rnd.stage_times or {}).items()},
        })
    return rows


__all__ = [
    "DEFAULT_CONFIG", "evaluate_round", "heldout_prompt_ids", "human_preferences", "round_advance_now",
    "round_cancel", "round_config", "round_create", "round_lineage", "round_tasks", "rounds_for", "rounds_reconcile",
    "rounds_series",
]
