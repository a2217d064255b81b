"""Every function that changes training data (registry, generation jobs). Views, commands and tasks call these."""

from .generation import (
    generation_job_cancel,
    generation_job_create,
    generation_job_run_slice,
    generation_jobs_reconcile,
    prompts_in_scope,
)
from .registry import model_register

__all__ = [
    "generation_job_cancel",
    "generation_job_create",
    "generation_job_run_slice",
    "generation_jobs_reconcile",
    "model_register",
    "prompts_in_scope",
]
