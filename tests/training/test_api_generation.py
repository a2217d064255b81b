"""The registry and generation-job API: who may read, launch and cancel; validation; what a job reports."""

import pytest

from annotation import services as annotation_services
from tests.support.clients import api as client
from training.models import GenerationJob
from training.services import model_register

ROLES = ["admin", "engineer", "reviewer", "annotator", "outsider"]


@pytest.fixture
def world(db, make_user, tmp_path):
    users = {role: make_user(role) for role in ROLES}
    users["staff"] = make_user("staff", is_staff=True)
    project = annotation_services.project_create(name="P", slug="p", created_by=users["admin"])
    for role in ("engineer", "reviewer", "annotator"):
        annotation_services.membership_set(project=project, user=users[role], role=role)
    annotation_services.project_create(name="Other", slug="other", created_by=users["outsider"])
    for i in range(3):
        annotation_services.prompt_create(project=project, messages=[{"role": "user", "content": f"Q{i}?"}])
    base = model_register(name="base", backend="transformers", path=str(tmp_path / "base"), sampling={"temperature": 0.7})
    tuned = model_register(name="tuned", backend="transformers", path=str(tmp_path / "tuned"), base_model=base,
                           parent_run_id=7)
    model_register(name="rm", backend="transformers", path=str(tmp_path / "rm"), roles=["reward"])
    return {"users": users, "project": project, "base": base, "tuned": tuned}


def launch(user, **body):
    body = {"model": "base", "n": 2, "task_kind": "pairwise", **body}
    return client(user).post("/api/v1/projects/p/generation-jobs/", body, format="json")


def test_everyone_signed_in_reads_the_registry_with_lineage(world):
    assert client().get("/api/v1/models/").status_code in (401, 403)
    response = client(world["users"]["annotator"]).get("/api/v1/models/")
    assert response.status_code == 200
    names = [m["name"] for m in response.json()["results"]]
    assert names == ["base", "rm", "tuned"]
    detail = client(world["users"]["annotator"]).get(f"/api/v1/models/{world['tuned'].pk}/").json()
    assert detail["lineage"] == ["tuned", "base"]
    assert detail["base_model"] == "base" and detail["parent_run_id"] == 7


def test_only_staff_register_models(world, tmp_path):
    body = {"name": "new", "backend": "openai", "base_url": "http://127.0.0.1:8001/v1", "roles": ["policy", "judge"]}
    assert client(world["users"]["admin"]).post("/api/v1/models/", body, format="json").status_code == 403
    response = client(world["users"]["staff"]).post("/api/v1/models/", body, format="json")
    assert response.status_code == 201 and response.json()["roles"] == ["policy", "judge"]
    bad = {"name": "nourl", "backend": "openai"}
    response = client(world["users"]["staff"]).post("/api/v1/models/", bad, format="json")
    assert response.status_code == 400 and "base_url" in response.json()["fields"]
    secret = {**body, "name": "leaky", "options": {"api_key": "sk-123"}}
    response = client(world["users"]["staff"]).post("/api/v1/models/", secret, format="json")
    assert response.status_code == 400 and "options" in response.json()["fields"]


@pytest.mark.parametrize("role,status", [("admin", 201), ("engineer", 201), ("reviewer", 403), ("annotator", 403),
                                         ("outsider", 404)])
