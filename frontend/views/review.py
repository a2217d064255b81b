"""Review: a reviewer reads an annotation with its task, and accepts it or writes a correction."""

import uuid

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotation.models import TaskKind
from annotation.services.review import annotation_accept
from common.errors import DomainError

from .. import reads
from ..access import REVIEWERS, project_view
from .common import revise_from_post, shown_state, task_context


@project_view(REVIEWERS)
def review_list(request, project):
    kind = request.GET.get("kind", "")
    if kind not in TaskKind.values:
        kind = ""
    status = request.GET.get("status", "pending")
    if status not in ("pending", "reviewed", "all"):
        status = "pending"
    author = request.GET.get("author", "")[:150]
    annotations = reads.review_queue(project=project, kind=kind, author=author, status=status)
    disputed = reads.disputed_tasks(project=project, kind=kind) if status == "pending" and not author else []
    ctx = {
        "project": project,
        "disputed": disputed,
        "review_max_confidence": reads.review_max_confidence(project),
        "annotations": annotations,
        "kind": kind,
        "status": status,
        "author": author,
        "kinds": TaskKind.values,
    }
    return render(request, "frontend/review_list.html", ctx)


def _annotation_or_404(project, annotation_id):
    annotation = reads.project_annotation(project=project, annotation_id=annotation_id)
    if annotation is None:
        raise Http404("No such annotation")
    return annotation


@project_view(REVIEWERS)
def review_detail(request, project, annotation_id):
    annotation = _annotation_or_404(project, annotation_id)
    task = annotation.task
    aspects = list(project.aspects)
    state, error = None, ""
    rationale = annotation.rationale
    if request.method == "POST":
        error, state, rationale = revise_from_post(request, annotation, aspects=aspects, as_reviewer=True)
        if not error:
            messages.success(request, "Correction saved as a reviewed revision.")
            return redirect(_next_url(request, project))
    if state is None:
        state = shown_state(annotation, task.kind, n_responses=task.n_responses, n_steps=task.n_steps)
    ctx = task_context(project, reads.task_for_annotation(annotation=annotation), state=state)
    ctx.update(
        project=project,
        annotation=annotation,
        others=reads.other_annotations(annotation=annotation),
        mode="review",
        action=reverse("frontend:review_detail", args=[project.slug, annotation.pk]),
        accept_url=reverse("frontend:review_accept", args=[project.slug, annotation.pk]),
        client_id=uuid.uuid4(),
        rationale=rationale,
        error=error,
        review=(annotation.details or {}).get("review"),
    )
    return render(request, "frontend/review_detail.html", ctx)


@require_POST
@project_view(REVIEWERS)
def review_accept(request, project, annotation_id):
    annotation = _annotation_or_404(project, annotation_id)
    try:
        annotation_accept(annotation=annotation, reviewer=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("frontend:review_detail", project.slug, annotation.pk)
    messages.success(request, "Accepted.")
    return redirect(_next_url(request, project))


def _next_url(request, project) -> str:
    """The most disputed task not yet corrected, else the next pending annotation, else the list."""
    disputed = reads.disputed_tasks(project=project, limit=1)
    if disputed:
        return reverse("frontend:review_detail", args=[project.slug, disputed[0]["annotation"].pk])
    nxt = reads.review_queue(project=project, status="pending", limit=1)
    if nxt:
        return reverse("frontend:review_detail", args=[project.slug, nxt[0].pk])
    return reverse("frontend:review_list", args=[project.slug])
