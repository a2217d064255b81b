"""Engineer pages: the model registry with lineage, and generation jobs (launch, live progress, cancel).

Pages extend the web UI's base template; every model output is rendered escaped.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.template.loader import select_template
from django.views.decorators.http import require_POST

from annotation import selectors as annotation_selectors
from annotation.errors import DomainError, NotFound
from annotation.models import Response, Role

from . import selectors, services
from .forms import GenerationJobForm

OBSERVERS = (Role.ADMIN, Role.ENGINEER, Role.REVIEWER)
ENGINEERS = (Role.ADMIN, Role.ENGINEER)


def _project(request, slug: str, roles: tuple[str, ...]):
    try:
        project, role = annotation_selectors.project_with_role(user=request.user, slug=slug)
    except NotFound:
        raise Http404("No such project") from None
    if role not in roles:
        raise PermissionDenied("Your role in this project does not give access to this page.")
    return project, role


def _ctx(**extra) -> dict:
    # The UI's base template when it is installed, a minimal layout otherwise.
    layout = select_template(["frontend/base.html", "training/standalone.html"]).template.name
    return {"layout": layout, **extra}


@login_required
def model_registry(request):
    models = list(selectors.models_list(include_archived=True))
    rows = [{"model": m, "lineage": selectors.model_lineage(model=m)[1:]} for m in models]
    return render(request, "training/models.html", _ctx(rows=rows))


@login_required
def generation_jobs(request, slug):
    project, role = _project(request, slug, OBSERVERS)
    can_launch = role in ENGINEERS
    form = None
    if request.method == "POST":
        if not can_launch:
            raise PermissionDenied("Only admins and engineers launch generation jobs.")
        form = GenerationJobForm(request.POST)
        if form.is_valid():
            try:
                job = services.generation_job_create(project=project, created_by=request.user, **form.service_kwargs())
            except DomainError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Generation job {job.pk} queued: {job.total} responses to write.")
                return redirect("training:generation_jobs", project.slug)
    elif can_launch:
        form = GenerationJobForm()
    jobs = selectors.generation_jobs_for(project=project).order_by("-id")[:50]
    ctx = _ctx(gen_project=project, jobs=jobs, form=form, can_launch=can_launch)
    return render(request, "training/generation_jobs.html", ctx)


@login_required
def generation_job_detail(request, slug, job_id):
    project, role = _project(request, slug, OBSERVERS)
    job = selectors.generation_job_get(project=project, job_id=job_id)
    if job is None:
        raise Http404("No such job")
    ctx = {"gen_project": project, "job": job, "can_launch": role in ENGINEERS}
    if request.htmx:
        return render(request, "training/_job_progress.html", ctx)
    latest = Response.objects.filter(prompt__project=project, generation__job=job.pk).select_related("prompt").order_by("-id")[:6]
    return render(request, "training/generation_job.html", _ctx(latest=latest, **ctx))


@require_POST
@login_required
def generation_job_cancel(request, slug, job_id):
    project, _ = _project(request, slug, ENGINEERS)
    job = selectors.generation_job_get(project=project, job_id=job_id)
    if job is None:
        raise Http404("No such job")
    try:
        services.generation_job_cancel(job=job)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, f"Generation job {job.pk} is being cancelled.")
    return redirect("training:generation_job", project.slug, job.pk)
