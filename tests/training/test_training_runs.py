"""Training runs on the platform: launch validated against the trainer's config, the trainer process followed by
the Celery task (metrics rows, log tail, result, output model with lineage), cancel with a checkpoint, the
reconciler for a dead worker, and who may do what."""

import hashlib
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotation import services as annotation_services
from annotation.models import DatasetSnapshot
from tests.support.clients import api
from tests.support.snapshots import sft_rows, write_jsonl
from tests.support.tiny import save_tiny_model
from tests.training.job_messages import hold_messages
from training.models import JobStatus, TrainingMetric, TrainingRun
from training.services import model_register
from training.services.runs import (
    training_run_cancel,
    training_run_create,
    training_run_relaunch,
    training_runs_reconcile,
)
from training.tasks import reconcile, training_run_execute
from training.trainers.runtime import last_checkpoint

FAST = {"max_steps": 2, "batch_size": 2, "max_length": 64, "num_threads": 1, "save_steps": 1, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture
def world(db, make_user, tmp_path, tiny_dir, settings):
    settings.MODEL_DIR = tmp_path / "models"
    users = {role: make_user(role) for role in ("admin", "engineer", "reviewer", "annotator")}
    project = annotation_services.project_create(name="P", slug="p", created_by=users["admin"])
    for role in ("engineer", "reviewer", "annotator"):
        annotation_services.membership_set(project=project, user=users[role], role=role)
    path = write_jsonl(tmp_path / "sft.jsonl", sft_rows())
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    snapshot = DatasetSnapshot.objects.create(project=project, format="sft", sha256=sha, path=str(path), row_count=8)
    base = model_register(name="tiny", backend="transformers", path=str(tiny_dir))
    return {"users": users, "project": project, "snapshot": snapshot, "base": base}


def launch(world, **hyper):
    run = training_run_create(project=world["project"], method="sft", base_model=world["base"],
                              snapshot=world["snapshot"], hyperparameters={**FAST, **hyper})
    return run


def test_sft_run_succeeds_with_metrics_and_a_registered_output_model(world, django_capture_on_commit_callbacks, monkeypatch):
    sent = hold_messages(monkeypatch)
    # The test's transaction stands in for the worker's own connection; the task must not close it.
    monkeypatch.setattr("training.tasks.close_old_connections", lambda: None)
    with django_capture_on_commit_callbacks(execute=True):
        run = launch(world)
    assert sent == [("training.training_run_execute", [run.pk, run.ticket], "gpu")] and run.status == JobStatus.QUEUED
    assert training_run_execute.apply(args=[run.pk]).get() == JobStatus.SUCCEEDED
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED and run.step == 2 and run.owner == ""
    assert run.result["status"] == "succeeded" and run.result["steps"] == 2
    names = set(TrainingMetric.objects.filter(run=run).values_list("name", flat=True))
    assert "loss" in names
    assert TrainingMetric.objects.filter(run=run, name="loss").count() == 2
    output = run.output_model
    assert output is not None and output.parent_run_id == run.pk and output.base_model == world["base"]
    assert output.metadata["snapshot_sha256"] == world["snapshot"].sha256 == run.snapshot_sha256
    assert output.roles == ["policy"] and output.path == run.output_dir
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(output.path) is not None
    # Read back through the API with the metrics as series; a second execution of the message does nothing.
    detail = api(world["users"]["reviewer"]).get(f"/api/v1/projects/p/training-runs/{run.pk}/").json()
    assert detail["status"] == "succeeded" and [p[0] for p in detail["metrics"]["loss"]] == [1, 2]
    assert detail["output_model"] == output.name and detail["result"]["steps"] == 2
    assert training_run_execute.apply(args=[run.pk]).get() == "skipped"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cancel_stops_the_trainer_with_a_checkpoint(world, monkeypatch):
    hold_messages(monkeypatch)
    run = launch(world, max_steps=5000, save_steps=10000)
    outcome = {}

    def worker():
        try:
            outcome["status"] = training_run_execute.apply(args=[run.pk]).get()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=worker)
    thread.start()
    deadline = time.monotonic() + 120
    while not TrainingMetric.objects.filter(run=run).exists() and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.2)
    training_run_cancel(run=run)
    thread.join(timeout=120)
    run.refresh_from_db()
    assert outcome["status"] == JobStatus.CANCELLED and run.status == JobStatus.CANCELLED
    assert run.result["status"] == "cancelled" and run.result["checkpoint"]
    assert last_checkpoint(f"{run.output_dir}/checkpoints") is not None
    assert run.output_model is None and 0 < run.step < 5000
    with pytest.raises(Exception, match="already cancelled"):
        training_run_cancel(run=run)

    # A relaunch continues from that checkpoint: the first step it reports comes after it.
    stopped_at = run.step
    first_before = TrainingMetric.objects.filter(run=run).order_by("-id").values_list("id", flat=True).first()
    training_run_relaunch(run=run)
    thread = threading.Thread(target=worker)
    thread.start()
    deadline = time.monotonic() + 120
    while (not TrainingMetric.objects.filter(run=run, id__gt=first_before).exists()
           and time.monotonic() < deadline and thread.is_alive()):
        time.sleep(0.2)
    training_run_cancel(run=run)
    thread.join(timeout=120)
    run.refresh_from_db()
    resumed = TrainingMetric.objects.filter(run=run, id__gt=first_before).order_by("step").first()
    assert run.status == JobStatus.CANCELLED and run.attempts == 1
    assert resumed is not None and resumed.step > stopped_at, (resumed.step, stopped_at)


