"""Every API endpoint, walked by every role, a member of another project and anonymous.

The endpoints are discovered from the URL resolver and the OpenAPI schema: an endpoint that exists but is
missing from MATRIX fails `test_every_endpoint_is_in_the_matrix`, so a new endpoint cannot ship unchecked.
Also: annotators see only their own work and projects, sign-in is rate-limited (API and web), passwords
are stored with Django's default hasher, and a revoked token is refused.
"""

import hashlib
import io
import json
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import get_hasher, identify_hasher
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Annotation, DatasetSnapshot, Role, WebhookDelivery
from annotation.services import chat
from annotation.services.webhooks import webhook_create, webhook_ping
from training.models import GenerationJob, TrainingRun
from training.services import generation_job_create, model_register
from training.feedback.jobs import feedback_job_create
from training.rounds.runner import round_cancel, round_create
from training.services.runs import training_run_cancel, training_run_create

PASSWORD = "correct-horse-battery"
ROLES = ["admin", "engineer", "reviewer", "annotator", "outsider", "anonymous"]
SIGNED_IN = {"admin", "engineer", "reviewer", "annotator", "outsider"}
EVERYONE = SIGNED_IN | {"anonymous"}
EVERY_MEMBER = {"admin", "engineer", "reviewer", "annotator"}
LABELLERS = {"admin", "reviewer", "annotator"}
DATA_READERS = {"admin", "engineer", "reviewer"}
DATA_MANAGERS = {"admin", "engineer"}
ADMINS = {"admin"}
NOBODY: set = set()  # staff only, and no role here is staff

PRINCIPLE = {
    "key": "harmless",
    "name": "Harmlessness",
    "critique_request": "Identify ways the response is harmful.",
    "revision_request": "Rewrite the response to remove harmful content.",
    "comparison_question": "Which response is less harmful?",
}


@pytest.fixture(autouse=True)
def _own_cache(settings):
    # Sign-in counters and throttles are per test, not shared with other runs through the cache directory.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": f"permissions-{uuid.uuid4()}"}}


@pytest.fixture
def world(db, make_user, make_task, tmp_path, settings):
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    settings.WEBHOOK_ALLOW_PRIVATE = ["127.0.0.1"]  # the webhooks below name a local port
    settings.MODEL_DIR = tmp_path / "models"
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
    # A snapshot file of SFT rows, a registered model, a generation job and two training runs (one cancelled).
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Q{i}"},
                                                     {"role": "assistant", "content": f"A{i}"}]}) + "\n"
                            for i in range(4)))
    snapshot = DatasetSnapshot.objects.create(project=project, format="sft", sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                                              path=str(path), row_count=4)
    model = model_register(name="tiny", backend="transformers", path=str(tmp_path / "tiny"))
    job = generation_job_create(project=project, model=model, created_by=users["engineer"], n=2)
    run = training_run_create(project=project, method="sft", base_model=model, snapshot=snapshot,
                              hyperparameters={"max_steps": 1})
    stopped = training_run_create(project=project, method="sft", base_model=model, snapshot=snapshot,
                                  hyperparameters={"max_steps": 1})
    training_run_cancel(run=stopped)
    feedback_job = feedback_job_create(project=project, kind="judge", model=model, created_by=users["engineer"])
    # A round of the loop, cancelled, so that one more may be launched.
    finished_round = round_cancel(rnd=round_create(project=project, policy=model, label_mode="human", human_quota=1))
    webhook = webhook_create(project=project, url="http://127.0.0.1:9/hook", events=["task.completed"])
    delivery = webhook_ping(webhook=webhook)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed")  # finished: it may be sent again
    chats = _chats(project, users["annotator"])
    return {"users": users, "project": project, "other": other, "task": task, "lease": lease, "annotation": annotation,
            "snapshot": snapshot, "model": model, "job": job, "run": run, "stopped": stopped, "webhook": webhook,
            "delivery": delivery, "round": finished_round, "feedback_job": feedback_job, **chats}


