"""Who may see and run rounds, in the API and the web UI alike: admins and engineers run and cancel, reviewers
look, annotators get 403, outsiders 404; bad input is a 400 with field messages; the round page shows the lineage
and the figures of a finished round."""

import pytest

from annotation import services as annotation_services
from annotation.models import Task
from tests.support.clients import api, web
from tests.support.tiny import save_tiny_model
from tests.training.job_messages import hold_messages
from training.models import Model
from training.rounds.models import Round
from training.rounds.runner import round_create
from training.services import model_register

CONFIG = {"prompts_per_round": 2, "eval_prompts": 1, "sampling": {"max_new_tokens": 8}}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("rounds-pages") / "tiny")


@pytest.fixture
def world(db, make_user, tiny_dir, monkeypatch):
    hold_messages(monkeypatch)
    users = {role: make_user(role) for role in ("admin", "engineer", "reviewer", "annotator", "outsider")}
    project = annotation_services.project_create(name="Loop", slug="loop", created_by=users["admin"])
    for role in ("engineer", "reviewer", "annotator"):
        annotation_services.membership_set(project=project, user=users[role], role=role)
    for i in range(5):
        annotation_services.prompt_create(project=project, messages=[{"role": "user", "content": f"Say {i}."}])
    model_register(name="tiny", backend="transformers", path=str(tiny_dir), roles=["policy", "judge"])
    return {"project": project, "users": users}


URL = "/api/v1/projects/loop/rounds/"
GOOD = {"policy": "tiny", "judge": "tiny", "config": CONFIG}


