"""Reads of rounds: a project's rounds and the figures across them, one round with its lineage, its tasks, the last
model the loop trained, and which prompts a round trains on and which are held out for evaluation."""

from __future__ import annotations

from annotation.models import Annotation, AnnotationSource, Project, Prompt, Response, Task

from ..models import Model
from .config import RoundConfig
from .models import Round, RoundStatus

HELDOUT_TAG = "heldout"


def rounds_for(*, project: Project):
    return Round.objects.filter(project=project).select_related(
        "policy", "judge", "reward_model", "output_model", "output_reward_model", "generation_job", "snapshot",
        "training_run", "reward_run", "created_by").order_by("-number")


def round_get(*, project: Project, number: int) -> Round | None:
    return rounds_for(project=project).filter(number=number).first()


def round_tasks(rnd: Round):
    return Task.objects.filter(project_id=rnd.project_id, dedupe_key__startswith=rnd.task_key)


def latest_output_model(*, project: Project) -> Model | None:
    last = Round.objects.filter(project=project, status=RoundStatus.SUCCEEDED, output_model__isnull=False).order_by("-number").first()
    return last.output_model if last else None


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


def training_prompt_ids(project: Project, config: RoundConfig, used_before: int) -> list[int]:
    """The next round's training prompts: the next `prompts_per_round` of the pool that is not held out, after the
    `used_before` earlier rounds took theirs (wrapping around)."""
    held = set(heldout_prompt_ids(project=project, count=config.eval_prompts))
    pool = [pk for pk in Prompt.objects.filter(project=project).order_by("id").values_list("id", flat=True) if pk not in held]
    if not pool:
        return []
    k = min(config.prompts_per_round, len(pool))
    start = used_before % len(pool)
    return [pool[(start + i) % len(pool)] for i in range(k)]


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
