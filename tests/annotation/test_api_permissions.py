"""Every endpoint, walked by every role, an outsider (member of another project) and anonymous."""

import io
import json
import uuid

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Role

ROLES = ["admin", "engineer", "reviewer", "annotator", "outsider", "anonymous"]
EVERY_MEMBER = {"admin", "engineer", "reviewer", "annotator"}
LABELLERS = {"admin", "reviewer", "annotator"}
DATA_READERS = {"admin", "engineer", "reviewer"}
DATA_MANAGERS = {"admin", "engineer"}
ADMINS = {"admin"}

PRINCIPLE = {
    "key": "harmless",
    "name": "Harmlessness",
    "critique_request": "Identify ways the response is harmful.",
    "revision_request": "Rewrite the response to remove harmful content.",
    "comparison_question": "Which response is less harmful?",
}


@pytest.fixture
def world(db, make_user, make_task):
    users = {role: make_user(role) for role in ROLES if role != "anonymous"}
    project = services.project_create(name="P", slug="p", created_by=users["admin"], required_annotations=2)
    for role in ("engineer", "reviewer", "annotator"):
        services.membership_set(project=project, user=users[role], role=role)
    other = services.project_create(name="Other", slug="other", created_by=users["outsider"])
    services.guideline_version_create(project=project, body="# Be kind", created_by=users["admin"])
    services.constitution_version_create(project=project, principles=[PRINCIPLE], created_by=users["admin"])
    task = make_task("pairwise", proj=project)
    make_task("pairwise", proj=project)
    lease = services.task_next_for(annotator=users["annotator"], project=project)
    first = services.task_next_for(annotator=users["reviewer"], project=project)
    annotation = services.annotation_submit(
        assignment=first, annotator=users["reviewer"], payload={"choice": "B", "strength": 1}, client_id=uuid.uuid4()
    )
    get_user_model().objects.create_user("newcomer", password="x")
    return {"users": users, "project": project, "other": other, "task": task, "lease": lease, "annotation": annotation}


def _jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def endpoints(w):
    p = "/api/v1/projects/p/"
    prompt_id = w["task"].prompt_id
    response_ids = list(w["task"].task_responses.values_list("response_id", flat=True))
    return [
        ("GET", p, None, EVERY_MEMBER),
        ("PATCH", p, {"description": "new"}, ADMINS),
        ("GET", p + "members/", None, ADMINS),
        ("POST", p + "members/", {"username": "newcomer", "role": "annotator"}, ADMINS),
        ("PATCH", p + f"members/{w['users']['annotator'].pk}/", {"role": "reviewer"}, ADMINS),
        ("DELETE", p + f"members/{w['users']['engineer'].pk}/", None, ADMINS),
        ("GET", p + "guidelines/", None, EVERY_MEMBER),
        ("GET", p + "guidelines/1/", None, EVERY_MEMBER),
        ("POST", p + "guidelines/", {"body": "# Be kinder"}, ADMINS),
        ("GET", p + "constitutions/", None, EVERY_MEMBER),
        ("GET", p + "constitutions/1/", None, EVERY_MEMBER),
        ("POST", p + "constitutions/", {"principles": [PRINCIPLE]}, ADMINS),
        ("GET", p + "prompts/", None, DATA_READERS),
        ("POST", p + "prompts/", {"messages": [{"role": "user", "content": "Hi?"}]}, DATA_MANAGERS),
        ("GET", p + "responses/", None, DATA_READERS),
        ("POST", p + "responses/", {"prompt": prompt_id, "content": "Hello."}, DATA_MANAGERS),
        ("GET", p + "tasks/", None, DATA_READERS),
        ("GET", p + f"tasks/{w['task'].pk}/", None, DATA_READERS),
        ("POST", p + "tasks/", {"kind": "pairwise", "prompt": prompt_id, "responses": response_ids[::-1]}, DATA_MANAGERS),
        ("POST", p + "next-task/", None, LABELLERS),
        ("GET", p + "annotations/", None, EVERY_MEMBER),
        ("POST", p + "imports/", "upload", DATA_MANAGERS),
        ("GET", p + "snapshots/", None, DATA_MANAGERS),
        ("POST", p + "snapshots/", {"format": "preference"}, DATA_MANAGERS),
        ("POST", f"/api/v1/assignments/{w['lease'].pk}/submit/", {"payload": {"choice": "A"}, "client_id": str(uuid.uuid4())}, {"annotator"}),
        ("POST", f"/api/v1/assignments/{w['lease'].pk}/skip/", {"reason": "no"}, {"annotator"}),
        ("GET", f"/api/v1/annotations/{w['annotation'].pk}/", None, DATA_READERS),
        ("POST", f"/api/v1/annotations/{w['annotation'].pk}/revise/", {"payload": {"choice": "tie"}}, {"admin", "reviewer"}),
    ]