def _chats(project, annotator) -> dict:
    """The annotator's conversations: one without turns, one waiting for a pick, a red team waiting for a mark,
    and one whose turn failed (the replies written as a worker writes them)."""
    services.project_update(project=project, settings={"chat": {"models": ["tiny"]}})

    def turn(mode, fail=False):
        conversation = chat.conversation_start(project=project, annotator=annotator, mode=mode)
        t = chat.chat_message_send(conversation=conversation, annotator=annotator, content="Hello")
        chat.chat_turn_claim(turn_id=t.pk, ticket=t.ticket)
        if fail:
            chat.chat_turn_fail(turn_id=t.pk, ticket=t.ticket, error="out of memory")
        else:
            chat.chat_turn_complete(turn_id=t.pk, ticket=t.ticket, timings={},
                                    candidates=[{"content": "Hi.", "model_name": "tiny"}] * len(t.sides))
        return conversation.pk

    return {"chat_empty": chat.conversation_start(project=project, annotator=annotator, mode="compare").pk,
            "chat_compare": turn("compare"), "chat_redteam": turn("redteam"), "chat_failed": turn("compare", fail=True)}


def _label(choice_or_mark: dict) -> dict:
    return {**choice_or_mark, "client_id": str(uuid.uuid4())}


# (method, URL name) -> (path and body from the world, roles allowed, roles that get 404 rather than 403).
# Under /projects/{slug}/ a non-member gets 404 (a project's existence is not revealed); elsewhere an object the
# caller may not see is a 404 too. Everyone else who is signed in but not allowed gets 403; anonymous gets 401.
P = "/api/v1/projects/p/"
OUT = {"outsider"}


def _response_ids(w):
    return list(w["task"].task_responses.order_by("position").values_list("response_id", flat=True))


def _active_round(w):
    return round_create(project=w["project"], policy=w["model"], label_mode="human", human_quota=1)


