"""The annotator's side: project list, the work page, submit / skip / undo without a page reload."""

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotation import services
from annotation.models import TaskKind
from annotation.services.suggestions import assignment_suggestion
from annotation.services.undo import annotation_undo
from common.errors import DomainError, Invalid

from .. import reads
from ..access import project_view
from ..taskforms import SKIP_REASON_TEXT, form_state, parse_payload, suggestion_text
from .common import client_id_from, seconds_from, shown_state, state_from_post, task_context


@login_required
def home(request):
    return render(request, "frontend/home.html", {"projects": reads.my_projects(user=request.user)})


def _panel_context(
    request, project, assignment, *, state=None, error="", notice="", undo=None, rationale="", elapsed=0.0
):
    ctx = {"project": project, "membership": request.membership, "notice": notice, "error": error, "undo": undo}
    ctx["my_done"] = reads.my_done_count(user=request.user, project=project)
    if assignment is None:
        ctx["done"] = True
        return ctx
    suggestion = assignment_suggestion(assignment=assignment, project=project)
    if suggestion is not None:
        ctx["suggestion"] = suggestion_text(suggestion)
        if state is None:  # pre-filled unless the person's own answer is being shown again
            state = form_state(TaskKind.PAIRWISE, suggestion, n_responses=assignment.task.n_responses)
    ctx.update(task_context(project, reads.task_for_assignment(assignment=assignment), state=state))
    ctx.update(
        mode="work",
        assignment=assignment,
        action=reverse("frontend:submit", args=[project.slug, assignment.pk]),
        skip_url=reverse("frontend:skip", args=[project.slug, assignment.pk]),
        client_id=uuid.uuid4(),
        rationale=rationale,
        elapsed=round(elapsed or 0.0, 1),
    )
    return ctx


def _panel(request, project, ctx):
    template = "frontend/work/_panel.html" if request.htmx else "frontend/work/page.html"
    return render(request, template, ctx)


@project_view()
def work(request, project):
    assignment = services.task_next_for(annotator=request.user, project=project)
    return _panel(request, project, _panel_context(request, project, assignment))


def _my_assignment_or_404(request, project, assignment_id):
    assignment = reads.my_assignment(user=request.user, project=project, assignment_id=assignment_id)
    if assignment is None:
        raise Http404("No such assignment")
    return assignment


def _next_or_redirect(request, project, **panel):
    if not request.htmx:
        # Without JavaScript the form posts normally: say what happened on the next page.
        if panel.get("error"):
            messages.error(request, panel["error"])
        elif panel.get("notice"):
            messages.success(request, panel["notice"])
        return redirect("frontend:work", project.slug)
    assignment = services.task_next_for(annotator=request.user, project=project)
    return _panel(request, project, _panel_context(request, project, assignment, **panel))


@require_POST
@project_view()
def submit(request, project, assignment_id):
    assignment = _my_assignment_or_404(request, project, assignment_id)
    task = assignment.task
    aspects = list(project.aspects)
    seconds = seconds_from(request.POST)
    rationale = request.POST.get("rationale", "")[:20000]
    try:
        payload = parse_payload(task.kind, request.POST, n_steps=task.n_steps, aspects=aspects)
        annotation = services.annotation_submit(
            assignment=assignment,
            annotator=request.user,
            payload=payload,
            client_id=client_id_from(request.POST),
            seconds_spent=seconds,
            rationale=rationale,
        )
    except Invalid as exc:
        state = state_from_post(
            task.kind, request.POST, n_responses=task.n_responses, n_steps=task.n_steps, aspects=aspects
        )
        ctx = _panel_context(
            request, project, assignment, state=state, error=exc.message, rationale=rationale, elapsed=seconds or 0.0
        )
        return _panel(request, project, ctx)
    except DomainError as exc:
        # Already submitted, skipped, or the lease went to someone else: move on.
        return _next_or_redirect(request, project, error=exc.message)
    return _next_or_redirect(request, project, notice="Saved.", undo=annotation)


@require_POST
@project_view()
def skip(request, project, assignment_id):
    assignment = _my_assignment_or_404(request, project, assignment_id)
    code = request.POST.get("reason", "")
    if code not in SKIP_REASON_TEXT:
        code = "other"
    note = request.POST.get("note", "").strip()
    reason = f"{code}: {note}" if note else code
    try:
        services.assignment_skip(assignment=assignment, annotator=request.user, reason=reason)
    except DomainError as exc:
        return _next_or_redirect(request, project, error=exc.message)
    notice = "Skipped. You will not see that task again."
    return _next_or_redirect(request, project, notice=notice)


@require_POST
@project_view()
def undo(request, project):
    try:
        annotation_id = int(request.POST.get("annotation", ""))
    except ValueError:
        raise Http404("No such annotation") from None
    annotation = reads.my_annotation(user=request.user, project=project, annotation_id=annotation_id)
    if annotation is None:
        raise Http404("No such annotation")
    try:
        assignment = annotation_undo(annotation=annotation, annotator=request.user)
    except DomainError as exc:
        return _next_or_redirect(request, project, error=exc.message)
    if not request.htmx:
        return redirect("frontend:work", project.slug)
    task = annotation.task
    state = shown_state(annotation, task.kind, n_responses=task.n_responses, n_steps=task.n_steps)
    ctx = _panel_context(
        request,
        project,
        assignment,
        state=state,
        notice="Submission withdrawn. Your answer is filled in again; change it and submit.",
        rationale=annotation.rationale,
        elapsed=annotation.seconds_spent or 0.0,
    )
    return _panel(request, project, ctx)