def test_invalid_hyperparameters_are_a_400_with_field_messages(world):
    body = {"method": "sft", "base_model": "tiny", "snapshot": world["snapshot"].sha256,
            "hyperparameters": {"learning_rate": -1, "batch_size": "big", "lerning_rate": 1}}
    response = api(world["users"]["engineer"]).post("/api/v1/projects/p/training-runs/", body, format="json")
    assert response.status_code == 400, response.content
    fields = response.json()["fields"]
    assert "batch_size" in fields and "lerning_rate" in fields and "learning_rate" in " ".join(fields["lerning_rate"])
    body["hyperparameters"] = {"output_dir": "/tmp/elsewhere"}
    response = api(world["users"]["engineer"]).post("/api/v1/projects/p/training-runs/", body, format="json")
    assert response.status_code == 400 and "output_dir" in response.json()["fields"]
    body["method"] = "dpo"
    body["hyperparameters"] = {}
    response = api(world["users"]["engineer"]).post("/api/v1/projects/p/training-runs/", body, format="json")
    assert response.status_code == 400 and "snapshot" in response.json()["fields"]
    assert not TrainingRun.objects.exists()


def test_roles_launch_read_and_cancel(world, monkeypatch):
    hold_messages(monkeypatch)
    body = {"method": "sft", "base_model": "tiny", "snapshot": world["snapshot"].pk, "hyperparameters": {"max_steps": 3}}
    url = "/api/v1/projects/p/training-runs/"
    assert api(world["users"]["annotator"]).post(url, body, format="json").status_code == 403
    assert api(world["users"]["annotator"]).get(url).status_code == 403
    assert api(world["users"]["reviewer"]).post(url, body, format="json").status_code == 403
    response = api(world["users"]["engineer"]).post(url, body, format="json")
    assert response.status_code == 201, response.content
    run_id = response.json()["id"]
    assert response.json()["snapshot_sha256"] == world["snapshot"].sha256
    assert [r["id"] for r in api(world["users"]["reviewer"]).get(url).json()["results"]] == [run_id]
    assert api(world["users"]["reviewer"]).post(f"{url}{run_id}/cancel/").status_code == 403
    response = api(world["users"]["admin"]).post(f"{url}{run_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert api(world["users"]["admin"]).post(f"{url}{run_id}/cancel/").status_code == 409
    assert api(world["users"]["reviewer"]).post(f"{url}{run_id}/relaunch/").status_code == 403
    response = api(world["users"]["engineer"]).post(f"{url}{run_id}/relaunch/")
    assert response.status_code == 200 and response.json()["status"] == "queued" and response.json()["attempts"] == 1
    assert api(world["users"]["engineer"]).post(f"{url}{run_id}/relaunch/").status_code == 409


def test_a_trainer_that_fails_ends_the_run_failed_with_its_log(world, monkeypatch, tmp_path):
    hold_messages(monkeypatch)
    monkeypatch.setattr("training.tasks.close_old_connections", lambda: None)
    run = launch(world)
    DatasetSnapshot.objects.filter(pk=world["snapshot"].pk).update(path=str(tmp_path / "gone.jsonl"))
    assert training_run_execute.apply(args=[run.pk]).get() == JobStatus.FAILED
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED and run.owner == "" and run.error and run.log_tail
    assert run.output_model is None


def test_reconciler_fails_a_run_whose_worker_went_silent(world, monkeypatch, settings):
    hold_messages(monkeypatch)
    monkeypatch.setattr("training.tasks.close_old_connections", lambda: None)
    run = launch(world)
    old = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS + 5)
    TrainingRun.objects.filter(pk=run.pk).update(status=JobStatus.RUNNING, owner="w1:1", heartbeat_at=old)
    fresh = launch(world)
    TrainingRun.objects.filter(pk=fresh.pk).update(status=JobStatus.RUNNING, owner="w2:1", heartbeat_at=timezone.now())
    from annotation.models import WebhookDelivery
    from annotation.services.webhooks import webhook_create

    webhook_create(project=run.project, url="https://hooks.example/runs", events=["run.finished"])
    counts = reconcile()
    assert counts["runs_failed"] == 1
    run.refresh_from_db()
    fresh.refresh_from_db()
    assert run.status == JobStatus.FAILED and "stopped responding" in run.error and run.owner == ""
    assert fresh.status == JobStatus.RUNNING
    assert training_runs_reconcile()["runs_failed"] == 0
    # The failure is reported to the project's webhooks, once.
    [delivery] = WebhookDelivery.objects.filter(event="run.finished")
    assert (delivery.payload["data"]["run"]["id"], delivery.payload["data"]["run"]["status"]) == (run.pk, "failed")