MATRIX = {
    ("POST", "api-token"): (lambda w: ("/api/v1/auth/token/", "credentials"), EVERYONE, NOBODY),
    ("DELETE", "api-token"): (lambda w: ("/api/v1/auth/token/", None), SIGNED_IN, NOBODY),
    ("GET", "api-projects"): (lambda w: ("/api/v1/projects/", None), SIGNED_IN, NOBODY),
    ("POST", "api-projects"): (lambda w: ("/api/v1/projects/", {"name": "X", "slug": "x"}), NOBODY, NOBODY),
    ("GET", "api-project"): (lambda w: (P, None), EVERY_MEMBER, OUT),
    ("PATCH", "api-project"): (lambda w: (P, {"description": "new"}), ADMINS, OUT),
    ("GET", "api-members"): (lambda w: (P + "members/", None), ADMINS, OUT),
    ("POST", "api-members"): (lambda w: (P + "members/", {"username": "newcomer", "role": "annotator"}), ADMINS, OUT),
    ("PATCH", "api-member"): (lambda w: (P + f"members/{w['users']['annotator'].pk}/", {"role": "reviewer"}), ADMINS, OUT),
    ("DELETE", "api-member"): (lambda w: (P + f"members/{w['users']['engineer'].pk}/", None), ADMINS, OUT),
    ("GET", "api-guidelines"): (lambda w: (P + "guidelines/", None), EVERY_MEMBER, OUT),
    ("POST", "api-guidelines"): (lambda w: (P + "guidelines/", {"body": "# Be kinder"}), ADMINS, OUT),
    ("GET", "api-guideline"): (lambda w: (P + "guidelines/1/", None), EVERY_MEMBER, OUT),
    ("GET", "api-constitutions"): (lambda w: (P + "constitutions/", None), EVERY_MEMBER, OUT),
    ("POST", "api-constitutions"): (lambda w: (P + "constitutions/", {"principles": [PRINCIPLE]}), ADMINS, OUT),
    ("GET", "api-constitution"): (lambda w: (P + "constitutions/1/", None), EVERY_MEMBER, OUT),
    ("GET", "api-prompts"): (lambda w: (P + "prompts/", None), DATA_READERS, OUT),
    ("POST", "api-prompts"): (lambda w: (P + "prompts/", {"messages": [{"role": "user", "content": "Hi?"}]}), DATA_MANAGERS, OUT),
    ("GET", "api-responses"): (lambda w: (P + "responses/", None), DATA_READERS, OUT),
    ("POST", "api-responses"): (lambda w: (P + "responses/", {"prompt": w["task"].prompt_id, "content": "Hello."}), DATA_MANAGERS, OUT),
    ("GET", "api-tasks"): (lambda w: (P + "tasks/", None), DATA_READERS, OUT),
    ("POST", "api-tasks"): (
        lambda w: (P + "tasks/", {"kind": "pairwise", "prompt": w["task"].prompt_id, "responses": _response_ids(w)[::-1]}),
        DATA_MANAGERS, OUT),
    ("GET", "api-task"): (lambda w: (P + f"tasks/{w['task'].pk}/", None), DATA_READERS, OUT),
    ("POST", "api-responses-bulk"): (
        lambda w: (P + "responses/bulk/", {"items": [{"prompt": w["task"].prompt_id, "content": "Hello.", "key": "k"}]}),
        DATA_MANAGERS, OUT),
    ("POST", "api-tasks-bulk"): (
        lambda w: (P + "tasks/bulk/", {"items": [{"kind": "pairwise", "responses": _response_ids(w)[::-1]}]}),
        DATA_MANAGERS, OUT),
    ("POST", "api-tasks-actions"): (
        lambda w: (P + "tasks/actions/", {"action": "set_priority", "tasks": [w["task"].pk], "priority": 3}),
        DATA_MANAGERS, OUT),
    ("POST", "api-next-task"): (lambda w: (P + "next-task/", None), LABELLERS, OUT),
    ("GET", "api-annotations"): (lambda w: (P + "annotations/", None), EVERY_MEMBER, OUT),
    ("POST", "api-imports"): (lambda w: (P + "imports/", "upload"), DATA_MANAGERS, OUT),
    ("GET", "api-snapshots"): (lambda w: (P + "snapshots/", None), DATA_MANAGERS, OUT),
    ("POST", "api-snapshots"): (lambda w: (P + "snapshots/", {"format": "preference"}), DATA_MANAGERS, OUT),
    ("GET", "api-snapshot"): (lambda w: (P + f"snapshots/{w['snapshot'].pk}/", None), DATA_MANAGERS, OUT),
    ("GET", "api-snapshot-download"): (lambda w: (P + f"snapshots/{w['snapshot'].pk}/download/", None), DATA_MANAGERS, OUT),
    ("POST", "api-submit"): (
        lambda w: (f"/api/v1/assignments/{w['lease'].pk}/submit/", {"payload": {"choice": "A"}, "client_id": str(uuid.uuid4())}),
        {"annotator"}, SIGNED_IN - {"annotator"}),
    ("POST", "api-skip"): (lambda w: (f"/api/v1/assignments/{w['lease'].pk}/skip/", {"reason": "no"}), {"annotator"},
                           SIGNED_IN - {"annotator"}),
    ("GET", "api-annotation"): (lambda w: (f"/api/v1/annotations/{w['annotation'].pk}/", None), DATA_READERS,
                                {"annotator", "outsider"}),
    ("POST", "api-revise"): (lambda w: (f"/api/v1/annotations/{w['annotation'].pk}/revise/", {"payload": {"choice": "tie"}}),
                             {"admin", "reviewer"}, {"annotator", "outsider"}),
    ("GET", "api-quality"): (lambda w: (P + "quality/", None), DATA_READERS, OUT),
    ("GET", "api-leaderboard"): (lambda w: (P + "leaderboard/", None), DATA_READERS, OUT),
    ("GET", "api-models"): (lambda w: ("/api/v1/models/", None), SIGNED_IN, NOBODY),
    ("POST", "api-models"): (lambda w: ("/api/v1/models/", {"name": "m2", "backend": "transformers", "path": "/x"}), NOBODY, NOBODY),
    ("GET", "api-model"): (lambda w: (f"/api/v1/models/{w['model'].pk}/", None), SIGNED_IN, NOBODY),
    ("GET", "api-generation-jobs"): (lambda w: (P + "generation-jobs/", None), DATA_READERS, OUT),
    ("POST", "api-generation-jobs"): (lambda w: (P + "generation-jobs/", {"model": "tiny", "n": 2}), DATA_MANAGERS, OUT),
    ("GET", "api-generation-job"): (lambda w: (P + f"generation-jobs/{w['job'].pk}/", None), DATA_READERS, OUT),
    ("POST", "api-generation-job-cancel"): (lambda w: (P + f"generation-jobs/{w['job'].pk}/cancel/", None), DATA_MANAGERS, OUT),
    ("GET", "api-training-runs"): (lambda w: (P + "training-runs/", None), DATA_READERS, OUT),
    ("POST", "api-training-runs"): (
        lambda w: (P + "training-runs/", {"method": "sft", "base_model": "tiny", "snapshot": w["snapshot"].pk,
                                          "hyperparameters": {"max_steps": 1}}),
        DATA_MANAGERS, OUT),
    ("GET", "api-training-run"): (lambda w: (P + f"training-runs/{w['run'].pk}/", None), DATA_READERS, OUT),
    ("POST", "api-training-run-cancel"): (lambda w: (P + f"training-runs/{w['run'].pk}/cancel/", None), DATA_MANAGERS, OUT),
    ("POST", "api-training-run-relaunch"): (lambda w: (P + f"training-runs/{w['stopped'].pk}/relaunch/", None), DATA_MANAGERS, OUT),
    ("GET", "api-snapshot-card"): (lambda w: (P + f"snapshots/{w['snapshot'].pk}/card/", None), DATA_MANAGERS, OUT),
    ("POST", "api-imports-datasets"): (lambda w: (P + "imports/datasets/", "parquet-upload"), DATA_MANAGERS, OUT),
    ("GET", "api-webhooks"): (lambda w: (P + "webhooks/", None), DATA_MANAGERS, OUT),
    ("POST", "api-webhooks"): (lambda w: (P + "webhooks/", {"url": "http://127.0.0.1:9/b", "events": ["run.finished"]}), ADMINS, OUT),
    ("GET", "api-webhook"): (lambda w: (P + f"webhooks/{w['webhook'].pk}/", None), DATA_MANAGERS, OUT),
    ("PATCH", "api-webhook"): (lambda w: (P + f"webhooks/{w['webhook'].pk}/", {"active": False}), ADMINS, OUT),
    ("DELETE", "api-webhook"): (lambda w: (P + f"webhooks/{w['webhook'].pk}/", None), ADMINS, OUT),
    ("POST", "api-webhook-ping"): (lambda w: (P + f"webhooks/{w['webhook'].pk}/ping/", None), ADMINS, OUT),
    ("GET", "api-webhook-deliveries"): (lambda w: (P + "webhook-deliveries/", None), DATA_MANAGERS, OUT),
    ("POST", "api-webhook-redeliver"): (lambda w: (P + f"webhook-deliveries/{w['delivery'].pk}/redeliver/", None), ADMINS, OUT),
    ("GET", "api-rounds"): (lambda w: (P + "rounds/", None), DATA_READERS, OUT),
    ("POST", "api-rounds"): (lambda w: (P + "rounds/", {"policy": "tiny", "label_mode": "human", "human_quota": 1}),
                             DATA_MANAGERS, OUT),
    ("GET", "api-round"): (lambda w: (P + f"rounds/{w['round'].number}/", None), DATA_READERS, OUT),
    ("POST", "api-round-cancel"): (lambda w: (P + f"rounds/{_active_round(w).number}/cancel/", None), DATA_MANAGERS, OUT),
    ("GET", "api-feedback-jobs"): (lambda w: (P + "feedback-jobs/", None), DATA_READERS, OUT),
    ("POST", "api-feedback-jobs"): (lambda w: (P + "feedback-jobs/", {"kind": "judge", "model": "tiny"}), DATA_MANAGERS, OUT),
    ("GET", "api-feedback-job"): (lambda w: (P + f"feedback-jobs/{w['feedback_job'].pk}/", None), DATA_READERS, OUT),
    ("POST", "api-feedback-job-cancel"): (lambda w: (P + f"feedback-jobs/{w['feedback_job'].pk}/cancel/", None),
                                         DATA_MANAGERS, OUT),
    ("GET", "api-ai-agreement"): (lambda w: (P + "ai-agreement/", None), DATA_READERS, OUT),
    ("GET", "api-conversations"): (lambda w: (P + "conversations/", None), EVERY_MEMBER, OUT),
    ("POST", "api-conversations"): (lambda w: (P + "conversations/", {"mode": "compare"}), LABELLERS, OUT),
    ("GET", "api-conversation"): (lambda w: (P + f"conversations/{w['chat_compare']}/", None), EVERY_MEMBER, OUT),
    # Only the conversation's annotator acts in it (others who may label get 403; overseers may read it).
    ("POST", "api-chat-message"): (lambda w: (P + f"conversations/{w['chat_empty']}/messages/", {"content": "Hi"}),
                                   {"annotator"}, OUT),
    ("POST", "api-chat-close"): (lambda w: (P + f"conversations/{w['chat_empty']}/close/", {}), {"annotator"}, OUT),
    ("GET", "api-chat-turn"): (lambda w: (P + f"conversations/{w['chat_compare']}/turns/0/", None), EVERY_MEMBER, OUT),
    ("POST", "api-chat-choose"): (
        lambda w: (P + f"conversations/{w['chat_compare']}/turns/0/choose/", _label({"choice": "A"})),
        {"annotator"}, OUT),
    ("POST", "api-chat-mark"): (
        lambda w: (P + f"conversations/{w['chat_redteam']}/turns/0/mark/", _label({"harmful": True})),
        {"annotator"}, OUT),
    ("POST", "api-chat-retry"): (lambda w: (P + f"conversations/{w['chat_failed']}/turns/0/retry/", None),
                                 {"annotator"}, OUT),
    # The schema and its docs are public: they describe the API, not any project's data.
    ("GET", "schema"): (lambda w: ("/api/schema/", None), EVERYONE, NOBODY),
    ("GET", "api-docs"): (lambda w: ("/api/docs/", None), EVERYONE, NOBODY),
}


