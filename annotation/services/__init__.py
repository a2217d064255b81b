"""Every function that changes annotation data. Views, commands and Celery tasks call these."""

from .ai_labels import ai_annotation_write
from .content import prompt_create, response_create, task_create, task_set_gold
from .projects import (
    constitution_version_create,
    guideline_version_create,
    membership_remove,
    membership_set,
    project_create,
    project_update,
)
from .queue import assignment_skip, leases_expire, task_next_for
from .submit import annotation_revise, annotation_submit

__all__ = [
    "ai_annotation_write",
    "annotation_revise",
    "annotation_submit",
    "assignment_skip",
    "constitution_version_create",
    "guideline_version_create",
    "leases_expire",
    "membership_remove",
    "membership_set",
    "project_create",
    "project_update",
    "prompt_create",
    "response_create",
    "task_create",
    "task_next_for",
    "task_set_gold",
]
