"""Webhooks: a real Celery worker process POSTs signed deliveries to a local HTTP server; a failing receiver is
retried with growing delays and then marked failed; roles decide who manages webhooks and reads deliveries.

The worker uses the test database and a broker file of its own (so it never takes another run's messages); this
process sends to the same broker. Retry delays are shortened through the worker's environment.
"""

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Annotation, DeliveryStatus, Role, WebhookDelivery
from annotation.services.exports import snapshot_create
from annotation.services.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature_for,
    signature_verify,
    webhook_create,
    webhook_emit,
    webhook_update,
)
from tests.annotation.webhook_receiver import Receiver
from tests.integration.chat_worker import sending_to
from tests.support.workers import database_url

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60
RETRY_BASE = 0.5
MAX_ATTEMPTS = 3


# --- a receiver -----------------------------------------------------------------------------
@pytest.fixture
def receiver(settings):
    # Webhooks go to public addresses only; this receiver on loopback is a deliberate exception.
    settings.WEBHOOK_ALLOW_PRIVATE = ["127.0.0.1"]
    r = Receiver()
    yield r
    r.close()


# --- a real worker --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker):
    """One Celery worker process for this module, on a broker of its own that this process sends to."""
    workdir = Path(tempfile.mkdtemp(prefix="quorum-webhooks-"))
    broker = f"sqla+sqlite:///{workdir / 'broker.sqlite3'}"
    with django_db_blocker.unblock():
        url = database_url()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": broker,
        "QUORUM_WEBHOOK_RETRY_BASE_SECONDS": str(RETRY_BASE),
        "QUORUM_WEBHOOK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "QUORUM_WEBHOOK_TIMEOUT_SECONDS": "5",
        "QUORUM_WEBHOOK_ALLOW_PRIVATE": "127.0.0.1",
        "NO_PROXY": "127.0.0.1,localhost",
        "QUORUM_DB_CONN_MAX_AGE": "0",
    }
    log_path = workdir / "worker.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "quorum", "worker", "-Q", "default", "-P", "solo",
         "-n", f"hooks-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        with sending_to(broker):
            deadline = time.monotonic() + DEADLINE
            while "ready" not in log_path.read_text(errors="replace"):
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
                time.sleep(0.2)
            yield log_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait(predicate, what: str, log_path: Path | None = None):
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.1)


def _submit(annotator, project, choice="A"):
    assignment = services.task_next_for(annotator=annotator, project=project)
    return services.annotation_submit(
        assignment=assignment, annotator=annotator, payload={"choice": choice, "strength": 2}, client_id=uuid.uuid4()
    )


# --- signatures -----------------------------------------------------------------------------
def test_signature_is_hmac_sha256_of_timestamp_and_body_and_refuses_tampering_and_replays():
    secret, body, ts = "s3cret-s3cret-s3cret", b'{"event":"ping"}', str(int(time.time()))
    expected = "sha256=" + hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature_for(secret=secret, timestamp=ts, body=body) == expected
    assert signature_verify(secret=secret, body=body, timestamp=ts, signature=expected)
    assert not signature_verify(secret=secret, body=body + b" ", timestamp=ts, signature=expected)
    assert not signature_verify(secret="another-secret-value", body=body, timestamp=ts, signature=expected)
    old = str(int(time.time()) - 3600)
    assert not signature_verify(
        secret=secret, body=body, timestamp=old, signature=signature_for(secret=secret, timestamp=old, body=body)
    )


