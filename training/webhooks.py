"""What the training app reports to a project's webhooks: `run.finished`, `generation.finished`, `feedback.finished`."""

from __future__ import annotations

from annotation.models import WebhookEvent
from annotation.services.webhooks import webhook_emit

from .models import FeedbackJob, GenerationJob, TrainingRun


def run_finished(*, run_id: int) -> None:
    """Report a training run that ended (succeeded, failed or cancelled); once per ending (a relaunch ends again)."""
    run = TrainingRun.objects.select_related("project", "base_model", "output_model").filter(pk=run_id).first()
    if run is None:
        return
    data = {
        "run": {
            "id": run.pk,
            "method": run.method,
            "status": run.status,
            "error": run.error[:1000],
            "step": run.step,
            "base_model": run.base_model.name,
            "snapshot": run.snapshot_id,
            "snapshot_sha256": run.snapshot_sha256,
            "output_model": run.output_model.name if run.output_model_id else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        }
    }
    webhook_emit(project=run.project, event=WebhookEvent.RUN_FINISHED, key=f"run.finished:{run.pk}:{data['run']['finished_at']}", data=data)


def generation_finished(*, job_id: int) -> None:
    """Report a generation job that ended; once per job."""
    job = GenerationJob.objects.select_related("project", "model").filter(pk=job_id).first()
    if job is None:
        return
    data = {
        "job": {
            "id": job.pk,
            "model": job.model.name,
            "status": job.status,
            "done": job.done,
            "total": job.total,
            "tasks_created": job.tasks_created,
            "error": (job.error or "")[:1000],
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        }
    }
    webhook_emit(project=job.project, event=WebhookEvent.GENERATION_FINISHED, key=f"generation.finished:{job.pk}", data=data)


def feedback_finished(*, job_id: int) -> None:
    """Report a feedback job (AI judge or critique-revision) that ended; once per job."""
    job = FeedbackJob.objects.select_related("project", "model").filter(pk=job_id).first()
    if job is None:
        return
    data = {
        "job": {
            "id": job.pk,
            "kind": job.kind,
            "model": job.model.name if job.model_id else None,
            "status": job.status,
            "done": job.done,
            "total": job.total,
            "failures": len(job.failures or []),
            "result": job.result,
            "error": (job.error or "")[:1000],
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        }
    }
    webhook_emit(project=job.project, event=WebhookEvent.FEEDBACK_FINISHED, key=f"feedback.finished:{job.pk}", data=data)