def test_admins_and_engineers_launch_generation_jobs(world, role, status, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as sent:
        response = launch(world["users"][role])
    assert response.status_code == status, response.content
    if status == 201:
        job = response.json()
        assert (job["status"], job["done"], job["total"], job["model"], job["n"]) == ("queued", 0, 6, "base", 2)
        assert job["sampling"]["temperature"] == 0.7  # the model's default
        assert len(sent) == 1
    else:
        assert not GenerationJob.objects.exists() and not sent


@pytest.mark.parametrize("role,status", [("admin", 200), ("engineer", 200), ("reviewer", 200), ("annotator", 403),
                                         ("outsider", 404)])
def test_data_readers_watch_jobs(world, role, status):
    job_id = launch(world["users"]["engineer"]).json()["id"]
    assert client(world["users"][role]).get("/api/v1/projects/p/generation-jobs/").status_code == status
    response = client(world["users"][role]).get(f"/api/v1/projects/p/generation-jobs/{job_id}/")
    assert response.status_code == status
    if status == 200:
        assert response.json()["percent"] == 0


@pytest.mark.parametrize(
    "body,field",
    [
        ({"model": "nope"}, "model"),
        ({"model": "rm"}, "model"),
        ({"n": 0}, "n"),
        ({"n": 1}, "n"),
        ({"task_kind": "essay"}, "task_kind"),
        ({"prompt_filter": {"tags": ["none-has-this"]}}, "prompt_filter"),
        ({"prompt_filter": {"limit": 0}}, "prompt_filter"),
        ({"sampling": {"top_p": 2}}, "sampling"),
    ],
)
def test_a_bad_launch_is_a_400_naming_the_field(world, body, field):
    response = launch(world["users"]["engineer"], **body)
    assert response.status_code == 400, response.content
    data = response.json()
    assert field in (data.get("fields") or data), data


def test_cancel_then_cancel_again(world):
    job_id = launch(world["users"]["engineer"]).json()["id"]
    url = f"/api/v1/projects/p/generation-jobs/{job_id}/cancel/"
    assert client(world["users"]["reviewer"]).post(url).status_code == 403
    response = client(world["users"]["engineer"]).post(url)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = client(world["users"]["engineer"]).post(url)
    assert again.status_code == 409 and again.json()["code"] == "job_finished"


def test_a_job_is_not_reachable_through_another_project(world):
    job_id = launch(world["users"]["engineer"]).json()["id"]
    # The outsider administers "other": the job id of "p" does not exist there.
    response = client(world["users"]["outsider"]).get(f"/api/v1/projects/other/generation-jobs/{job_id}/")
    assert response.status_code == 404


def test_the_schema_documents_the_generation_endpoints(world):
    schema = client(world["users"]["admin"]).get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "/api/v1/projects/{slug}/generation-jobs/" in text and "/api/v1/models/" in text


def test_a_retried_launch_with_its_client_id_returns_the_first_job(world, django_capture_on_commit_callbacks):
    engineer, admin = world["users"]["engineer"], world["users"]["admin"]
    key = "8d6c53a4-3f0e-4a53-9d7e-2b1f0c9a6e11"
    with django_capture_on_commit_callbacks() as sent:
        first = launch(engineer, client_id=key)
        again = launch(engineer, client_id=key)
    assert (first.status_code, again.status_code) == (201, 200), again.content
    assert again.json()["id"] == first.json()["id"] and again.json()["client_id"] == key
    assert GenerationJob.objects.count() == 1 and len(sent) == 1  # one job, one message
    # Someone else's id is not theirs to replay; a new id (or none) is a new job.
    taken = launch(admin, client_id=key)
    assert taken.status_code == 409 and taken.json()["code"] == "client_id_taken"
    assert launch(engineer, client_id="0b0e6a0e-7c1e-4a8e-9f59-3c0b5d1f2a77").status_code == 201
    assert launch(engineer).status_code == 201
    assert GenerationJob.objects.count() == 3


def test_the_database_settles_two_launches_with_one_client_id(world):
    """The loser of a race (its check ran before the winner committed) gets the winner's row from the unique
    constraint, not a second job."""
    from training.services.launch import insert_once

    engineer, project = world["users"]["engineer"], world["project"]
    key = "5a1f0b7e-1111-4c2d-8e3f-000000000001"
    fields = {"model": world["base"], "prompt_ids": [1], "total": 2}
    first = insert_once(GenerationJob, project=project, client_id=key, created_by=engineer, **fields)
    second = insert_once(GenerationJob, project=project, client_id=key, created_by=engineer, **fields)
    assert (first.replayed, second.replayed, second.pk) == (False, True, first.pk)
    assert GenerationJob.objects.count() == 1
