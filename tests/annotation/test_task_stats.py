"""Per-task agreement and AI-vs-human disagreement, kept by database triggers (annotation/task_stats.py)."""

import uuid

import pytest
from django.core.management import call_command
from django.db import connection

from annotation import services, task_stats
from annotation.models import Annotation, AnnotationSource, Task
from annotation.services.undo import annotation_undo


def as_shown(choice: str, shown_order) -> str:
    """A canonical pairwise choice as the letter its annotator saw it under."""
    return "AB"[list(shown_order).index("AB".index(choice))] if choice in ("A", "B") else choice


def label(project, user, choice, strength=2):
    """Lease the user's next task and submit a pairwise choice on it (in canonical positions)."""
    assignment = services.task_next_for(annotator=user, project=project)
    return services.annotation_submit(
        assignment=assignment, annotator=user, client_id=uuid.uuid4(),
        payload={"choice": as_shown(choice, assignment.shown_order), "strength": strength if choice in "AB" else None},
    )


def ai_label(task, rater, choice):
    return Annotation.objects.create(task=task, kind=task.kind, author=rater, source=AnnotationSource.AI,
                                     payload={"choice": choice, "strength": 1})


def stats(task) -> tuple:
    task.refresh_from_db()
    return task.agreement, task.ai_disagreement


@pytest.mark.django_db
def test_agreement_is_the_share_of_human_labels_giving_the_most_common_verdict(project, member, make_task):
    task = make_task(required=3)
    users = [member() for _ in range(3)]
    label(project, users[0], "A")
    assert stats(task) == (None, None)  # one label: nothing to agree with yet
    label(project, users[1], "A", strength=3)  # strength is not part of the verdict
    assert stats(task) == (1.0, None)
    label(project, users[2], "B")
    assert stats(task)[0] == pytest.approx(2 / 3)


@pytest.mark.django_db
def test_ai_disagreement_compares_ai_labels_with_the_human_majority(project, member, make_task):
    task = make_task(required=2)
    a, b = member(), member()
    raters = [member(), member()]
    ai_label(task, raters[0], "B")
    assert stats(task) == (None, None)  # no human label yet
    label(project, a, "A")
    assert stats(task) == (None, 1.0)  # one human label is its own majority
    ai_label(task, raters[1], "A")
    assert stats(task) == (None, 0.5)
    label(project, b, "B")
    assert stats(task) == (0.5, None)  # 1-1: no human majority to compare with


@pytest.mark.django_db
def test_revisions_and_withdrawals_update_the_figures(project, member, make_task):
    task = make_task(required=2)
    a, b = member(), member()
    label(project, a, "A")
    second = label(project, b, "B")
    assert stats(task)[0] == 0.5
    services.annotation_revise(annotation=second, author=b,
                               payload={"choice": as_shown("A", second.shown_order), "strength": 1})
    assert stats(task)[0] == 1.0
    other = make_task(required=2)
    label(project, a, "A")
    withdrawn = label(project, b, "A")
    assert stats(other)[0] == 1.0
    annotation_undo(annotation=withdrawn, annotator=b)
    assert stats(other)[0] is None


@pytest.mark.django_db
def test_rating_verdicts_are_thumbs_and_ranking_verdicts_are_orders(project, member, make_task):
    rating, ranking = make_task("rating", required=2), make_task("ranking", required=2)
    for user, thumb, order in ((member(), "up", [[0], [1], [2]]), (member(), "down", [[0], [1], [2]])):
        for _ in range(2):
            assignment = services.task_next_for(annotator=user, project=project)
            shown = list(assignment.shown_order)
            payload = ({"thumb": thumb} if assignment.task_id == rating.pk
                       else {"order": [[shown.index(p) for p in group] for group in order]})
            services.annotation_submit(assignment=assignment, annotator=user, payload=payload, client_id=uuid.uuid4())
    assert stats(rating)[0] == 0.5 and stats(ranking)[0] == 1.0


@pytest.mark.django_db
def test_backfill_recomputes_what_the_triggers_keep(project, member, make_task):
    task = make_task(required=2)
    label(project, member(), "A")
    label(project, member(), "B")
    Task.objects.filter(pk=task.pk).update(agreement=None)
    task_stats.backfill(task_ids=[task.pk])
    assert stats(task)[0] == 0.5


def _trigger_names() -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'annotation_task_stats_%%'")
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'annotation_task_stats_%'")
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.django_db(transaction=True)
def test_migrate_reinstalls_triggers_a_table_rebuild_dropped(project, member, make_task):
    task_stats.uninstall()  # what rebuilding the annotation table on SQLite does to them
    assert _trigger_names() == set()
    call_command("migrate", verbosity=0)
    assert _trigger_names() == {"annotation_task_stats_insert", "annotation_task_stats_update",
                                "annotation_task_stats_delete"}
    task = make_task(required=2)
    label(project, member(), "A")
    label(project, member(), "A")
    assert stats(task)[0] == 1.0
