"""AI suggestions: the AI judge's verdict pre-filled on a person's pairwise lease, recorded, and measured."""

import uuid

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Annotation, AnnotationSource, Assignment, Role
from annotation.selectors import suggestion_influence
from annotation.services.suggestions import assignment_suggestion

from .test_task_stats import as_shown


class FixedDraw:
    def __init__(self, value: float):
        self.value = value

    def random(self) -> float:
        return self.value


def ai_label(task, rater, choice="B", strength=3):
    return Annotation.objects.create(task=task, kind=task.kind, author=rater, source=AnnotationSource.AI,
                                     payload={"choice": choice, "strength": strength})


def set_rate(project, rate):
    services.project_update(project=project, settings={**project.settings, "suggestion_rate": rate})


def next_task(user):
    client = APIClient()
    client.force_authenticate(user)
    response = client.post("/api/v1/projects/demo/next-task/")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db
def test_suggestions_are_off_by_default(project, member, make_task):
    ai_label(make_task(), member())
    leased = next_task(member())
    assert leased["suggestion"] is None
    assignment = Assignment.objects.get(pk=leased["assignment"])
    assert (assignment.suggestion_id, assignment.suggestion_shown) == (None, None)


@pytest.mark.django_db
def test_with_the_setting_the_ai_verdict_is_shown_in_the_order_the_person_sees(project, member, make_task):
    label = ai_label(make_task(), member(), "B", 3)
    set_rate(project, 1)
    leased = next_task(member())
    assignment = Assignment.objects.get(pk=leased["assignment"])
    assert leased["suggestion"] == {"choice": as_shown("B", assignment.shown_order), "strength": 3}
    assert (assignment.suggestion_id, assignment.suggestion_shown) == (label.pk, True)


@pytest.mark.django_db
def test_a_held_back_suggestion_is_recorded_and_the_decision_is_kept(project, member, make_task):
    label = ai_label(make_task(), member())
    set_rate(project, 0.5)
    user = member()
    assignment = services.task_next_for(annotator=user, project=project)
    assert assignment_suggestion(assignment=assignment, project=project, rng=FixedDraw(0.7)) is None
    assignment.refresh_from_db()
    assert (assignment.suggestion_id, assignment.suggestion_shown) == (label.pk, False)
    again = services.task_next_for(annotator=user, project=project)  # the lease held, reloaded
    assert assignment_suggestion(assignment=again, project=project, rng=FixedDraw(0.1)) is None


@pytest.mark.django_db
def test_nothing_is_suggested_without_an_ai_label_or_on_other_kinds(project, member, make_task):
    make_task()
    rated = make_task("rating")
    ai_label(rated, member())  # not a pairwise verdict
    set_rate(project, 1)
    user = member()
    for _ in range(2):
        assignment = services.task_next_for(annotator=user, project=project)
        assert assignment_suggestion(assignment=assignment, project=project) is None
        assignment.refresh_from_db()
        assert assignment.suggestion_shown is None
        services.assignment_skip(assignment=assignment, annotator=user)


@pytest.mark.django_db
@pytest.mark.parametrize("rate", [1.5, -0.1, "half", True])
def test_a_bad_suggestion_rate_is_a_400(project, member, rate):
    client = APIClient()
    client.force_authenticate(member(Role.ADMIN))
    response = client.patch("/api/v1/projects/demo/", {"settings": {"suggestion_rate": rate}}, format="json")
    assert response.status_code == 400
    assert "settings.suggestion_rate" in response.json()["fields"]
    project.refresh_from_db()
    assert "suggestion_rate" not in project.settings


def lease_and_label(project, user, choice, draw):
    """Lease, decide the suggestion with a fixed draw, and submit `choice` (canonical)."""
    assignment = services.task_next_for(annotator=user, project=project)
    assignment_suggestion(assignment=assignment, project=project, rng=FixedDraw(draw))
    services.annotation_submit(assignment=assignment, annotator=user, client_id=uuid.uuid4(),
                               payload={"choice": as_shown(choice, assignment.shown_order),
                                        "strength": 1 if choice in ("A", "B") else None})


@pytest.mark.django_db
def test_the_dashboard_compares_agreement_with_the_ai_when_shown_and_not(project, member, make_task, client):
    tasks = [make_task(required=3) for _ in range(2)]
    rater = member()
    for task in tasks:
        ai_label(task, rater, "A")
    set_rate(project, 0.5)
    # Shown (draw 0.1): 3 labels, 3 agree. Held back (draw 0.9): 3 labels, 1 agrees.
    for choice, draw in [("A", 0.1), ("A", 0.1), ("A", 0.1), ("A", 0.9), ("B", 0.9), ("tie", 0.9)]:
        lease_and_label(project, member(), choice, draw)
    assert suggestion_influence(project=project) == [
        {"shown": True, "labels": 3, "agree": 3, "agreement": 1.0},
        {"shown": False, "labels": 3, "agree": 1, "agreement": 1 / 3},
    ]
    client.force_login(member(Role.ADMIN))
    page = client.get(reverse("frontend:dashboard", args=["demo"])).content.decode()
    assert 'id="suggestion-table"' in page and "shown on 50% of pairwise leases" in page
    shown_row = page.split('data-shown="true"')[1].split("</tr>")[0]
    held_row = page.split('data-shown="false"')[1].split("</tr>")[0]
    assert ">3<" in shown_row and "100%" in shown_row
    assert ">1<" in held_row and "33%" in held_row


@pytest.mark.django_db
def test_the_work_page_prefills_the_suggestion_and_says_so(project, member, make_task, client):
    ai_label(make_task(), member(), "B", 3)
    set_rate(project, 1)
    user = member()
    client.force_login(user)
    page = client.get(reverse("frontend:work", args=["demo"])).content.decode()
    assignment = Assignment.objects.get(annotator=user)
    letter = as_shown("B", assignment.shown_order)
    assert "data-suggestion" in page and f"{letter} is better (much better)" in page
    assert f'value="{letter}" checked' in page and 'name="strength" value="3" checked' in page
    other = member()
    set_rate(project, 0)
    client.force_login(other)
    page = client.get(reverse("frontend:work", args=["demo"])).content.decode()
    assert "data-suggestion" not in page and "checked" not in page.split('name="choice"')[1][:40]


@pytest.mark.django_db
def test_admins_turn_suggestions_on_and_off_in_the_settings_page(project, member, client):
    client.force_login(member(Role.ADMIN))
    url = reverse("frontend:project_settings", args=["demo"])
    form = {"name": "Demo", "required_annotations": 2, "lease_minutes": 10}
    assert client.post(url, {**form, "suggestion_percent": 30}).status_code == 302
    project.refresh_from_db()
    assert project.settings["suggestion_rate"] == 0.3
    assert 'name="suggestion_percent" value="30"' in client.get(url).content.decode()
    client.post(url, {**form, "suggestion_percent": ""})
    project.refresh_from_db()
    assert "suggestion_rate" not in project.settings