def test_run_pages_launch_form_and_live_data(world, client, monkeypatch):
    hold_messages(monkeypatch)
    client.force_login(world["users"]["annotator"])
    assert client.get("/training/p/p/runs/").status_code == 403
    client.force_login(world["users"]["engineer"])
    page = client.get("/training/p/p/runs/?method=dpo").content.decode()
    assert "No dpo snapshot" in page
    page = client.get("/training/p/p/runs/").content.decode()
    assert 'name="hp_learning_rate"' in page and 'value="2e-05"' in page
    bad = client.post("/training/p/p/runs/", {"method": "sft", "base_model": "tiny", "snapshot": world["snapshot"].pk,
                                               "hp_learning_rate": "-1", "hp_batch_size": "8"})
    assert bad.status_code == 400 and "must be a positive number" in bad.content.decode()
    good = client.post("/training/p/p/runs/", {"method": "sft", "base_model": "tiny", "snapshot": world["snapshot"].pk,
                                                "hp_max_steps": "3"})
    run = TrainingRun.objects.get()
    assert good.status_code == 302 and good["Location"].endswith(f"/training/p/p/runs/{run.pk}/")
    assert run.hyperparameters == {"max_steps": 3}
    TrainingMetric.objects.create(run=run, step=1, name="loss", value=2.5)
    TrainingRun.objects.filter(pk=run.pk).update(result={"evaluation": {"eval/accuracy": 0.75}})
    client.force_login(world["users"]["reviewer"])
    page = client.get(f"/training/p/p/runs/{run.pk}/").content.decode()
    assert "chart-4.6.1.umd.min.js" in page and 'id="chart-kl"' in page and "eval/accuracy" in page
    assert 'id="cancel-form"' not in page
    data = client.get(f"/training/p/p/runs/{run.pk}/data/").json()
    assert data["metrics"] == {"loss": [[1, 2.5]]} and data["status"] == "queued"
    assert client.get(f"/training/p/p/runs/{run.pk}/data/?since_step=1").json()["metrics"] == {}
    assert client.post(f"/training/p/p/runs/{run.pk}/cancel/").status_code == 403
    client.force_login(world["users"]["engineer"])
    assert client.post(f"/training/p/p/runs/{run.pk}/cancel/").status_code == 302
    assert TrainingRun.objects.get().status == JobStatus.CANCELLED


def test_train_command(world, monkeypatch):
    from django.core.management import CommandError, call_command

    hold_messages(monkeypatch)
    with pytest.raises(CommandError, match="learning_rate"):
        call_command("train", project="p", method="sft", snapshot=world["snapshot"].sha256[:10], model="tiny",
                     set=["learning_rate=-1"])
    call_command("train", project="p", method="sft", snapshot=str(world["snapshot"].pk), model="tiny",
                 set=["max_steps=2", "lr_scheduler=cosine"])
    run = TrainingRun.objects.get()
    assert run.hyperparameters == {"max_steps": 2, "lr_scheduler": "cosine"} and run.status == JobStatus.QUEUED


def test_a_retried_launch_with_its_client_id_returns_the_first_run(world, monkeypatch):
    hold_messages(monkeypatch)
    body = {"method": "sft", "base_model": "tiny", "snapshot": world["snapshot"].pk, "hyperparameters": FAST,
            "client_id": "3f9a1c2e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"}
    first = api(world["users"]["engineer"]).post("/api/v1/projects/p/training-runs/", body, format="json")
    again = api(world["users"]["engineer"]).post("/api/v1/projects/p/training-runs/", body, format="json")
    assert (first.status_code, again.status_code) == (201, 200), again.content
    assert again.json()["id"] == first.json()["id"] and again.json()["client_id"] == body["client_id"]
    assert TrainingRun.objects.count() == 1
    taken = api(world["users"]["admin"]).post("/api/v1/projects/p/training-runs/", body, format="json")
    assert taken.status_code == 409 and TrainingRun.objects.count() == 1
