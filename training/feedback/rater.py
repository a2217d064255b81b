"""The AI rater: a project member of its own kind that writes the judge's labels as `source=ai` annotations.

Two ways to label, chosen by the membership's `counts_toward_overlap`:

* counting toward overlap: the rater takes tasks through the same queue as people
  (`annotation.services.task_next_for`) and submits through `annotation_submit`; its label takes one of the
  task's `required` slots. Tasks the queue is about to hand out are judged ahead in one batch, so the queue
  still decides and the judge still batches.
* beside the people (the default): labels are written straight onto tasks, with no assignment, so they never
  take a slot a person would have had and leave the queue's counters alone.

Either way a rater has at most one current label per task (a database constraint): labelling again under a
newer constitution version supersedes its earlier label (kept, not current), and under the same version does
nothing. Every AI annotation's `details` hold the judge model, principle, constitution version, both orders'
probabilities and the prompt used.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef

from annotation.models import (
    Annotation,
    AnnotationSource,
    Assignment,
    ConstitutionVersion,
    Membership,
    Project,
    Role,
    Task,
    TaskResponse,
    TaskStatus,
)
from annotation.services import ai_annotation_write, annotation_submit, assignment_skip, membership_set, task_next_for
from common.errors import Conflict

from .labels import JUDGEABLE, Label, TaskView, label_tasks

LABEL_NAMESPACE = uuid.UUID("5b0f6a52-3c1e-4f8e-9a57-2f3cf4b0a6d1")


def rater_username(model_name: str) -> str:
    return ("ai-" + re.sub(r"[^A-Za-z0-9.@+_-]+", "-", model_name).strip("-"))[:150]


@transaction.atomic
def ai_rater_ensure(*, project: Project, model_name: str, counts_toward_overlap: bool = False):
    """The AI rater for this judge model in this project (a user that cannot sign in), created once.

    Its membership is an annotator's, flagged `is_ai`; `counts_toward_overlap` is updated to what is asked.
    """
    User = get_user_model()
    user, created = User.objects.get_or_create(username=rater_username(model_name))
    if created:
        user.set_unusable_password()
        user.first_name = "AI"
        user.last_name = model_name[:150]
        user.save(update_fields=["password", "first_name", "last_name"])
    membership = Membership.objects.filter(project=project, user=user).first()
    if membership is None or membership.role != Role.ANNOTATOR:
        membership_set(project=project, user=user, role=Role.ANNOTATOR)
    Membership.objects.filter(project=project, user=user).update(is_ai=True, counts_toward_overlap=counts_toward_overlap)
    return user


def label_client_id(*, rater_id: int, task_id: int, constitution_id: int | None) -> uuid.UUID:
    """One label per (rater, task, constitution version, or none): a retried job finds its earlier label."""
    return uuid.uuid5(LABEL_NAMESPACE, f"{rater_id}:{task_id}:{constitution_id}")


def task_views(task_ids: list[int]) -> list[TaskView]:
    """What each task shows, in the order asked (tasks that no longer exist are left out)."""
    tasks = Task.objects.select_related("prompt").in_bulk(task_ids)
    texts: dict[int, list] = {}
    for task_id, content, steps in (
        TaskResponse.objects.filter(task_id__in=task_ids)
        .order_by("task_id", "position")
        .values_list("task_id", "response__content", "response__steps")
    ):
        texts.setdefault(task_id, []).append((content, steps or []))
    views = []
    for task_id in task_ids:
        t = tasks.get(task_id)
        if t is None:
            continue
        responses = texts.get(task_id, [])
        views.append(TaskView(
            id=t.pk, kind=t.kind, messages=t.prompt.messages, responses=[r[0] for r in responses],
            steps=responses[0][1] if responses else [],
        ))
    return views


@dataclass
class Written:
    labelled: int = 0
    skipped: int = 0  # already labelled under this version, or not judgeable
    failed: list | None = None

    def __post_init__(self):
        self.failed = self.failed or []


def label_details(label: Label, *, model_name: str, constitution: ConstitutionVersion | None,
                  job_id: int | None = None, round_id: int | None = None) -> dict:
    """The provenance every AI label stores, whoever asked for it (a feedback job, a round)."""
    return {
        **label.details,
        "judge_model": model_name,
        "principle": label.principle,
        "constitution_version": constitution.number if constitution else None,
        "constitution_version_id": constitution.pk if constitution else None,
        "feedback_job": job_id,
        "round": round_id,
    }


def _shown(payload: dict, kind: str, order: list[int]) -> dict:
    """A canonical payload as the rater 'saw' it in the assignment's shown order (what submit expects)."""
    if kind == "pairwise" and payload.get("choice") in ("A", "B"):
        return {**payload, "choice": "AB"[order.index("AB".index(payload["choice"]))]}
    if kind == "ranking":
        return {"order": [[order.index(p) for p in group] for group in payload["order"]]}
    return payload


