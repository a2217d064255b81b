"""AI suggestions: the AI judge's verdict shown to a person as a pre-annotation on a pairwise task.

Off by default. With the project setting `suggestion_rate` (0 to 1), each new lease of a pairwise task
that has a current AI label is decided once: the label is shown with that probability, and held back
otherwise. Both outcomes are recorded on the assignment (`suggestion`, `suggestion_shown`), so the
people who saw a suggestion can be compared with those who did not (`selectors.suggestion_influence`).
"""

import random

from common.errors import Invalid

from ..models import Annotation, AnnotationSource, Assignment, Project, TaskKind
from ..payloads import to_shown

SETTING = "suggestion_rate"


def suggestion_rate(project: Project) -> float:
    return float((project.settings or {}).get(SETTING) or 0)


def suggestion_rate_check(settings: dict) -> None:
    """Invalid unless the setting, when given, is a number from 0 to 1."""
    value = (settings or {}).get(SETTING)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        message = f"{SETTING} must be a number from 0 (off) to 1 (every lease)"
        raise Invalid(message, fields={f"settings.{SETTING}": [message]})


def _ai_label(task_id: int) -> Annotation | None:
    return (Annotation.objects.filter(task_id=task_id, source=AnnotationSource.AI, is_current=True, kind=TaskKind.PAIRWISE)
            .order_by("-id").first())


def assignment_suggestion(*, assignment: Assignment, project: Project, rng=random) -> dict | None:
    """The AI verdict to pre-fill on this lease, in the order the person sees the responses, or None.

    Decided once per assignment (a reload shows the same); nothing is read while the setting is off."""
    rate = suggestion_rate(project)
    if rate <= 0 or assignment.task.kind != TaskKind.PAIRWISE:
        return None
    if assignment.suggestion_shown is None:
        label = _ai_label(assignment.task_id)
        if label is None:
            return None
        shown = rng.random() < rate
        # Two requests for the same lease at once: the first decision stands.
        Assignment.objects.filter(pk=assignment.pk, suggestion_shown__isnull=True).update(
            suggestion=label, suggestion_shown=shown)
        assignment.refresh_from_db(fields=["suggestion", "suggestion_shown"])
    if not assignment.suggestion_shown or assignment.suggestion is None:
        return None
    return to_shown(TaskKind.PAIRWISE, assignment.suggestion.payload, list(assignment.shown_order))