# --- deliveries through a real worker -------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_completed_task_is_delivered_once_signed_and_logged(transactional_db, worker, receiver, project, member, make_task):
    hook = webhook_create(project=project, url=receiver.url("/hooks/quorum"), events=["task.completed"])
    other = webhook_create(project=project, url=receiver.url("/hooks/runs"), events=["run.finished"])
    task = make_task("pairwise")  # the project wants 2 annotations per task
    first, second = member(Role.ANNOTATOR), member(Role.ANNOTATOR)

    _submit(first, project)
    time.sleep(1.0)  # a worker has had time to send anything it was given
    assert receiver.requests == [] and not WebhookDelivery.objects.exists()  # half done is not complete

    _submit(second, project, choice="B")
    _wait(lambda: WebhookDelivery.objects.filter(status=DeliveryStatus.SUCCEEDED).exists(), "the delivery", worker)
    got = receiver.on("/hooks/quorum")
    assert len(got) == 1 and receiver.on("/hooks/runs") == []
    request = got[0]
    headers = request["headers"]
    assert headers[EVENT_HEADER.lower()] == "task.completed"
    assert signature_verify(
        secret=hook.secret, body=request["body"], timestamp=headers[TIMESTAMP_HEADER.lower()],
        signature=headers[SIGNATURE_HEADER.lower()],
    )  # fmt: skip
    assert not signature_verify(
        secret=other.secret, body=request["body"], timestamp=headers[TIMESTAMP_HEADER.lower()],
        signature=headers[SIGNATURE_HEADER.lower()],
    )  # fmt: skip
    body = json.loads(request["body"])
    assert body["event"] == "task.completed" and body["project"]["slug"] == project.slug
    assert body["data"]["task"]["id"] == task.pk and body["data"]["task"]["submitted_count"] == 2
    delivery = WebhookDelivery.objects.get()
    assert str(delivery.pk) == headers[DELIVERY_HEADER.lower()] == str(body["id"])
    assert (delivery.webhook_id, delivery.attempts, delivery.response_code, delivery.last_error) == (hook.pk, 1, 200, "")
    assert delivery.finished_at is not None

    # The same event reported again (e.g. by a racing submit) is not sent twice.
    assert webhook_emit(project=project, event="task.completed", key=delivery.key, data={}) == []
    time.sleep(1.0)
    assert len(receiver.on("/hooks/quorum")) == 1

    # Taken back and answered again, the task is complete again: a new event.
    from annotation.services.undo import annotation_undo

    last = Annotation.objects.filter(task=task, author=second).get()
    assignment = annotation_undo(annotation=last, annotator=second)
    services.annotation_submit(assignment=assignment, annotator=second, payload={"choice": "tie"}, client_id=uuid.uuid4())
    _wait(lambda: len(receiver.on("/hooks/quorum")) == 2, "the second completion", worker)
    assert WebhookDelivery.objects.filter(webhook=hook, event="task.completed").count() == 2


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_failing_receiver_is_retried_with_growing_delays_then_marked_failed(
    transactional_db, worker, receiver, project, tmp_path, settings, make_task, member
):
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    webhook_create(project=project, url=receiver.url("/fail"), events=["snapshot.created"])
    good = webhook_create(project=project, url=receiver.url("/ok"), events=["snapshot.created"])
    make_task("pairwise")
    annotator = member(Role.ANNOTATOR)
    _submit(annotator, project)
    snapshot = snapshot_create(project=project, format="raw")

    failing = lambda: WebhookDelivery.objects.filter(webhook__url__endswith="/fail").first()  # noqa: E731
    _wait(lambda: failing() is not None and failing().status == DeliveryStatus.FAILED, "the failed delivery", worker)
    attempts = receiver.on("/fail")
    assert len(attempts) == MAX_ATTEMPTS
    gaps = [b["at"] - a["at"] for a, b in zip(attempts, attempts[1:])]
    # base × 2^(n−1): 0.5 s, then 1 s (plus the worker's latency, never less).
    assert gaps[0] >= RETRY_BASE * 0.9 and gaps[1] >= 2 * RETRY_BASE * 0.9, gaps
    assert gaps[1] > gaps[0] * 1.4, gaps
    delivery = failing()
    assert (delivery.attempts, delivery.response_code) == (MAX_ATTEMPTS, 500)
    assert delivery.last_error == "HTTP 500"  # the code alone: what the receiver said is not kept
    assert delivery.finished_at is not None
    # Every attempt is signed afresh and carries the same delivery id.
    assert len({r["headers"][DELIVERY_HEADER.lower()] for r in attempts}) == 1

    # The healthy receiver got its copy once, with the snapshot's hash.
    _wait(lambda: WebhookDelivery.objects.filter(webhook=good, status=DeliveryStatus.SUCCEEDED).exists(), "the good one")
    (ok,) = receiver.on("/ok")
    data = json.loads(ok["body"])["data"]["snapshot"]
    assert (data["id"], data["sha256"], data["row_count"]) == (snapshot.pk, snapshot.sha256, snapshot.row_count)
    assert data["card"].endswith(f"/snapshots/{snapshot.pk}/card/")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_delivery_failed_earlier_can_be_sent_again(transactional_db, worker, receiver, project, make_user):
    admin = make_user("hookadmin")
    services.membership_set(project=project, user=admin, role=Role.ADMIN)
    client = APIClient()
    client.force_authenticate(admin)
    base = f"/api/v1/projects/{project.slug}/"
    created = client.post(base + "webhooks/", {"url": receiver.url("/ok"), "events": ["run.finished"]}, format="json")
    assert created.status_code == 201
    ping = client.post(base + f"webhooks/{created.data['id']}/ping/")
    assert ping.status_code == 201 and ping.data["event"] == "ping"
    _wait(lambda: WebhookDelivery.objects.filter(pk=ping.data["id"], status=DeliveryStatus.SUCCEEDED).exists(), "the ping")
    again = client.post(base + f"webhook-deliveries/{ping.data['id']}/redeliver/")
    assert again.status_code == 200
    _wait(lambda: len(receiver.on("/ok")) == 2, "the second send")
    first, second = receiver.on("/ok")
    assert json.loads(first["body"])["id"] == json.loads(second["body"])["id"] == ping.data["id"]
    assert signature_verify(
        secret=created.data["secret"], body=second["body"], timestamp=second["headers"][TIMESTAMP_HEADER.lower()],
        signature=second["headers"][SIGNATURE_HEADER.lower()],
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_delivery_whose_message_was_lost_is_sent_by_the_reconciler(transactional_db, worker, receiver, project):
    from datetime import timedelta

    from django.utils import timezone

    from annotation.services.webhooks import webhook_deliveries_reconcile

    hook = webhook_create(project=project, url=receiver.url("/ok"), events=["snapshot.created"])
    # As if the broker had been down when the event was recorded: a row, and no message.
    lost = WebhookDelivery.objects.create(webhook=hook, event="snapshot.created", key="snapshot.created:99",
                                          payload={"event": "snapshot.created", "data": {}})  # fmt: skip
    fresh = WebhookDelivery.objects.create(webhook=hook, event="snapshot.created", key="snapshot.created:100",
                                           payload={"event": "snapshot.created", "data": {}})  # fmt: skip
    WebhookDelivery.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    assert webhook_deliveries_reconcile() == 1  # the fresh one may still have its message on the way
    _wait(lambda: WebhookDelivery.objects.filter(pk=lost.pk, status=DeliveryStatus.SUCCEEDED).exists(), "the resend", worker)
    assert [json.loads(r["body"])["id"] for r in receiver.on("/ok")] == [lost.pk]
    assert webhook_deliveries_reconcile() == 0  # sent: nothing left to resend
    assert WebhookDelivery.objects.get(pk=fresh.pk).status == DeliveryStatus.PENDING


# --- the API and roles ----------------------------------------------------------------------
@pytest.fixture
def clients(project, member, make_user):
    out = {}
    for role in (Role.ADMIN, Role.ENGINEER, Role.REVIEWER, Role.ANNOTATOR):
        client = APIClient()
        client.force_authenticate(member(role))
        out[role] = client
    stranger = APIClient()
    stranger.force_authenticate(make_user("stranger"))
    out["outsider"] = stranger
    return out


def test_admins_manage_webhooks_engineers_read_them_and_others_cannot(db, project, clients):
    base = f"/api/v1/projects/{project.slug}/webhooks/"
    body = {"url": "https://example.org/hook", "events": ["task.completed", "snapshot.created"], "description": "CI"}
    for role in (Role.ENGINEER, Role.REVIEWER, Role.ANNOTATOR):
        assert clients[role].post(base, body, format="json").status_code == 403
    assert clients["outsider"].post(base, body, format="json").status_code == 404
    created = clients[Role.ADMIN].post(base, body, format="json")
    assert created.status_code == 201
    secret = created.data["secret"]
    assert len(secret) >= 32 and created.data["events"] == ["snapshot.created", "task.completed"]

    listed = clients[Role.ENGINEER].get(base)
    assert listed.status_code == 200
    (row,) = listed.data["results"]
    assert "secret" not in row and row["secret_hint"] == "…" + secret[-4:]
    for role in (Role.REVIEWER, Role.ANNOTATOR):
        assert clients[role].get(base).status_code == 403
        assert clients[role].get(f"/api/v1/projects/{project.slug}/webhook-deliveries/").status_code == 403
    assert clients[Role.ENGINEER].get(f"/api/v1/projects/{project.slug}/webhook-deliveries/").status_code == 200

    one = f"{base}{row['id']}/"
    assert clients[Role.ENGINEER].patch(one, {"active": False}, format="json").status_code == 403
    assert clients[Role.ENGINEER].delete(one).status_code == 403
    rotated = clients[Role.ADMIN].patch(one, {"rotate_secret": True, "active": False}, format="json")
    assert rotated.status_code == 200 and rotated.data["secret"] != secret and rotated.data["active"] is False
    assert clients[Role.ADMIN].delete(one).status_code == 204
    assert clients[Role.ADMIN].get(one).status_code == 404


def _fields(response) -> dict:
    return response.data.get("fields", response.data)


def test_bad_webhook_input_gets_field_messages(db, project, clients):
    base = f"/api/v1/projects/{project.slug}/webhooks/"
    admin = clients[Role.ADMIN]
    bad_url = admin.post(base, {"url": "ftp://example.org/x", "events": ["task.completed"]}, format="json")
    assert bad_url.status_code == 400 and "url" in _fields(bad_url)
    bad_event = admin.post(base, {"url": "https://example.org/x", "events": ["task.exploded"]}, format="json")
    assert bad_event.status_code == 400 and "events" in _fields(bad_event)
    no_event = admin.post(base, {"url": "https://example.org/x", "events": []}, format="json")
    assert no_event.status_code == 400 and "events" in _fields(no_event)
    short = admin.post(base, {"url": "https://example.org/x", "events": ["run.finished"], "secret": "short"}, format="json")
    assert short.status_code == 400 and "secret" in _fields(short)
    bad_filter = admin.get(f"/api/v1/projects/{project.slug}/webhook-deliveries/?status=lost")
    assert bad_filter.status_code == 400 and "status" in _fields(bad_filter)


def test_an_event_reaches_only_the_active_webhooks_that_subscribed(db, project):
    wanted = webhook_create(project=project, url="https://example.org/a", events=["snapshot.created"])
    webhook_create(project=project, url="https://example.org/b", events=["task.completed"])
    webhook_create(project=project, url="https://example.org/c", events=["snapshot.created"], active=False)
    ids = webhook_emit(project=project, event="snapshot.created", key="snapshot.created:1", data={"snapshot": {"id": 1}})
    assert [WebhookDelivery.objects.get(pk=i).webhook_id for i in ids] == [wanted.pk]


# --- the admin page -------------------------------------------------------------------------
def test_webhooks_page_for_admins_only_lists_webhooks_and_deliveries(db, project, member, make_user):
    from django.test import Client

    pages = {}
    for role in (Role.ADMIN, Role.ENGINEER, Role.REVIEWER, Role.ANNOTATOR):
        client = Client()
        client.force_login(member(role))
        pages[role] = client
    stranger = Client()
    stranger.force_login(make_user("stranger"))
    url = f"/p/{project.slug}/webhooks/"
    for role in (Role.ENGINEER, Role.REVIEWER, Role.ANNOTATOR):
        assert pages[role].get(url).status_code == 403
        assert pages[role].post(url + "new/", {"url": "https://x.example/h", "events": ["run.finished"]}).status_code == 403
    assert stranger.get(url).status_code == 404

    admin = pages[Role.ADMIN]
    created = admin.post(url + "new/", {"url": "https://hooks.example/quorum", "events": ["snapshot.created", "run.finished"],
                                        "description": "notify <b>CI</b>"}, follow=True)  # fmt: skip
    page = created.content.decode()
    hook = project.webhooks.get()
    assert hook.events == ["run.finished", "snapshot.created"]
    assert "signing secret (shown once)" in page and hook.secret in page
    assert "notify &lt;b&gt;CI&lt;/b&gt;" in page  # escaped
    assert admin.post(url + f"{hook.pk}/ping/").status_code == 302
    page = admin.get(url).content.decode()
    assert "https://hooks.example/quorum" in page and "ping" in page and hook.secret not in page
    admin.post(url + f"{hook.pk}/toggle/")
    hook.refresh_from_db()
    assert hook.active is False
    admin.post(url + f"{hook.pk}/delete/")
    assert not project.webhooks.exists()


def test_a_new_signing_secret_is_shown_in_the_answer_itself_and_never_put_in_a_cookie(db, project, member):
    from django.contrib.messages.storage.cookie import CookieStorage
    from django.test import Client

    admin = Client()
    admin.force_login(member(Role.ADMIN))
    url = f"/p/{project.slug}/webhooks/"
    created = admin.post(url + "new/", {"url": "https://hooks.example/quorum", "events": ["run.finished"]})
    hook = project.webhooks.get()
    rotated = admin.post(url + f"{hook.pk}/rotate/")
    new_secret = project.webhooks.get().secret
    assert new_secret != hook.secret
    for answer, secret in ((created, hook.secret), (rotated, new_secret)):
        for morsel in answer.cookies.values():  # as sent, and as the messages framework would read it back
            assert secret not in morsel.OutputString()
            assert secret not in str(CookieStorage(None)._decode(morsel.value))
        assert answer.status_code == 200 and secret in answer.content.decode()
        assert "no-store" in answer["Cache-Control"]
        assert secret not in str(admin.session.items())
    # Shown once: the next visit to the page shows neither.
    page = admin.get(url).content.decode()
    assert hook.secret not in page and new_secret not in page


# --- the training side ----------------------------------------------------------------------
def test_a_training_run_and_a_generation_job_that_end_are_reported(db, project, settings, tmp_path):
    import hashlib as _hashlib

    from annotation.models import DatasetSnapshot
    from training.jobs import runtime
    from training.services import generation_job_create, model_register
    from training.services import runs as runs_service
    from training.services.generation import GENERATION_JOBS

    settings.MODEL_DIR = tmp_path / "models"
    hook = webhook_create(project=project, url="https://example.org/ci", events=["run.finished", "generation.finished"])
    services.prompt_create(project=project, messages=[{"role": "user", "content": "Hi?"}])
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}) + "\n")
    snapshot = DatasetSnapshot.objects.create(project=project, format="sft", path=str(path), row_count=1,
                                              sha256=_hashlib.sha256(path.read_bytes()).hexdigest())  # fmt: skip
    model = model_register(name="tiny", backend="transformers", path=str(tmp_path / "tiny"))
    run = runs_service.training_run_create(project=project, method="sft", base_model=model, snapshot=snapshot,
                                           hyperparameters={"max_steps": 1})  # fmt: skip
    job = generation_job_create(project=project, model=model, n=2)

    runtime.fail(runs_service.TRAINING_RUNS, run.pk, "", "trainer exited with 1")
    runtime.fail(GENERATION_JOBS, job.pk, "", "model file missing")
    runtime.fail(GENERATION_JOBS, job.pk, "", "model file missing")  # the same ending reported twice: one delivery

    from training.feedback import jobs as feedback_jobs
    from training.models import FeedbackJob

    admin = project.memberships.get().user
    constitution = services.constitution_version_create(project=project, principles=[{
        "key": "kind", "name": "Kind", "critique_request": "Unkind?", "revision_request": "Be kind.",
        "comparison_question": "Which is kinder?"}], created_by=admin)  # fmt: skip
    feedback = FeedbackJob.objects.create(project=project, kind="judge", model=model, constitution=constitution)
    runtime.fail(feedback_jobs.FEEDBACK_JOBS, feedback.pk, "", "judge unreachable")
    webhook_update(webhook=hook, events=["run.finished", "generation.finished", "feedback.finished"])
    runtime.fail(feedback_jobs.FEEDBACK_JOBS, feedback.pk, "", "judge unreachable")

    deliveries = {d.event: d for d in WebhookDelivery.objects.filter(webhook=hook)}
    assert sorted(deliveries) == ["feedback.finished", "generation.finished", "run.finished"]
    judged = deliveries["feedback.finished"].payload["data"]["job"]
    assert (judged["id"], judged["kind"], judged["status"], judged["error"]) == (
        feedback.pk, "judge", "failed", "judge unreachable")
    ran = deliveries["run.finished"].payload["data"]["run"]
    assert (ran["id"], ran["status"], ran["error"], ran["snapshot_sha256"]) == (
        run.pk, "failed", "trainer exited with 1", snapshot.sha256)
    generated = deliveries["generation.finished"].payload["data"]["job"]
    assert (generated["id"], generated["status"], generated["error"]) == (job.pk, "failed", "model file missing")


def test_a_copy_of_a_message_that_is_not_due_sends_nothing_and_an_unfinished_delivery_is_not_resent(
    db, project, clients, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from annotation.services.webhooks import webhook_delivery_attempt

    settings.WEBHOOK_ALLOW_PRIVATE = ["127.0.0.1"]
    hook = webhook_create(project=project, url="http://127.0.0.1:9/never", events=["run.finished"])
    (pk,) = webhook_emit(project=project, event="run.finished", key="run.finished:1", data={})
    due = timezone.now() + timedelta(minutes=5)
    WebhookDelivery.objects.filter(pk=pk).update(status=DeliveryStatus.RETRYING, attempts=2, next_attempt_at=due)
    assert webhook_delivery_attempt(delivery_id=pk) == ("not_due", None)
    delivery = WebhookDelivery.objects.get(pk=pk)
    assert (delivery.attempts, delivery.status, delivery.last_attempt_at) == (2, DeliveryStatus.RETRYING, None)

    response = clients[Role.ADMIN].post(f"/api/v1/projects/{project.slug}/webhook-deliveries/{pk}/redeliver/")
    assert response.status_code == 409 and response.data["code"] == "delivery_in_flight"
    assert hook.deliveries.get().attempts == 2
