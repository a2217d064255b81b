"""Queries behind the web pages. Every one is scoped by the caller's membership or project."""

import statistics
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db.models import Count, Prefetch, Q
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


REVIEW_MAX_CONFIDENCE = 0.8


def review_max_confidence(project: Project) -> float:
    """The project's `review_max_confidence` setting: tasks whose aggregated label is at most this
    probable go to reviewers first."""
    try:
        value = float((project.settings or {}).get("review_max_confidence", REVIEW_MAX_CONFIDENCE))
    except (TypeError, ValueError):
        return REVIEW_MAX_CONFIDENCE
    return min(max(value, 0.0), 1.0)


def disputed_tasks(*, project: Project, kind: str = "", limit: int = 50) -> list[dict]:
    """Tasks whose raters disagree beyond the project's threshold (Dawid-Skene confidence at most
    `review_max_confidence`), least certain first, leaving out tasks a reviewer has corrected or
    accepted an annotation of.
    Each: task id, kind, label, majority, confidence, ratings, prompt, and the annotation to open."""
    from annotation.quality.aggregation import review_candidates

    threshold = review_max_confidence(project)
    kinds = [k for k in (TaskKind.PAIRWISE, TaskKind.RATING) if not kind or kind == k]
    found = []
    for k in kinds:
        if not Annotation.objects.filter(task__project=project, kind=k, is_current=True).exists():
            continue
        for c in review_candidates(project=project, kind=k, max_confidence=threshold, limit=limit + 500):
            found.append({**c, "kind": k})
    if not found:
        return []
    ids = [c["task_id"] for c in found]
    # A reviewer has settled the task: a correction, or an accepted annotation.
    corrected = set(
        Annotation.objects.filter(task_id__in=ids, is_current=True)
        .filter(Q(is_review=True) | Q(details__has_key="review"))
        .values_list("task_id", flat=True)
    )
    first = {}
    for a in (
        Annotation.objects.filter(task_id__in=ids, is_current=True, source=AnnotationSource.HUMAN)
        .select_related("task__prompt")
        .order_by("id")
    ):
        first.setdefault(a.task_id, a)
    out = []
    for c in sorted(found, key=lambda c: c["confidence"]):
        if c["task_id"] in corrected or c["task_id"] not in first:
            continue
        out.append({**c, "annotation": first[c["task_id"]]})
    return out[:limit]


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


# Quality


def _figure(block: dict | None, label: str, kind: str) -> dict | None:
    """One agreement figure with its bootstrap interval: alpha at the block's first level."""
    if not block:
        return None
    alpha = block.get("alpha") or {}
    level, ci = next(iter(alpha.items()), (None, None))
    if ci is None:
        ci, level = block.get("kendall_w"), "Kendall's W"
    if not ci or ci.get("estimate") is None:
        return None
    return {
        "label": label,
        "kind": kind,
        "measure": f"Krippendorff's alpha ({level})" if level != "Kendall's W" else level,
        "estimate": ci["estimate"],
        "low": ci.get("low"),
        "high": ci.get("high"),
        "ratings": block.get("ratings"),
        "percent_agreement": (block.get("percent_agreement") or {}).get("estimate"),
    }


def _weighted(rows: list[tuple[float | None, float | None]]) -> float | None:
    pairs = [(v, w) for v, w in rows if v is not None and w]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