def api_endpoints() -> set[tuple[str, str, str]]:
    """(method, URL name, route) of every view under /api/ that the URL resolver knows."""

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                yield prefix + str(p.pattern), p

    found = set()
    for route, pattern in walk(get_resolver().url_patterns):
        if not route.startswith("api/"):
            continue
        view = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
        methods = [m for m in getattr(view, "http_method_names", ["get"]) if hasattr(view, m) and m not in ("options", "head")]
        for method in methods:
            found.add((method.upper(), pattern.name, route))
    return found


def test_every_endpoint_is_in_the_matrix():
    discovered = {(method, name) for method, name, _ in api_endpoints()}
    missing = sorted(discovered - set(MATRIX))
    assert not missing, f"endpoints with no row in the permission matrix: {missing}"


@pytest.mark.django_db
def test_every_operation_in_the_openapi_schema_is_in_the_matrix():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    routes = {}
    for method, name, route in api_endpoints():
        # Django's route converters, as OpenAPI writes them: <slug:slug> -> {slug}.
        import re

        routes[(method, "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))] = name
    operations = {(m.upper(), path) for path, item in schema["paths"].items() for m in item if m != "parameters"}
    unknown = sorted(op for op in operations if op not in routes or (op[0], routes[op]) not in MATRIX)
    assert not unknown, f"schema operations the permission matrix does not cover: {unknown}"


def _request(world, role, method, name):
    build, _, _ = MATRIX[(method, name)]
    url, body = build(world)
    client = APIClient()
    if role != "anonymous":
        client.force_authenticate(world["users"][role])
    if body == "upload":
        upload = io.BytesIO(b'{"prompt": "What is 2+2?"}\n')
        upload.name = "prompts.jsonl"
        return client.post(url, {"file": upload}, format="multipart")
    if body == "parquet-upload":
        import pyarrow as pa
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(pa.table({"prompt": ["What is 3+3?"]}), buffer)
        buffer.seek(0)
        buffer.name = "prompts.parquet"
        return client.post(url, {"file": buffer}, format="multipart")
    if body == "credentials":
        username = "newcomer" if role == "anonymous" else role
        password = "x" if role == "anonymous" else PASSWORD
        return client.post(url, {"username": username, "password": password}, format="json")
    return client.generic(method, url, json.dumps(body) if body is not None else "", content_type="application/json")


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("key", sorted(MATRIX), ids=lambda k: f"{k[0]}-{k[1]}")
def test_permission_matrix(world, role, key):
    method, name = key
    _, allowed, hidden = MATRIX[key]
    response = _request(world, role, method, name)
    where = (method, name, role, response.status_code, getattr(response, "content", b"")[:300])
    if role in allowed:
        assert 200 <= response.status_code < 300, where
    elif role == "anonymous":
        assert response.status_code == 401, where
    elif role in hidden:
        # Not a member (or not allowed to see the object): its existence is not revealed.
        assert response.status_code == 404, where
    else:
        assert response.status_code == 403, where


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["annotator", "outsider"])
def test_the_browsable_api_refuses_with_a_page_not_a_500(world, role):
    # The HTML renderer asks the permissions again to draw its forms: a non-member's NotFound was a 500 there.
    client = Client()
    client.force_login(world["users"][role])
    for (method, name), (build, allowed, hidden) in MATRIX.items():
        if method != "GET" or role in allowed:
            continue
        response = client.get(build(world)[0], HTTP_ACCEPT="text/html")
        assert response.status_code == (404 if role in hidden else 403), (name, response.status_code)
        assert response["Content-Type"].startswith("text/html"), name


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["engineer", "reviewer", "annotator", "outsider"])
def test_a_refused_write_changes_nothing(world, role):
    """The writes a role may not make leave the rows as they were."""
    before = (Annotation.objects.count(), GenerationJob.objects.count(), TrainingRun.objects.count(),
              DatasetSnapshot.objects.count(), world["project"].memberships.count())
    for key, (_, allowed, _) in MATRIX.items():
        if key[0] != "GET" and role not in allowed and key[1] != "api-token":
            assert _request(world, role, *key).status_code in (403, 404), key
    after = (Annotation.objects.count(), GenerationJob.objects.count(), TrainingRun.objects.count(),
             DatasetSnapshot.objects.count(), world["project"].memberships.count())
    assert before == after


