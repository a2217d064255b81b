"""The stages of a round, one function each: generate → select → label → export → train → evaluate.

Each takes the round its worker holds and that worker's owner token. A stage that must wait (for the generation
job, the training runs or people's labels) raises `runtime.Wait`; one that cannot go on raises RoundFailed; one
that finds the round taken from its worker raises LostClaim. Each is idempotent: what it creates is linked on the
row in the same transaction, and a second call picks up what the first one left.
"""

from __future__ import annotations

import time

import numpy as np
from django.conf import settings
from django.db import transaction

from annotation.models import Annotation, AnnotationSource, Prompt, Response, SnapshotFormat, Task, TaskKind
from annotation.services import task_create
from annotation.services.exports import snapshot_create

from ..backends import backend_for
from ..feedback.labels import label_tasks
from ..feedback.rater import ai_rater_ensure, task_views, write_direct
from ..jobs.runtime import LostClaim, Wait
from ..models import CandidateTasks, JobStatus, Model, TrainingMethod
from ..services.generation import generation_job_create
from ..services.runs import training_run_create, training_run_relaunch
from . import judging, selection
from .config import RoundConfig
from .evaluation import evaluate_round, score_texts
from .models import LabelMode, Round, RoundStage, RoundStatus
from .selectors import round_tasks

RUN_RELAUNCHES = 2  # times a round relaunches a training run whose worker died


def poll_seconds() -> float:
    return float(getattr(settings, "ROUND_POLL_SECONDS", 5))


def human_poll_seconds() -> float:
    return float(getattr(settings, "ROUND_HUMAN_POLL_SECONDS", 30))


class RoundFailed(Exception):
    """The round cannot go on (a failed job or run, nothing to train on)."""


def _wait(why: str, seconds: float) -> Wait:
    """Let go of the round while it waits for `why`; a message due in `seconds` looks again."""
    return Wait(seconds, status=RoundStatus.WAITING, waiting_for=why[:300])


def _generate(rnd: Round, owner: str) -> None:
    job, config = rnd.generation_job, RoundConfig.stored(rnd.config)
    if job is None:
        with transaction.atomic():
            job = generation_job_create(
                project=rnd.project, model=rnd.policy, created_by=rnd.created_by,
                prompt_filter={"ids": rnd.prompt_ids}, n=config.n,
                sampling={**config.sampling, "seed": config.seed + rnd.number * 1000},
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
    config = RoundConfig.stored(rnd.config)
    policy = selection.SelectionPolicy.from_settings(config.selection)
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
        matrix = score_texts(scorer, [prompts[r.prompt_id] for r in flat], [r.content for r in flat]).numpy()
        column = {r.pk: k for k, r in enumerate(flat)}
        scores = (matrix[:, [column[a.pk] for _, a, _ in pairs]], matrix[:, [column[b.pk] for _, _, b in pairs]])
    applied = selection.resolve_policy(policy.policy, members)
    uncertainty = (selection.pair_uncertainty(scores[0], scores[1], applied) if applied != "random"
                   else np.zeros(len(pairs)))
    budget = len(by_prompt) * policy.pairs_per_prompt
    chosen = selection.select(uncertainty, budget, 1.0 if applied == "random" else policy.random_fraction,
                              seed=config.seed + rnd.pk)
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
    batch = RoundConfig.stored(rnd.config).judge_batch
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
            judging.write_judgments(rnd, rnd.project, zip(chunk, judgments))


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
    config = RoundConfig.stored(rnd.config)
    if rnd.training_run is None:
        with transaction.atomic():
            run = training_run_create(project=rnd.project, method=config.method, base_model=rnd.policy,
                                      snapshot=rnd.snapshot, hyperparameters=config.hyperparameters,
                                      created_by=rnd.created_by)
            reward_run = None
            if config.reward_base:
                # Plain-string rows: an encoder reward model (MiniLM) has no chat template to render messages.
                reward_snapshot = snapshot_create(project=rnd.project, format=SnapshotFormat.PREFERENCE.value,
                                                  style="standard", sources=_sources(rnd), created_by=rnd.created_by)
                reward_run = training_run_create(
                    project=rnd.project, method=TrainingMethod.REWARD.value,
                    base_model=Model.objects.get(name=config.reward_base), snapshot=reward_snapshot,
                    hyperparameters=config.reward_hyperparameters, created_by=rnd.created_by)
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