def quality(*, project: Project, n_resamples: int = 200) -> dict:
    """Chart-ready quality figures from the project's quality report: agreement per kind (with
    intervals), per-annotator agreement with the majority and gold accuracy, and the model leaderboard."""
    from annotation.quality.report import quality_report

    report = quality_report(project=project, n_resamples=n_resamples)
    kinds = report["kinds"]
    blocks = []  # (label, kind, block) for every categorical figure
    if kinds.get("pairwise"):
        blocks.append(("Pairwise choice", "pairwise", kinds["pairwise"].get("choice")))
    rating = kinds.get("rating") or {}
    if rating.get("thumb"):
        blocks.append(("Rating thumb", "rating", rating["thumb"]))
    for aspect, block in (rating.get("aspects") or {}).items():
        blocks.append((f"Rating: {aspect}", "rating", block))
    if kinds.get("steps"):
        blocks.append(("Step labels", "steps", kinds["steps"].get("labels")))
    agreement = [f for f in (_figure(b, label, kind) for label, kind, b in blocks) if f]
    if kinds.get("ranking") and kinds["ranking"].get("kendall_w"):
        ranking = kinds["ranking"]
        f = _figure({"kendall_w": ranking["kendall_w"], "ratings": ranking.get("ratings")}, "Ranking", "ranking")
        if f:
            agreement.append(f)

    # Per annotator: agreement with the majority (weighted by ratings) and gold accuracy (weighted
    # by gold items) over the categorical figures that carry them.
    people: dict[str, dict] = {}
    for label, kind, block in blocks:
        for row in (block or {}).get("annotators", []):
            p = people.setdefault(
                row["key"], {"annotator": row["annotator"], "source": row["source"], "agree": [], "gold": [], "ratings": 0}
            )
            p["ratings"] += row.get("ratings") or 0
            p["agree"].append((row.get("majority_agreement"), row.get("ratings")))
            p["gold"].append((row.get("gold_accuracy"), row.get("gold_items")))
    annotators = []
    for key, p in people.items():
        annotators.append(
            {
                "key": key,
                "annotator": p["annotator"],
                "source": p["source"],
                "ratings": p["ratings"],
                "majority_agreement": _weighted(p["agree"]),
                "gold_accuracy": _weighted(p["gold"]),
                "gold_items": sum(w or 0 for v, w in p["gold"] if v is not None),
            }
        )
    annotators.sort(key=lambda a: (-a["ratings"], a["annotator"]))
    board = report.get("leaderboard") or {}
    return {
        "agreement": agreement,
        "annotators": annotators,
        "leaderboard": board.get("models") or [],
        "leaderboard_votes": board.get("votes", 0),
        "bootstrap": report["bootstrap"],
    }


def annotator_stats(*, project: Project) -> list[dict]:
    """Per human annotator: annotations by kind, median seconds, agreement with the majority and
    gold accuracy (from the quality report)."""
    human = Annotation.objects.filter(task__project=project, source=AnnotationSource.HUMAN, supersedes__isnull=True)
    counts: dict[str, dict] = {}
    for row in human.values("author__username", "kind").annotate(n=Count("id")):
        name = row["author__username"] or "(deleted)"
        counts.setdefault(name, {})[row["kind"]] = row["n"]
    seconds: dict[str, list[float]] = {}
    for name, s in (
        human.filter(seconds_spent__isnull=False).order_by("-id").values_list("author__username", "seconds_spent")[:20000]
    ):
        seconds.setdefault(name or "(deleted)", []).append(s)
    figures = {a["annotator"]: a for a in quality(project=project)["annotators"] if a["source"] == AnnotationSource.HUMAN}
    out = []
    for name in sorted(set(counts) | set(figures)):
        f = figures.get(name, {})
        by_kind = counts.get(name, {})
        out.append(
            {
                "username": name,
                "annotations": sum(by_kind.values()),
                "by_kind": [{"kind": k, "n": by_kind[k]} for k in TaskKind.values if k in by_kind],
                "median_seconds": round(statistics.median(seconds[name]), 1) if seconds.get(name) else None,
                "majority_agreement": f.get("majority_agreement"),
                "gold_accuracy": f.get("gold_accuracy"),
                "gold_items": f.get("gold_items", 0),
            }
        )
    out.sort(key=lambda a: (-a["annotations"], a["username"]))
    return out


# The task browser


def task_browser_rows(*, tasks) -> list[dict]:
    """One page of the task browser: each task with its prompt's first words and its responses' models."""
    page = list(tasks.select_related("prompt").prefetch_related(
        Prefetch("task_responses", queryset=TaskResponse.objects.select_related("response").only(
            "task_id", "position", "response__model_name"))))
    rows = []
    for task in page:
        messages = task.prompt.messages or []
        first = next((m.get("content", "") for m in messages if m.get("role") == "user"), "")
        models = sorted({tr.response.model_name for tr in task.task_responses.all() if tr.response.model_name})
        rows.append({"task": task, "prompt": first[:160] + ("…" if len(first) > 160 else ""), "models": models,
                     "tags": task.prompt.tags or []})
    return rows
