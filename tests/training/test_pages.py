"""The training pages: model registry with lineage, generation jobs (launch, live progress, cancel), roles, escaping."""

import pytest
from django.test import Client

from annotation import services as annotation_services
from annotation.models import ResponseOrigin
from tests.support.clients import web as login
from training.models import GenerationJob
from training.services import generation_job_create, model_register

XSS = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def world(db, make_user, tmp_path):
    users = {role: make_user(role) for role in ("admin", "engineer", "reviewer", "annotator", "outsider")}
    project = annotation_services.project_create(name="Acme", slug="acme", created_by=users["admin"])
    for role in ("engineer", "reviewer", "annotator"):
        annotation_services.membership_set(project=project, user=users[role], role=role)
    annotation_services.project_create(name="Other", slug="other", created_by=users["outsider"])
    prompts = [annotation_services.prompt_create(project=project, messages=[{"role": "user", "content": f"Q{i}?"}])
               for i in range(3)]
    base = model_register(name="base-model", backend="transformers", path=str(tmp_path / "b"))
    model_register(name="tuned-model", backend="transformers", path=str(tmp_path / "t"), base_model=base, parent_run_id=3)
    return {"users": users, "project": project, "prompts": prompts, "base": base}


def test_signed_out_visitors_are_sent_to_sign_in(world):
    response = Client().get("/training/models/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_registry_lists_models_with_their_lineage(world):
    page = login(world["users"]["annotator"]).get("/training/models/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "base-model" in html and "tuned-model" in html
    assert "from <strong>base-model</strong>" in html and "training run 3" in html and "1 derived" in html


@pytest.mark.parametrize("role,status,has_form", [("admin", 200, True), ("engineer", 200, True), ("reviewer", 200, False),
                                                  ("annotator", 403, False), ("outsider", 404, False)])
def test_who_sees_the_generation_page_and_its_launch_form(world, role, status, has_form):
    page = login(world["users"][role]).get("/training/p/acme/generation/")
    assert page.status_code == status
    if status == 200:
        assert ('id="launch-form"' in page.content.decode()) is has_form


def test_an_engineer_launches_a_job_from_the_form(world, django_capture_on_commit_callbacks):
    form = {"model": "base-model", "n": 3, "task_kind": "ranking", "group_size": 3, "temperature": 0.5,
            "max_new_tokens": 64, "limit": 2, "priority": 5}
    with django_capture_on_commit_callbacks() as sent:
        response = login(world["users"]["engineer"]).post("/training/p/acme/generation/", form)
    assert response.status_code == 302
    job = GenerationJob.objects.get()
    assert (job.n, job.task_kind, job.group_size, job.total, job.task_priority) == (3, "ranking", 3, 6, 5)
    assert job.sampling["temperature"] == 0.5 and job.sampling["max_new_tokens"] == 64
    assert job.created_by == world["users"]["engineer"] and len(sent) == 1
    page = login(world["users"]["engineer"]).get("/training/p/acme/generation/").content.decode()
    assert f'id="job-{job.pk}"' in page and "0/6 responses" in page


def test_a_launch_form_sent_twice_launches_once(world):
    """The form carries a fresh client id each time it is shown; sending the same page twice (a double click, a
    resubmitted page) makes one job, and the next form shown makes a new one."""
    import re

    engineer = login(world["users"]["engineer"])
    page = engineer.get("/training/p/acme/generation/").content.decode()
    [launch_id] = re.findall(r'name="client_id" value="([0-9a-f-]{36})"', page)
    form = {"model": "base-model", "n": 2, "task_kind": "pairwise", "limit": 1, "client_id": launch_id}
    assert engineer.post("/training/p/acme/generation/", form).status_code == 302
    assert engineer.post("/training/p/acme/generation/", form).status_code == 302
    assert GenerationJob.objects.count() == 1 and str(GenerationJob.objects.get().client_id) == launch_id
    [fresh] = re.findall(r'name="client_id" value="([0-9a-f-]{36})"',
                         engineer.get("/training/p/acme/generation/").content.decode())
    assert fresh != launch_id
    assert engineer.post("/training/p/acme/generation/", {**form, "client_id": fresh}).status_code == 302
    assert GenerationJob.objects.count() == 2


def test_a_launch_the_service_refuses_shows_why(world):
    form = {"model": "base-model", "n": 1, "task_kind": "pairwise"}
    response = login(world["users"]["engineer"]).post("/training/p/acme/generation/", form, follow=True)
    assert "at least 2 samples" in response.content.decode()
    assert not GenerationJob.objects.exists()


def test_a_refused_launch_answers_400_and_puts_the_reason_beside_its_field(world):
    form = {"model": "base-model", "n": 1, "task_kind": "pairwise"}
    response = login(world["users"]["engineer"]).post("/training/p/acme/generation/", form)
    assert response.status_code == 400
    html = response.content.decode()
    assert "pairs need at least 2 samples" in html and '<span class="error small">at least 2 for pairwise tasks' in html
    assert not GenerationJob.objects.exists()


def test_the_generate_command_names_an_option_that_is_not_json(world):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--sampling is not JSON"):
        call_command("generate", project="acme", model="base-model", sampling="{temperature: 1}")
    assert not GenerationJob.objects.exists()


def test_a_reviewer_cannot_launch(world):
    form = {"model": "base-model", "n": 2, "task_kind": "pairwise"}
    assert login(world["users"]["reviewer"]).post("/training/p/acme/generation/", form).status_code == 403


def test_progress_refreshes_itself_while_the_job_runs_and_stops_when_it_ends(world):
    job = generation_job_create(project=world["project"], model=world["base"], n=2)
    c = login(world["users"]["reviewer"])
    fragment = c.get(f"/training/p/acme/generation/{job.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert fragment.lstrip().startswith("<tr") and 'hx-trigger="every 2s"' in fragment
    GenerationJob.objects.filter(pk=job.pk).update(status="succeeded", done=6)
    fragment = c.get(f"/training/p/acme/generation/{job.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in fragment and "6/6 responses" in fragment


def test_cancel_from_the_page(world):
    job = generation_job_create(project=world["project"], model=world["base"], n=2)
    assert login(world["users"]["reviewer"]).post(f"/training/p/acme/generation/{job.pk}/cancel/").status_code == 403
    response = login(world["users"]["engineer"]).post(f"/training/p/acme/generation/{job.pk}/cancel/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_progress_polled_after_the_session_ended_sends_the_whole_page_to_sign_in(world):
    # The same access rule as every other page: the login form is never swapped into the progress row.
    job = generation_job_create(project=world["project"], model=world["base"], n=2)
    here = f"/training/p/acme/generation/{job.pk}/"
    response = Client().get(here, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=f"http://testserver{here}")
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/login/?next=%2Ftraining%2Fp%2Facme%2Fgeneration%2F{job.pk}%2F"


def test_model_output_and_errors_are_shown_escaped(world):
    job = generation_job_create(project=world["project"], model=world["base"], n=2)
    annotation_services.response_create(
        prompt=world["prompts"][0], content=XSS, origin=ResponseOrigin.GENERATED, model_name="base-model",
        generation={"job": job.pk, "sample": 0, "completion_tokens": 9}, dedupe_key=f"gen:{job.pk}:0",
    )
    GenerationJob.objects.filter(pk=job.pk).update(status="failed", error=XSS)
    html = login(world["users"]["engineer"]).get(f"/training/p/acme/generation/{job.pk}/").content.decode()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in html
