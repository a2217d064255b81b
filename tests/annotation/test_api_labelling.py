"""The labelling cycle through HTTP: next task, submit, validation errors, idempotency, revisions."""

import uuid

import pytest
from rest_framework.test import APIClient

from annotation.models import Annotation, Role, Task


@pytest.fixture
def annotator_client(member):
    user = member(Role.ANNOTATOR)
    client = APIClient()
    client.force_authenticate(user)
    client.user = user
    return client


def _lease(client, slug="demo"):
    response = client.post(f"/api/v1/projects/{slug}/next-task/")
    assert response.status_code == 200, response.content
    return response.json()


def _submit(client, lease, payload, client_id=None, **extra):
    body = {"payload": payload, "client_id": str(client_id or uuid.uuid4()), **extra}
    return client.post(f"/api/v1/assignments/{lease['assignment']}/submit/", body, format="json")


VALID = {
    "pairwise": {"choice": "A", "strength": 3},
    "ranking": {"order": [2, [0, 1]]},
    "rating": {"thumb": "up", "likert": {"helpful": 6, "honest": 7, "harmless": 7}},
    "steps": {"labels": [1, -1, 0], "first_error": 1},
    "demonstration": {"text": "A careful answer."},
}

INVALID = [
    ("pairwise", {"choice": "C"}, "choice"),
    ("pairwise", {"choice": "A", "strength": 4}, "strength"),
    ("pairwise", {"choice": "A", "strength": "2"}, "strength"),
    ("pairwise", {"choice": "tie", "strength": 2}, "strength"),
    ("ranking", {"order": [0, 1]}, "order"),
    ("ranking", {"order": [0, 1, 1, 2]}, "order"),
    ("ranking", {"order": [0, 1, 5]}, "order"),
    ("ranking", {"order": "0,1,2"}, "order"),
    ("ranking", {"order": [0, [], [1, 2]]}, "order"),
    ("rating", {}, "payload"),
    ("rating", {"thumb": "sideways"}, "thumb"),
    ("rating", {"likert": {"helpful": 8}}, "likert"),
    ("rating", {"likert": {"funny": 3}}, "likert"),
    ("rating", {"likert": {"helpful": True}}, "likert"),
    ("steps", {"labels": [1, 1]}, "labels"),
    ("steps", {"labels": [1, 2, 0]}, "labels"),
    ("steps", {"labels": [1, -1, -1], "first_error": 2}, "first_error"),
    ("steps", {"labels": [1, 0, 1], "first_error": 0}, "first_error"),
    ("steps", {"labels": [1, -1, 1], "first_error": None}, "first_error"),
    ("steps", {"labels": [1, -1, 1], "first_error": 9}, "first_error"),
    ("demonstration", {"text": "   "}, "text"),
    ("demonstration", {"text": 42}, "text"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", list(VALID))
def test_each_kind_accepts_a_valid_payload(annotator_client, make_task, kind):
    task = make_task(kind)
    lease = _lease(annotator_client)
    assert lease["task"] == task.pk and lease["kind"] == kind
    response = _submit(annotator_client, lease, VALID[kind], seconds_spent=4.5, rationale="because")
    assert response.status_code == 201, response.content
    stored = Annotation.objects.get(pk=response.json()["id"])
    assert stored.kind == kind and stored.seconds_spent == 4.5 and stored.rationale == "because"


@pytest.mark.django_db
@pytest.mark.parametrize("kind,payload,field", INVALID)
def test_every_payload_error_is_a_400_naming_the_field(annotator_client, make_task, kind, payload, field):
    make_task(kind)
    lease = _lease(annotator_client)
    response = _submit(annotator_client, lease, payload)
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"], response.json()
    assert not Annotation.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body,field",
    [
        ({"payload": {"choice": "A"}}, "client_id"),
        ({"payload": {"choice": "A"}, "client_id": "not-a-uuid"}, "client_id"),
        ({"payload": "A", "client_id": str(uuid.uuid4())}, "payload"),
        ({"payload": {"choice": "A"}, "client_id": str(uuid.uuid4()), "seconds_spent": -1}, "seconds_spent"),
        ({"client_id": str(uuid.uuid4())}, "payload"),
    ],
)
def test_malformed_submit_bodies_are_400(annotator_client, make_task, body, field):
    make_task("pairwise")
    lease = _lease(annotator_client)
    response = annotator_client.post(f"/api/v1/assignments/{lease['assignment']}/submit/", body, format="json")
    assert response.status_code == 400 and field in response.json()


@pytest.mark.django_db
def test_non_json_body_is_a_400(annotator_client, make_task):
    make_task("pairwise")
    lease = _lease(annotator_client)
    response = annotator_client.post(
        f"/api/v1/assignments/{lease['assignment']}/submit/", "{not json", content_type="application/json"
    )
    assert response.status_code == 400


@pytest.mark.django_db
def test_retried_submit_returns_the_first_result_and_stores_one_row(annotator_client, make_task):
    make_task("pairwise")
    lease = _lease(annotator_client)
    client_id = uuid.uuid4()
    first = _submit(annotator_client, lease, {"choice": "A", "strength": 2}, client_id)
    again = _submit(annotator_client, lease, {"choice": "A", "strength": 2}, client_id)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert Annotation.objects.count() == 1


@pytest.mark.django_db
def test_second_submit_with_a_new_client_id_is_a_409(annotator_client, make_task):
    make_task("pairwise")
    lease = _lease(annotator_client)
    assert _submit(annotator_client, lease, {"choice": "A"}).status_code == 201
    response = _submit(annotator_client, lease, {"choice": "B"})
    assert response.status_code == 409 and response.json()["code"] == "already_submitted"


@pytest.mark.django_db
def test_another_annotators_assignment_is_not_found(annotator_client, member, make_task):
    make_task("pairwise")
    lease = _lease(annotator_client)
    intruder = APIClient()
    intruder.force_authenticate(member(Role.ANNOTATOR))
    response = _submit(intruder, lease, {"choice": "A"})
    assert response.status_code == 404 and not Annotation.objects.exists()


@pytest.mark.django_db
def test_next_task_is_204_when_nothing_is_left(annotator_client):
    assert annotator_client.post("/api/v1/projects/demo/next-task/").status_code == 204


@pytest.mark.django_db
def test_revisions_keep_every_version(annotator_client, make_task):
    make_task("pairwise")
    lease = _lease(annotator_client)
    original = _submit(annotator_client, lease, {"choice": "A", "strength": 1}).json()
    first = annotator_client.post(f"/api/v1/annotations/{original['id']}/revise/", {"payload": {"choice": "tie"}}, format="json")
    assert first.status_code == 201
    stale = annotator_client.post(f"/api/v1/annotations/{original['id']}/revise/", {"payload": {"choice": "B"}}, format="json")
    assert stale.status_code == 409 and stale.json()["code"] == "stale_revision"
    second = annotator_client.post(f"/api/v1/annotations/{first.json()['id']}/revise/", {"payload": {"choice": "both_bad"}}, format="json")
    assert second.status_code == 201
    chain = list(Annotation.objects.order_by("id").values_list("payload__choice", "is_current", "supersedes_id"))
    assert chain == [
        (original["payload"]["choice"], False, None),
        ("tie", False, original["id"]),
        ("both_bad", True, first.json()["id"]),
    ]


@pytest.mark.django_db
def test_reviewer_revision_is_marked_as_review(annotator_client, member, make_task):
    make_task("rating")
    lease = _lease(annotator_client)
    original = _submit(annotator_client, lease, {"thumb": "up"}).json()
    reviewer = APIClient()
    reviewer.force_authenticate(member(Role.REVIEWER))
    response = reviewer.post(f"/api/v1/annotations/{original['id']}/revise/", {"payload": {"thumb": "down"}}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["is_review"] and body["supersedes"] == original["id"] and body["payload"] == {"thumb": "down"}


@pytest.mark.django_db
def test_annotation_records_the_guideline_version_in_force(annotator_client, project, make_task):
    from annotation import services

    services.guideline_version_create(project=project, body="v1")
    services.guideline_version_create(project=project, body="v2")
    make_task("demonstration")
    lease = _lease(annotator_client)
    assert lease["guideline_version"] == 2
    created = _submit(annotator_client, lease, {"text": "hi"}).json()
    assert annotator_client.get(f"/api/v1/annotations/{created['id']}/").json()["guideline_version"] == 2


@pytest.mark.django_db
def test_token_login_and_revocation(make_user):
    make_user("ana")
    client = APIClient()
    bad = client.post("/api/v1/auth/token/", {"username": "ana", "password": "wrong"}, format="json")
    assert bad.status_code == 400
    token = client.post("/api/v1/auth/token/", {"username": "ana", "password": "correct-horse-battery"}, format="json").json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/projects/").status_code == 200
    assert client.delete("/api/v1/auth/token/").status_code == 204
    assert client.get("/api/v1/projects/").status_code == 401


@pytest.mark.django_db
def test_schema_and_docs_are_served(annotator_client):
    schema = annotator_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200 and "/api/v1/projects/{slug}/next-task/" in schema.json()["paths"]
    assert annotator_client.get("/api/docs/").status_code == 200


@pytest.mark.django_db
def test_task_kind_shape_is_validated(project, member):
    client = APIClient()
    client.force_authenticate(member(Role.ENGINEER))
    prompt = client.post("/api/v1/projects/demo/prompts/", {"messages": [{"role": "user", "content": "Q"}]}, format="json").json()
    r = client.post("/api/v1/projects/demo/responses/", {"prompt": prompt["id"], "content": "A"}, format="json").json()
    bad = client.post("/api/v1/projects/demo/tasks/", {"kind": "pairwise", "prompt": prompt["id"], "responses": [r["id"]]}, format="json")
    assert bad.status_code == 400 and "responses" in bad.json()["fields"]
    good = client.post("/api/v1/projects/demo/tasks/", {"kind": "rating", "prompt": prompt["id"], "responses": [r["id"]]}, format="json")
    assert good.status_code == 201 and Task.objects.get().open_slots == 2