# --- what annotators see -------------------------------------------------------------------------
def _as(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.django_db
def test_project_list_shows_only_member_projects(world):
    assert [p["slug"] for p in _as(world["users"]["annotator"]).get("/api/v1/projects/").json()["results"]] == ["p"]
    assert [p["slug"] for p in _as(world["users"]["outsider"]).get("/api/v1/projects/").json()["results"]] == ["other"]


@pytest.mark.django_db
def test_annotator_sees_only_their_own_annotations(world):
    annotator = world["users"]["annotator"]
    client = _as(annotator)
    assert client.get("/api/v1/projects/p/annotations/").json()["results"] == []
    # Another annotator's label, by id and through the task filter: not there.
    assert client.get(f"/api/v1/annotations/{world['annotation'].pk}/").status_code == 404
    assert client.get(f"/api/v1/projects/p/annotations/?task={world['annotation'].task_id}").json()["results"] == []
    services.annotation_submit(
        assignment=world["lease"], annotator=annotator, payload={"choice": "A", "strength": 2}, client_id=uuid.uuid4()
    )
    rows = client.get("/api/v1/projects/p/annotations/").json()["results"]
    assert [r["author"] for r in rows] == ["annotator"]
    reviewer = _as(world["users"]["reviewer"])
    assert {r["author"] for r in reviewer.get("/api/v1/projects/p/annotations/").json()["results"]} == {"annotator", "reviewer"}


@pytest.mark.django_db
def test_a_leased_task_carries_no_one_elses_label(world):
    """The task an annotator is shown holds the conversation and responses, never the labels others gave it."""
    annotator = world["users"]["annotator"]
    body = _as(annotator).post("/api/v1/projects/p/next-task/").json()
    text = json.dumps(body)
    assert body["task"] in (world["task"].pk, world["annotation"].task_id)
    assert '"choice"' not in text and "reviewer" not in text


@pytest.mark.django_db
def test_only_staff_create_projects(world):
    client = _as(world["users"]["admin"])
    assert client.post("/api/v1/projects/", {"name": "X", "slug": "x"}, format="json").status_code == 403
    staff = get_user_model().objects.create_user("staff", password="x", is_staff=True)
    client.force_authenticate(staff)
    assert client.post("/api/v1/projects/", {"name": "X", "slug": "x"}, format="json").status_code == 201
    # The creator is the new project's admin.
    assert client.get("/api/v1/projects/x/members/").json()["results"][0]["role"] == Role.ADMIN


# --- sign-in: rate limit, password storage, token revocation ------------------------------------
def _token(client, username, password):
    return client.post("/api/v1/auth/token/", {"username": username, "password": password}, format="json")


@pytest.mark.django_db
def test_token_sign_in_is_refused_after_repeated_failures_even_with_the_right_password(world, settings):
    settings.LOGIN_MAX_FAILURES = 3
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"login": "1000/min"}}
    client = APIClient()
    assert _token(client, "annotator", PASSWORD).status_code == 200
    for _ in range(3):
        assert _token(client, "annotator", "guess").status_code == 400
    refused = _token(client, "annotator", PASSWORD)
    assert refused.status_code == 429 and refused.json()["code"] == "too_many_failures"
    assert 0 < int(refused["Retry-After"]) <= settings.LOGIN_WINDOW_SECONDS
    # Another name is not locked by annotator's failures.
    assert _token(client, "reviewer", PASSWORD).status_code == 200


