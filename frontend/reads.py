"""Queries behind the web pages. Every one is scoped by the caller's membership or project."""

import statistics
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from annotation.models import (
    Annotation,
    AnnotationSource,
    Assignment,
    AssignmentState,
    ConstitutionVersion,
    DatasetSnapshot,
    GuidelineVersion,
    Membership,
    Principle,
    Project,
    Task,
    TaskKind,
    TaskResponse,
    TaskStatus,
)
from annotation.payloads import DEFAULT_ASPECTS

# Memberships and projects


def membership_for(*, user, slug: str) -> Membership | None:
    if not user.is_authenticated:
        return None
    return (
        Membership.objects.filter(user=user, project__slug=slug)
        .select_related("project", "project__current_guideline")
        .first()
    )


def my_projects(*, user) -> list[dict]:
    """The user's projects, each with the project's task totals and the user's own progress."""
    memberships = list(Membership.objects.filter(user=user).select_related("project").order_by("project__name"))
    ids = [m.project_id for m in memberships]
    totals = {
        row["project"]: row
        for row in Task.objects.filter(project_id__in=ids)
        .exclude(status=TaskStatus.ARCHIVED)
        .values("project")
        .annotate(total=Count("id"), complete=Count("id", filter=Q(status=TaskStatus.COMPLETE)))
    }
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    mine = {
        row["task__project"]: row
        for row in Annotation.objects.filter(
            author=user, task__project_id__in=ids, is_review=False, supersedes__isnull=True
        )
        .values("task__project")
        .annotate(done=Count("id"), today=Count("id", filter=Q(created_at__gte=today)))
    }
    result = []
    for m in memberships:
        t = totals.get(m.project_id, {})
        me = mine.get(m.project_id, {})
        total = t.get("total", 0)
        result.append(
            {
                "membership": m,
                "project": m.project,
                "role": m.role,
                "total": total,
                "complete": t.get("complete", 0),
                "percent": round(100 * t.get("complete", 0) / total) if total else 0,
                "my_done": me.get("done", 0),
                "my_today": me.get("today", 0),
            }
        )
    return result


def project_aspects(project: Project) -> list[str]:
    return list(project.settings.get("aspects") or DEFAULT_ASPECTS)


def members(*, project: Project) -> list[Membership]:
    return list(project.memberships.select_related("user").order_by("role", "user__username"))


def user_by_username(username: str):
    return get_user_model().objects.filter(username=username).first()


# The work page


def _task_bundle(task_id: int, shown_order: list[int]) -> dict:
    # One query: the task and prompt ride along with each response row (a task without
    # responses, a blank demonstration, needs a second one).
    rows = list(TaskResponse.objects.filter(task_id=task_id).select_related("response", "task__prompt"))
    task = rows[0].task if rows else Task.objects.select_related("prompt").get(pk=task_id)
    by_position = {tr.position: tr.response for tr in rows}
    order = shown_order or sorted(by_position)
    return {"task": task, "prompt": task.prompt, "responses": [by_position[p] for p in order if p in by_position]}


def task_for_assignment(*, assignment: Assignment) -> dict:
    """The task of an assignment with its responses in the order this person sees them."""
    return _task_bundle(assignment.task_id, assignment.shown_order)


def task_for_annotation(*, annotation: Annotation) -> dict:
    """The task of an annotation with its responses in the order its author saw them."""
    return _task_bundle(annotation.task_id, annotation.shown_order)


def my_done_count(*, user, project: Project) -> int:
    return Annotation.objects.filter(
        author=user, task__project=project, is_review=False, supersedes__isnull=True
    ).count()


def my_assignment(*, user, project: Project, assignment_id: int) -> Assignment | None:
    return Assignment.objects.filter(pk=assignment_id, annotator=user, project=project).select_related("task").first()


# My work


def my_annotations(*, user, project: Project, limit: int = 200) -> list[Annotation]:
    return list(
        Annotation.objects.filter(author=user, task__project=project, is_current=True)
        .select_related("task", "task__prompt")
        .order_by("-created_at")[:limit]
    )


def my_annotation(*, user, project: Project, annotation_id: int) -> Annotation | None:
    return (
        Annotation.objects.filter(pk=annotation_id, author=user, task__project=project)
        .select_related("task", "task__prompt")
        .first()
    )


def revision_chain(*, annotation: Annotation) -> list[Annotation]:
    """The annotation and the ones it superseded, newest first."""
    chain = [annotation]
    current = annotation
    while current.supersedes_id is not None and len(chain) < 100:
        current = Annotation.objects.select_related("author").get(pk=current.supersedes_id)
        chain.append(current)
    return chain


# Guidelines and constitution


