"""My work: an annotator's own history; an edit writes a new revision, the old one is kept."""

import uuid

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse


from .. import reads
from ..access import project_view
from .common import revise_from_post, shown_state, task_context


@project_view()
def my_work(request, project):
    annotations = reads.my_annotations(user=request.user, project=project)
    return render(request, "frontend/mywork.html", {"project": project, "annotations": annotations})


@project_view()
def my_work_edit(request, project, annotation_id):
    annotation = reads.my_annotation(user=request.user, project=project, annotation_id=annotation_id)
    if annotation is None:
        raise Http404("No such annotation")
    if not annotation.is_current:
        newer = getattr(annotation, "superseded_by", None)
        if newer is not None:
            return redirect("frontend:my_work_edit", project.slug, newer.pk)
    task = annotation.task
    aspects = list(project.aspects)
    error = ""
    state = None
    rationale = annotation.rationale
    if request.method == "POST":
        error, state, rationale = revise_from_post(request, annotation, aspects=aspects)
        if not error:
            messages.success(request, "Saved as a new revision.")
            return redirect("frontend:my_work", project.slug)
    if state is None:
        state = shown_state(annotation, task.kind, n_responses=task.n_responses, n_steps=task.n_steps)
    ctx = task_context(project, reads.task_for_annotation(annotation=annotation), state=state)
    ctx.update(
        project=project,
        annotation=annotation,
        history=reads.revision_chain(annotation=annotation),
        mode="edit",
        action=reverse("frontend:my_work_edit", args=[project.slug, annotation.pk]),
        client_id=uuid.uuid4(),
        rationale=rationale,
        error=error,
    )
    return render(request, "frontend/mywork_edit.html", ctx)
