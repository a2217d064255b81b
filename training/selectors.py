"""Reads for the training app. Project-scoped reads go through the caller's project."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from annotation.models import Project

from .models import GenerationJob, Model


def models_list(*, include_archived: bool = False) -> QuerySet[Model]:
    qs = Model.objects.select_related("base_model").annotate(n_derived=Count("derived")).order_by("name")
    return qs if include_archived else qs.filter(is_active=True)


def model_lineage(*, model: Model, limit: int = 20) -> list[Model]:
    """The model, then the model it was trained from, and so on (at most `limit` steps; cycles stop it)."""
    chain, seen = [model], {model.pk}
    current = model
    while current.base_model_id and len(chain) < limit and current.base_model_id not in seen:
        current = Model.objects.get(pk=current.base_model_id)
        chain.append(current)
        seen.add(current.pk)
    return chain


def generation_jobs_for(*, project: Project) -> QuerySet[GenerationJob]:
    return GenerationJob.objects.filter(project=project).select_related("model", "created_by").defer("prompt_ids")


def generation_job_get(*, project: Project, job_id: int) -> GenerationJob | None:
    return generation_jobs_for(project=project).filter(pk=job_id).first()


def models_with_role(*roles: str, local_only: bool = False) -> list[Model]:
    """Active models, by name, that play any of `roles`; `local_only`: only those with weights on disk (a path)."""
    return [m for m in Model.objects.filter(is_active=True).order_by("name")
            if set(roles) & set(m.roles or []) and (m.path or not local_only)]