def guideline_versions(*, project: Project) -> list[GuidelineVersion]:
    return list(project.guideline_versions.select_related("created_by").order_by("-number"))


def guideline_version(*, project: Project, number) -> GuidelineVersion | None:
    try:
        number = int(number)
    except (TypeError, ValueError):
        return None
    return project.guideline_versions.filter(number=number).first()


def constitution_versions(*, project: Project) -> list[ConstitutionVersion]:
    return list(
        project.constitution_versions.select_related("created_by")
        .annotate(n_principles=Count("principles"))
        .order_by("-number")
    )


def constitution_version(*, project: Project, number) -> ConstitutionVersion | None:
    try:
        number = int(number)
    except (TypeError, ValueError):
        return None
    return project.constitution_versions.filter(number=number).first()


def principles(*, version: ConstitutionVersion | None) -> list[Principle]:
    if version is None:
        return []
    return list(version.principles.order_by("position"))


# Dashboard


def dashboard(*, project: Project, days: int = 30) -> dict:
    per_kind = {
        row["kind"]: row
        for row in Task.objects.filter(project=project)
        .exclude(status=TaskStatus.ARCHIVED)
        .values("kind")
        .annotate(total=Count("id"), complete=Count("id", filter=Q(status=TaskStatus.COMPLETE)))
    }
    kinds = [k for k in TaskKind.values if k in per_kind]
    human = Annotation.objects.filter(task__project=project, source=AnnotationSource.HUMAN, supersedes__isnull=True)
    since = (timezone.now() - timedelta(days=days - 1)).date()
    by_day = {
        row["day"]: row["n"]
        for row in human.filter(created_at__date__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("id"))
    }
    day_labels = [since + timedelta(days=i) for i in range(days)]
    per_annotator = list(
        human.values("author__username").annotate(n=Count("id")).order_by("-n", "author__username")[:50]
    )
    # Median of the most recent submissions per kind; a bounded sample keeps the page fast.
    medians = {}
    for kind in kinds:
        values = list(
            human.filter(kind=kind, seconds_spent__isnull=False)
            .order_by("-id")
            .values_list("seconds_spent", flat=True)[:5000]
        )
        medians[kind] = round(statistics.median(values), 1) if values else None
    skipped = Assignment.objects.filter(project=project, state=AssignmentState.SKIPPED).count()
    active = Assignment.objects.filter(
        project=project, state=AssignmentState.ACTIVE, leased_until__gt=timezone.now()
    ).count()
    return {
        "kinds": [
            {
                "kind": k,
                "total": per_kind[k]["total"],
                "complete": per_kind[k]["complete"],
                "median_seconds": medians.get(k),
            }
            for k in kinds
        ],
        "days": [{"day": d.isoformat(), "n": by_day.get(d, 0)} for d in day_labels],
        "annotators": [{"username": r["author__username"] or "(deleted)", "n": r["n"]} for r in per_annotator],
        "total_tasks": sum(per_kind[k]["total"] for k in kinds),
        "complete_tasks": sum(per_kind[k]["complete"] for k in kinds),
        "annotations": human.count(),
        "skipped": skipped,
        "active": active,
    }


# Review


def review_queue(
    *, project: Project, kind: str = "", author: str = "", status: str = "pending", limit: int = 100
) -> list[Annotation]:
    qs = Annotation.objects.filter(task__project=project, is_current=True, source=AnnotationSource.HUMAN)
    if kind:
        qs = qs.filter(kind=kind)
    if author:
        qs = qs.filter(author__username=author)
    if status == "pending":
        qs = qs.filter(is_review=False).exclude(details__has_key="review")
    elif status == "reviewed":
        qs = qs.filter(Q(is_review=True) | Q(details__has_key="review"))
    return list(qs.select_related("author", "task", "task__prompt").order_by("-id")[:limit])


def project_annotation(*, project: Project, annotation_id: int) -> Annotation | None:
    return (
        Annotation.objects.filter(pk=annotation_id, task__project=project)
        .select_related("author", "task", "task__prompt")
        .first()
    )


def other_annotations(*, annotation: Annotation) -> list[Annotation]:
    """Other current annotations of the same task (for a reviewer to compare)."""
    return list(
        Annotation.objects.filter(task_id=annotation.task_id, is_current=True)
        .exclude(pk=annotation.pk)
        .select_related("author")
        .order_by("id")
    )


# Snapshots


def snapshots(*, project: Project) -> list[DatasetSnapshot]:
    return list(project.snapshots.select_related("created_by").order_by("-created_at"))


def snapshot(*, project: Project, snapshot_id: int) -> DatasetSnapshot | None:
    return project.snapshots.filter(pk=snapshot_id).first()
