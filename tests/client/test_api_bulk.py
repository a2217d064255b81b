"""The bulk endpoints the client pushes through: all or nothing, idempotent by key, scoped to the project."""

import pytest
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Response, Task

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(project, member):
    def as_role(role):
        c = APIClient()
        c.force_authenticate(member(role))
        return c

    return as_role


def test_bulk_responses_are_written_once_per_key_and_refused_whole_on_one_bad_item(api, project):
    prompt = services.prompt_create(project=project, messages="Q?", external_id="q")
    engineer = api("engineer")
    url = f"/api/v1/projects/{project.slug}/responses/bulk/"
    items = [{"prompt": prompt.pk, "content": "One.", "key": "a"}, {"prompt_external_id": "q", "content": "Two."}]
    first = engineer.post(url, {"items": items}, format="json")
    assert first.status_code == 201, first.content
    again = engineer.post(url, {"items": items[:1]}, format="json")
    assert again.json()["items"][0]["id"] == first.json()["items"][0]["id"]
    assert Response.objects.count() == 2
    bad = engineer.post(url, {"items": [{"prompt": prompt.pk, "content": "Three.", "key": "c"},
                                        {"prompt": 999999, "content": "Four."}]}, format="json")
    assert bad.status_code == 400 and bad.json()["fields"] == {"items[1].prompt": ["no such prompt in this project"]}
    assert Response.objects.count() == 2
    assert api("annotator").post(url, {"items": items}, format="json").status_code == 403


def test_bulk_tasks_take_their_prompt_from_the_responses_and_refuse_another_projects(api, project, make_user):
    prompt = services.prompt_create(project=project, messages="Q?")
    a, b = (services.response_create(prompt=prompt, content=c) for c in ("A.", "B."))
    other = services.project_create(name="O", slug="o", created_by=make_user())
    foreign = services.response_create(prompt=services.prompt_create(project=other, messages="X?"), content="X.")
    engineer = api("engineer")
    url = f"/api/v1/projects/{project.slug}/tasks/bulk/"
    made = engineer.post(url, {"items": [{"kind": "pairwise", "responses": [b.pk, a.pk], "key": "t"}]}, format="json")
    assert made.status_code == 201, made.content
    task = made.json()["items"][0]
    assert task["prompt"] == prompt.pk and task["responses"] == [b.pk, a.pk]
    assert engineer.post(url, {"items": [{"kind": "pairwise", "responses": [b.pk, a.pk], "key": "t"}]},
                         format="json").json()["items"][0]["id"] == task["id"]
    refused = engineer.post(url, {"items": [{"kind": "pairwise", "responses": [a.pk, foreign.pk]}]}, format="json")
    assert refused.status_code == 400 and "items[0].responses" in refused.json()["fields"]
    wrong_shape = engineer.post(url, {"items": [{"kind": "pairwise", "responses": [a.pk]}]}, format="json")
    assert wrong_shape.status_code == 400 and "takes 2 responses" in wrong_shape.json()["detail"]
    assert Task.objects.filter(project=project).count() == 1
    too_many = engineer.post(url, {"items": [{"kind": "rating", "responses": [a.pk]}] * 1001}, format="json")
    assert too_many.status_code == 400 and Task.objects.filter(project=project).count() == 1