@pytest.mark.django_db
def test_api_roles(world):
    u = world["users"]
    assert api(u["outsider"]).get(URL).status_code == 404
    assert api(u["annotator"]).get(URL).status_code == 403
    assert api(u["reviewer"]).get(URL).status_code == 200
    assert api(u["reviewer"]).post(URL, GOOD, format="json").status_code == 403
    assert api(u["annotator"]).post(URL, GOOD, format="json").status_code == 403
    assert not Round.objects.exists()
    created = api(u["engineer"]).post(URL, GOOD, format="json")
    assert created.status_code == 201, created.content
    assert (created.json()["number"], created.json()["policy"], created.json()["status"]) == (1, "tiny", "queued")
    # A second round while the first runs is a conflict, not a second loop.
    again = api(u["admin"]).post(URL, GOOD, format="json")
    assert again.status_code == 409 and again.json()["code"] == "round_active"
    detail = api(u["reviewer"]).get(URL + "1/")
    assert detail.status_code == 200 and detail.json()["lineage"]["policy"] == "tiny"
    assert api(u["annotator"]).get(URL + "1/").status_code == 403
    assert api(u["reviewer"]).post(URL + "1/cancel/").status_code == 403
    cancelled = api(u["engineer"]).post(URL + "1/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api(u["engineer"]).post(URL + "1/cancel/").status_code == 409


@pytest.mark.django_db
def test_a_retried_round_launch_returns_the_running_round_not_a_conflict(world):
    engineer = world["users"]["engineer"]
    body = {**GOOD, "client_id": "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"}
    first = api(engineer).post(URL, body, format="json")
    # The first answer was lost; the retry comes while that round is in progress.
    again = api(engineer).post(URL, body, format="json")
    assert (first.status_code, again.status_code) == (201, 200), again.content
    assert again.json()["number"] == first.json()["number"] == 1 and again.json()["client_id"] == body["client_id"]
    assert Round.objects.count() == 1
    # A launch without the id is a new request and meets the running round.
    assert api(engineer).post(URL, GOOD, format="json").status_code == 409


@pytest.mark.django_db
def test_api_bad_input_is_400_with_field_messages(world):
    engineer = world["users"]["engineer"]
    bad = api(engineer).post(URL, {"policy": "nope", "label_mode": "robots", "rounds": 0}, format="json")
    assert bad.status_code == 400
    assert {"policy", "label_mode", "rounds"} <= set(bad.json()["fields"] if "fields" in bad.json() else bad.json())
    bad = api(engineer).post(URL, {**GOOD, "config": {"n": 1, "selection": {"policy": "psychic"}}}, format="json")
    assert bad.status_code == 400, bad.content
    assert "config.n" in str(bad.json()) and "config.selection" in str(bad.json())
    bad = api(engineer).post(URL, {"policy": "tiny", "label_mode": "ai"}, format="json")
    assert bad.status_code == 400 and "judge" in str(bad.json())
    assert not Round.objects.exists()


@pytest.mark.django_db
def test_web_roles_and_the_run_button(world):
    u = world["users"]
    page = "/training/p/loop/rounds/"
    assert web(u["outsider"]).get(page).status_code == 404
    assert web(u["annotator"]).get(page).status_code == 403
    seen = web(u["reviewer"]).get(page)
    assert seen.status_code == 200 and b'id="run-round"' not in seen.content
    assert web(u["reviewer"]).post(page, {"rounds": 1, "label_mode": "ai", "policy": "tiny", "judge": "tiny"}).status_code == 403
    assert not Round.objects.exists()
    engineer = web(u["engineer"])
    assert b'id="run-round"' in engineer.get(page).content
    bad = engineer.post(page, {"rounds": 0, "label_mode": "ai", "policy": "tiny"})
    assert bad.status_code == 400 and not Round.objects.exists()
    no_judge = engineer.post(page, {"rounds": 1, "label_mode": "ai", "policy": "tiny"})
    assert no_judge.status_code == 400 and b"judge" in no_judge.content
    ran = engineer.post(page, {"rounds": 2, "label_mode": "ai", "policy": "tiny", "judge": "tiny", "prompts_per_round": 2})
    assert ran.status_code == 302, ran.content.decode()[-3000:]
    assert ran["Location"].endswith("/training/p/loop/rounds/1/")
    rnd = Round.objects.get()
    assert (rnd.rounds_after, rnd.created_by, len(rnd.prompt_ids)) == (1, u["engineer"], 2)
    assert web(u["annotator"]).get("/training/p/loop/rounds/1/").status_code == 403
    assert web(u["reviewer"]).post("/training/p/loop/rounds/1/cancel/").status_code == 403
    assert web(u["admin"]).post("/training/p/loop/rounds/1/cancel/").status_code == 302
    rnd.refresh_from_db()
    assert rnd.status == "cancelled"


@pytest.mark.django_db
def test_round_page_shows_lineage_and_figures(world):
    project = world["project"]
    rnd = round_create(project=project, policy=Model.objects.get(name="tiny"),
                       judge=None, label_mode="human", config=CONFIG)
    Round.objects.filter(pk=rnd.pk).update(
        status="succeeded", stage="done", snapshot_sha256="ab" * 32,
        stage_times={"generate": {"seconds": 12.5}, "train": {"seconds": 80.0}},
        evaluation={
            "win_rate": {"estimate": 0.625, "low": 0.375, "high": 0.875, "n": 8, "wins": 5, "losses": 3, "ties": 0,
                         "judge": "tiny", "new": "tiny-2", "previous": "tiny", "position_consistency": 0.5},
            "sycophancy": {"probes": 52, "policy_before": {"estimate": 0.4, "low": 0.3, "high": 0.5},
                           "policy_after": {"estimate": 0.45, "low": 0.3, "high": 0.6, "by_category": {"code": 0.5}}},
            "lengths": {"policy_candidates": {"n": 4, "mean_tokens": 41.5, "mean_chars": 180.0}},
            "leaderboard": [{"rank": 1, "model": "tiny-2", "rating": 1010.0, "low": 990.0, "high": 1030.0, "games": 8}],
        },
    )
    page = web(world["users"]["reviewer"]).get("/training/p/loop/rounds/1/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "ab" * 32 in html and "0.625" in html and "[0.375, 0.875]" in html
    assert "41.5" in html and "tiny-2" in html and "80.0" in html and "52 prompts" in html
    listing = web(world["users"]["reviewer"]).get("/training/p/loop/rounds/").content.decode()
    assert "round-series" in html or "round-series" in listing
    assert Task.objects.count() == 0  # nothing generated by looking
