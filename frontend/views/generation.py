"""Engineer pages: the model registry with lineage, and generation jobs (launch, live progress, cancel).

Every model output is rendered escaped.
"""

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from annotation.models import Response
from training import selectors, services

from ..access import OBSERVERS, project_view
from ..jobforms import GenerationJobForm
from .launch import cancel_view, found_or_404, job_page, launch_page, page_context


@login_required
def model_registry(request):
    models = list(selectors.models_list(include_archived=True))
    rows = [{"model": m, "lineage": selectors.model_lineage(model=m)[1:]} for m in models]
    return render(request, "frontend/training/models.html", page_context(rows=rows))


@project_view(OBSERVERS)
def generation_jobs(request, project):
    def queued(job):
        return (f"Generation job {job.pk} queued: {job.total} responses to write.",
                redirect("training:generation_jobs", project.slug))

    return launch_page(request, project, "frontend/training/generation_jobs.html", form_class=GenerationJobForm,
                       create=services.generation_job_create, queued=queued,
                       denied="Only admins and engineers launch generation jobs.",
                       listing=lambda: {"jobs": selectors.generation_jobs_for(project=project).order_by("-id")[:50]})


def _job_or_404(project, job_id):
    return found_or_404(selectors.generation_job_get(project=project, job_id=job_id), "job")


@project_view(OBSERVERS)
def generation_job_detail(request, project, job_id):
    job = _job_or_404(project, job_id)

    def latest():
        responses = Response.objects.filter(prompt__project=project, generation__job=job.pk).select_related("prompt")
        return {"latest": responses.order_by("-id")[:6]}

    return job_page(request, project, job, row="frontend/training/_job_progress.html",
                    page="frontend/training/generation_job.html", more=latest)


generation_job_cancel = cancel_view(_job_or_404, lambda job: services.generation_job_cancel(job=job),
                                    "training:generation_job", "Generation job {job.pk} is being cancelled.")