def write_direct(*, rater, labels: list[Label], model_name: str, constitution: ConstitutionVersion | None,
                 job_id: int | None = None, round_id: int | None = None) -> Written:
    """Write labels straight onto their tasks (`annotation.services.ai_annotation_write`: no assignment, no slot
    taken). Idempotent per (rater, task, constitution version); a label from an older version is superseded."""
    out = Written()
    tasks = Task.objects.select_related("project").in_bulk([l.task_id for l in labels])
    for label in labels:
        task = tasks.get(label.task_id)
        if task is None:
            continue
        if label.payload is None:
            out.failed.append({"item": label.task_id, "error": label.error})
            continue
        written = ai_annotation_write(
            task=task, rater=rater, payload=label.payload, constitution=constitution,
            client_id=label_client_id(rater_id=rater.pk, task_id=task.pk,
                                      constitution_id=constitution.pk if constitution else None),
            details=label_details(label, model_name=model_name, constitution=constitution, job_id=job_id,
                                  round_id=round_id),
        )
        if written is None:
            out.skipped += 1
        else:
            out.labelled += 1
    return out


def open_tasks_for(*, project: Project, rater, limit: int, task_ids: list[int] | None = None) -> list[int]:
    """The open, judgeable tasks the queue could hand this rater next, in the queue's order (a read only)."""
    had = Assignment.objects.filter(task=OuterRef("pk"), annotator=rater)
    qs = Task.objects.filter(project=project, open_slots__gt=0, status=TaskStatus.OPEN, kind__in=JUDGEABLE)
    if task_ids is not None:
        qs = qs.filter(pk__in=task_ids)
    return list(qs.filter(~Exists(had)).order_by("-priority", "id").values_list("id", flat=True)[:limit])


def label_through_queue(
    *, backend, project: Project, rater, principles, constitution: ConstitutionVersion, model_name: str,
    limit: int, seed, cot: bool = False, ranking_subset: str = "all", job_id: int | None = None,
    batch_size: int = 16,
) -> Written:
    """Take up to `limit` tasks through the queue as `rater` and submit a label for each (source=ai).

    The tasks the queue will most likely hand out next are judged first in one batch; a task it hands out
    that was not judged ahead is judged alone. A task the judge cannot label is skipped (given back).
    """
    out = Written()
    ahead = {l.task_id: l for l in label_tasks(
        backend, task_views(open_tasks_for(project=project, rater=rater, limit=limit)), principles,
        seed=seed, cot=cot, ranking_subset=ranking_subset, aspects=project.aspects, batch_size=batch_size,
    )}
    for _ in range(limit):
        assignment = task_next_for(annotator=rater, project=project)
        if assignment is None:
            break
        task = assignment.task
        label = ahead.pop(task.pk, None)
        if label is None and task.kind in JUDGEABLE:
            label = label_tasks(backend, task_views([task.pk]), principles, seed=seed, cot=cot,
                                ranking_subset=ranking_subset, aspects=project.aspects)[0]
        if Annotation.objects.filter(task=task, author=rater, source=AnnotationSource.AI, is_current=True).exists():
            # Labelled beside the people earlier: never a second label for the same task.
            assignment_skip(assignment=assignment, annotator=rater, reason="already labelled by this AI rater")
            out.skipped += 1
            continue
        if label is None or label.payload is None:
            assignment_skip(assignment=assignment, annotator=rater, reason="the AI judge cannot label this task")
            if label is not None:
                out.failed.append({"item": task.pk, "error": label.error})
            else:
                out.skipped += 1
            continue
        client_id = label_client_id(rater_id=rater.pk, task_id=task.pk, constitution_id=constitution.pk)
        with transaction.atomic():
            try:
                annotation = annotation_submit(
                    assignment=assignment, annotator=rater, client_id=client_id,
                    payload=_shown(label.payload, task.kind, list(assignment.shown_order)),
                )
            except Conflict as exc:
                out.failed.append({"item": task.pk, "error": exc.message})
                continue
            Annotation.objects.filter(pk=annotation.pk).update(
                source=AnnotationSource.AI, constitution_version=constitution,
                details=label_details(label, model_name=model_name, constitution=constitution, job_id=job_id),
            )
        out.labelled += 1
    return out
