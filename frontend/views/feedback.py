"""Feedback pages: launch and follow feedback jobs, and the AI judge's agreement with people.

The agreement panel is also embedded (HTMX) in the constitution editor, so an admin sees which principle the
AI follows badly beside the text that words it.
"""

from django.shortcuts import redirect, render

from training.feedback import jobs
from training.feedback.agreement import agreement_report

from ..access import ENGINEERS, OBSERVERS, project_view
from ..jobforms import FeedbackJobForm
from .launch import cancel_view, found_or_404, job_page, launch_page, page_context


@project_view(OBSERVERS)
def feedback_jobs(request, project):
    return launch_page(
        request, project, "frontend/training/feedback_jobs.html", form_class=FeedbackJobForm,
        create=jobs.feedback_job_create, denied="Only admins and engineers launch feedback jobs.",
        queued=lambda job: (f"Feedback job {job.pk} queued: {job.total} items.",
                            redirect("feedback:jobs", project.slug)),
        listing=lambda: {"jobs": jobs.feedback_jobs_for(project=project).order_by("-id")[:50],
                         "constitution": project.current_constitution, "raters": jobs.ai_raters_of(project=project)},
    )


def _job_or_404(project, job_id):
    return found_or_404(jobs.feedback_job_get(project=project, job_id=job_id), "job")


@project_view(OBSERVERS)
def feedback_job_detail(request, project, job_id):
    return job_page(request, project, _job_or_404(project, job_id), row="frontend/training/_feedback_job_row.html",
                    page="frontend/training/feedback_job.html")


feedback_job_cancel = cancel_view(_job_or_404, lambda job: jobs.feedback_job_cancel(job=job), "feedback:job",
                                  "Feedback job {job.pk} is being cancelled.")


def _table(groups: dict) -> list[dict]:
    return [{"key": key, **m} for key, m in groups.items()]


@project_view(OBSERVERS)
def agreement(request, project):
    """Agreement of AI labels with people. `?panel=1` (or an HTMX request) renders only the panel."""
    role = request.membership.role
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
    return render(request, "frontend/training/agreement.html", page_context(**ctx))
