"""Feedback jobs through the API, the pages and manage.py: who may read, launch and cancel; validation."""

import pytest
from django.core.management import call_command

from annotation import services
from annotation.models import Annotation
from tests.support.backends import FirstPositionBackend
from tests.support.clients import api
from tests.support.clients import web as page
from training.models import FeedbackJob

from .conftest import PRINCIPLES, run_to_end

ROLES = ["admin", "engineer", "reviewer", "annotator", "outsider"]


@pytest.fixture
def world(db, make_user, tiny):
    users = {role: make_user(role) for role in ROLES}
    project = services.project_create(name="P", slug="p", created_by=users["admin"])
    for role in ("engineer", "reviewer", "annotator"):
        services.membership_set(project=project, user=users[role], role=role)
    services.project_create(name="Other", slug="other", created_by=users["outsider"])
    services.constitution_version_create(project=project, principles=PRINCIPLES)
    prompt = services.prompt_create(project=project, messages=[{"role": "user", "content": "Hi <b>there</b>?"}])
    rs = [services.response_create(prompt=prompt, content=f"Answer {i}", dedupe_key=str(i)) for i in range(2)]
    services.task_create(project=project, kind="pairwise", prompt=prompt, responses=rs)
    return {"users": users, "project": project, "model": tiny}


def launch(user, **body):
    return api(user).post("/api/v1/projects/p/feedback-jobs/", {"kind": "judge", "model": "tiny-judge", **body},
                          format="json")


@pytest.mark.parametrize("role,status", [("admin", 201), ("engineer", 201), ("reviewer", 403), ("annotator", 403),
                                         ("outsider", 404)])
def test_who_may_launch_a_feedback_job(world, role, status):
    response = launch(world["users"][role])
    assert response.status_code == status, response.content
    if status == 201:
        body = response.json()
        assert body["kind"] == "judge" and body["status"] == "queued" and body["constitution_version"] == 1
        assert body["rater"] == "ai-tiny-judge"


@pytest.mark.parametrize("role,status", [("admin", 200), ("engineer", 200), ("reviewer", 200), ("annotator", 403),
                                         ("outsider", 404)])
def test_who_may_read_jobs_and_the_agreement(world, role, status):
    job = launch(world["users"]["engineer"]).json()
    user = world["users"][role]
    assert api(user).get("/api/v1/projects/p/feedback-jobs/").status_code == status
    assert api(user).get(f"/api/v1/projects/p/feedback-jobs/{job['id']}/").status_code == status
    assert api(user).get("/api/v1/projects/p/ai-agreement/").status_code == status
    assert api().get("/api/v1/projects/p/ai-agreement/").status_code in (401, 403)


def test_only_engineers_and_admins_cancel(world):
    job = launch(world["users"]["engineer"]).json()
    url = f"/api/v1/projects/p/feedback-jobs/{job['id']}/cancel/"
    assert api(world["users"]["reviewer"]).post(url).status_code == 403
    response = api(world["users"]["admin"]).post(url)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = api(world["users"]["admin"]).post(url)
    assert again.status_code == 409


def test_bad_input_gets_field_messages(world, tmp_path):
    from training.services import model_register

    model_register(name="rm", backend="transformers", path=str(tmp_path), roles=["reward"])
    engineer = world["users"]["engineer"]
    for body, field in [({"kind": "nope"}, "kind"), ({"model": "missing"}, "model"), ({"model": "rm"}, "model"), ({"rounds": 0}, "rounds"),
                        ({"principles": ["unknown"]}, "principles"), ({"scope": {"bogus": 1}}, "scope"),
                        ({"ranking_subset": "some"}, "ranking_subset"), ({"scope": {"ids": ["x"]}}, "scope"),
                        ({"scope": {"limit": "3"}}, "scope"), ({"scope": {"kinds": "pairwise"}}, "scope"),
                        ({"kind": "critique_revision", "scope": {"tags": 5}}, "scope"),
                        ({"revision_sampling": {"temperature": -1}}, "revision_sampling")]:
        response = launch(engineer, **body)
        assert response.status_code == 400, (body, response.content)
        data = response.json()
        assert field in (data.get("fields") or data), (body, data)


def test_the_agreement_api_reports_labels_after_a_job(world):
    job = launch(world["users"]["engineer"]).json()
    assert run_to_end(job["id"], backend=FirstPositionBackend()) == "succeeded"
    report = api(world["users"]["reviewer"]).get("/api/v1/projects/p/ai-agreement/").json()
    assert report["overall"]["ai_labels"] == 1 and report["overall"]["position_flip_rate"] == 1.0


@pytest.mark.parametrize("role,status,has_form", [("admin", 200, True), ("engineer", 200, True),
                                                  ("reviewer", 200, False), ("annotator", 403, False),
                                                  ("outsider", 404, False)])
def test_who_sees_the_feedback_page_and_its_form(world, role, status, has_form):
    response = page(world["users"][role]).get("/training/p/p/feedback/")
    assert response.status_code == status
    if status == 200:
        assert (b'id="feedback-form"' in response.content) == has_form
        assert page(world["users"][role]).get("/training/p/p/feedback/agreement/").status_code == 200


def test_an_engineer_launches_from_the_form_and_a_reviewer_cannot(world):
    form = {"kind": "judge", "model": "tiny-judge", "rounds": 1, "with_human_labels": ""}
    response = page(world["users"]["engineer"]).post("/training/p/p/feedback/", form)
    assert response.status_code == 302 and FeedbackJob.objects.count() == 1
    assert page(world["users"]["reviewer"]).post("/training/p/p/feedback/", form).status_code == 403
    assert FeedbackJob.objects.count() == 1


def test_the_constitution_editor_embeds_the_agreement_panel(world):
    admin = page(world["users"]["admin"])
    editor = admin.get("/p/p/constitution/")
    assert editor.status_code == 200 and b'hx-get="/training/p/p/feedback/agreement/?panel=1"' in editor.content
    job = launch(world["users"]["admin"]).json()
    run_to_end(job["id"], backend=FirstPositionBackend())
    panel = admin.get("/training/p/p/feedback/agreement/?panel=1")
    assert panel.status_code == 200 and b'id="agreement-by-principle"' in panel.content
    assert b"<html" not in panel.content.lower()[:200]


def test_manage_py_feedback_runs_inline_and_prints_agreement(world, capsys):
    from io import StringIO

    out = StringIO()
    call_command("feedback", "--project", "p", "--judge", "tiny-judge", "--inline", stdout=out)
    text = out.getvalue()
    assert "succeeded" in text and "agreement with people" in text
    assert Annotation.objects.filter(source="ai").count() == 1
    with pytest.raises(Exception, match="no model"):
        call_command("feedback", "--project", "p", "--judge", "missing", stdout=StringIO())


def test_a_retried_launch_with_its_client_id_returns_the_first_job(world):
    from training.models import FeedbackJob

    key = "c0ffee00-1234-4abc-8def-0123456789ab"
    first = launch(world["users"]["engineer"], client_id=key)
    again = launch(world["users"]["engineer"], client_id=key)
    assert (first.status_code, again.status_code) == (201, 200), again.content
    assert again.json()["id"] == first.json()["id"] and again.json()["client_id"] == key
    assert FeedbackJob.objects.count() == 1
    assert launch(world["users"]["admin"], client_id=key).status_code == 409