ENDPOINT_COUNT = 28
# Objects outside /projects/{slug}/ that some roles may see but not change (so they get 403, not 404).
def can_see(url: str) -> set:
    return DATA_READERS if url.startswith("/api/v1/annotations/") else set()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("index", range(ENDPOINT_COUNT))
def test_permission_matrix(world, role, index):
    method, url, body, allowed = endpoints(world)[index]
    client = APIClient()
    if role != "anonymous":
        client.force_authenticate(world["users"][role])
    if body == "upload":
        upload = io.BytesIO(_jsonl([{"prompt": "What is 2+2?"}]))
        upload.name = "prompts.jsonl"
        response = client.post(url, {"file": upload}, format="multipart")
    else:
        response = client.generic(method, url, json.dumps(body) if body is not None else "", content_type="application/json")
    if role in allowed:
        assert 200 <= response.status_code < 300, (method, url, role, response.status_code, response.content[:300])
    elif role == "anonymous":
        assert response.status_code == 401, (method, url, response.status_code)
    elif role == "outsider" or (not url.startswith("/api/v1/projects/p/") and role not in can_see(url)):
        # Not a member (or not allowed to see the object): its existence is not revealed.
        assert response.status_code == 404, (method, url, role, response.status_code)
    else:
        assert response.status_code == 403, (method, url, role, response.status_code)


def test_endpoint_list_is_complete(world):
    assert len(endpoints(world)) == ENDPOINT_COUNT


@pytest.mark.django_db
def test_project_list_shows_only_member_projects(world):
    client = APIClient()
    client.force_authenticate(world["users"]["annotator"])
    slugs = [p["slug"] for p in client.get("/api/v1/projects/").json()["results"]]
    assert slugs == ["p"]


@pytest.mark.django_db
def test_annotator_sees_only_their_own_annotations(world):
    client = APIClient()
    annotator = world["users"]["annotator"]
    client.force_authenticate(annotator)
    assert client.get("/api/v1/projects/p/annotations/").json()["results"] == []
    services.annotation_submit(
        assignment=world["lease"], annotator=annotator, payload={"choice": "A", "strength": 2}, client_id=uuid.uuid4()
    )
    rows = client.get("/api/v1/projects/p/annotations/").json()["results"]
    assert [r["author"] for r in rows] == ["annotator"]
    reviewer = APIClient()
    reviewer.force_authenticate(world["users"]["reviewer"])
    assert {r["author"] for r in reviewer.get("/api/v1/projects/p/annotations/").json()["results"]} == {"annotator", "reviewer"}


@pytest.mark.django_db
def test_only_staff_create_projects(world):
    client = APIClient()
    client.force_authenticate(world["users"]["admin"])
    assert client.post("/api/v1/projects/", {"name": "X", "slug": "x"}, format="json").status_code == 403
    staff = get_user_model().objects.create_user("staff", password="x", is_staff=True)
    client.force_authenticate(staff)
    created = client.post("/api/v1/projects/", {"name": "X", "slug": "x"}, format="json")
    assert created.status_code == 201
    assert services.membership_set  # the creator is the new project's admin:
    assert client.get("/api/v1/projects/x/members/").json()["results"][0]["role"] == Role.ADMIN