@pytest.mark.django_db
def test_token_sign_in_from_one_address_is_throttled(world):
    """Even right passwords: the exchange is throttled per address (10 a minute by default)."""
    client = APIClient()
    codes = [_token(client, "annotator", PASSWORD).status_code for _ in range(12)]
    assert codes[:10] == [200] * 10 and codes[10:] == [429, 429]


@pytest.mark.django_db
def test_web_sign_in_is_refused_after_repeated_failures(world, settings):
    settings.LOGIN_MAX_FAILURES = 3
    client = Client()
    for _ in range(3):
        page = client.post("/login/", {"username": "annotator", "password": "guess"})
        assert page.status_code == 200 and b"did not match" in page.content
    locked = client.post("/login/", {"username": "annotator", "password": PASSWORD})
    assert locked.status_code == 429 and b"Too many failed sign-ins" in locked.content
    assert "_auth_user_id" not in client.session
    # A different account still signs in.
    ok = client.post("/login/", {"username": "reviewer", "password": PASSWORD})
    assert ok.status_code == 302 and client.session["_auth_user_id"] == str(world["users"]["reviewer"].pk)


@pytest.mark.django_db
def test_a_success_clears_the_failure_count(world, settings):
    settings.LOGIN_MAX_FAILURES = 3
    client = Client()
    for _ in range(2):
        client.post("/login/", {"username": "annotator", "password": "guess"})
    assert client.post("/login/", {"username": "annotator", "password": PASSWORD}).status_code == 302
    client.logout()
    for _ in range(2):
        client.post("/login/", {"username": "annotator", "password": "guess"})
    assert client.post("/login/", {"username": "annotator", "password": PASSWORD}).status_code == 302


