"""Feedback pages: launch and follow feedback jobs, and the AI judge's agreement with people.

The agreement panel is also embedded (HTMX) in the constitution editor, so an admin sees which principle the
AI follows badly beside the text that words it.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from annotation.errors import DomainError

from training.feedback import jobs
from training.feedback.agreement import agreement_report
from training.feedback.forms import FeedbackJobForm

from .training import ENGINEERS, OBSERVERS, _ctx, _launch_id, _project


@login_required
def feedback_jobs(request, slug):
    project, role = _project(request, slug, OBSERVERS)
    can_launch = role in ENGINEERS
    form = None
    if request.method == "POST":
        if not can_launch:
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied("Only admins and engineers launch feedback jobs.")
        form = FeedbackJobForm(request.POST)
        if form.is_valid():
            try:
                job = jobs.feedback_job_create(project=project, created_by=request.user, client_id=_launch_id(request),
                                               **form.service_kwargs())
            except DomainError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Feedback job {job.pk} queued: {job.total} items.")
                return redirect("feedback:jobs", project.slug)
    elif can_launch:
        form = FeedbackJobForm()
    ctx = _ctx(gen_project=project, jobs=jobs.feedback_jobs_for(project=project).order_by("-id")[:50], form=form,
               can_launch=can_launch, constitution=project.current_constitution,
               raters=jobs.ai_raters_of(project=project))
    return render(request, "frontend/training/feedback_jobs.html", ctx)


@login_required
def feedback_job_detail(request, slug, job_id):
    project, role = _project(request, slug, OBSERVERS)
    job = jobs.feedback_job_get(project=project, job_id=job_id)
    if job is None:
        raise Http404("No such job")
    ctx = {"gen_project": project, "job": job, "can_launch": role in ENGINEERS}
    if request.htmx:
        return render(request, "frontend/training/_feedback_job_row.html", ctx)
    return render(request, "frontend/training/feedback_job.html", _ctx(**ctx))


@require_POST
@login_required
def feedback_job_cancel(request, slug, job_id):
    project, _ = _project(request, slug, ENGINEERS)
    job = jobs.feedback_job_get(project=project, job_id=job_id)
    if job is None:
        raise Http404("No such job")
    try:
        jobs.feedback_job_cancel(job=job)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, f"Feedback job {job.pk} is being cancelled.")
    return redirect("feedback:job", project.slug, job.pk)


def _table(groups: dict) -> list[dict]:
    return [{"key": key, **m} for key, m in groups.items()]


@login_required
def agreement(request, slug):
    """Agreement of AI labels with people. `?panel=1` (or an HTMX request) renders only the panel."""
    project, role = _project(request, slug, OBSERVERS)
    report = agreement_report(project=project)
    constitution = project.current_constitution
    ctx = {
        "gen_project": project,
        "report": report,
        "by_principle": _table(report["by_principle"]),
        "by_version": _table(report["by_version"]),
        "by_judge": _table(report["by_judge"]),
        "by_version_principle": _table(report["by_version_principle"]),
        "principle_names": {p.key: p.name for p in constitution.principles.all()} if constitution else {},
        "chart": {
            "reliability": report["overall"]["reliability"],
            "principles": _table(report["by_principle"]),
            "versions": _table(report["by_version"]),
        },
        "can_launch": role in ENGINEERS,
        "is_admin": role == "admin",
    }
    if request.htmx or request.GET.get("panel"):
        return render(request, "frontend/training/_agreement_panel.html", ctx)
    return render(request, "frontend/training/agreement.html", _ctx(**ctx))