def test_passwords_are_stored_with_djangos_default_hasher(db, settings):
    from django.conf import global_settings

    # The suite swaps in a fast hasher; production keeps Django's defaults (PBKDF2-SHA256 first).
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    assert not hasattr(__import__("quorum.settings", fromlist=["x"]), "PASSWORD_HASHERS")
    user = get_user_model().objects.create_user("hashme", password="a long passphrase")
    encoded = get_user_model().objects.get(pk=user.pk).password
    assert "a long passphrase" not in encoded
    hasher = identify_hasher(encoded)
    assert hasher.algorithm == get_hasher("default").algorithm == "pbkdf2_sha256"
    assert int(encoded.split("$")[1]) >= 1_000_000  # Django 5.2's iteration count
    assert user.check_password("a long passphrase") and not user.check_password("a long passphrasE")


@pytest.mark.django_db
def test_a_revoked_token_is_refused(world):
    client = APIClient()
    token = _token(client, "annotator", PASSWORD).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/projects/").status_code == 200
    assert client.delete("/api/v1/auth/token/").status_code == 204
    assert not Token.objects.filter(key=token).exists()
    assert client.get("/api/v1/projects/").status_code == 401
    assert client.post("/api/v1/projects/p/next-task/").status_code == 401
    # Signing in again gives a new, different token.
    fresh = _token(APIClient(), "annotator", PASSWORD).json()["token"]
    assert fresh != token
