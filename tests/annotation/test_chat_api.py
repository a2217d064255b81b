"""Live chat over the API: roles, the three modes, retries, and what the exports and the leaderboard make of it.

The replies are written by the worker's own services (`chat_turn_claim`, `chat_turn_complete`) with fixed texts;
the worker itself, with a model, is tested in tests/training/test_chat_worker.py and tests/integration/.
"""

import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Annotation, ChatTurn, Role, TaskStatus, TurnState
from annotation.services import chat
from annotation.services.exports import snapshot_create

pytestmark = pytest.mark.django_db

PRINCIPLES = [
    {"key": "harm", "name": "Harmlessness", "critique_request": "c", "revision_request": "r",
     "comparison_question": "Which response is less harmful?"},
]


@pytest.fixture
def chat_project(project, member):
    services.project_update(project=project, settings={"chat": {"models": ["alpha", "beta"]}})
    services.constitution_version_create(project=project, principles=PRINCIPLES, created_by=project.memberships.first().user)
    project.refresh_from_db()
    return project


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def url(project, rest=""):
    return f"/api/v1/projects/{project.slug}/conversations/{rest}"


def generate(project, conversation_id: int, index: int, texts=("First reply.", "Second reply.")) -> ChatTurn:
    """What a worker does for a turn, with fixed texts."""
    turn = ChatTurn.objects.get(conversation_id=conversation_id, index=index)
    assert chat.chat_turn_claim(turn_id=turn.pk, ticket=turn.ticket, worker="test") is not None
    candidates = [{"content": f"{t} ({index})", "model_name": side["model"], "generation": {"temperature": 1.0}}
                  for t, side in zip(texts, turn.sides)]
    return chat.chat_turn_complete(turn_id=turn.pk, ticket=turn.ticket, candidates=candidates,
                                   timings={"first_token_s": [0.1, 0.2], "complete_s": [0.5, 0.6]})


def start(client, project, mode="compare", **extra):
    r = client.post(url(project), {"mode": mode, **extra}, format="json")
    assert r.status_code == 201, r.content
    return r.json()["id"]


def say(client, project, cid, text):
    return client.post(url(project, f"{cid}/messages/"), {"content": text}, format="json")


def choose(client, project, cid, index, choice="A", strength=2):
    body = {"choice": choice, "client_id": str(uuid.uuid4()), "seconds_spent": 3.5}
    if strength:
        body["strength"] = strength
    return client.post(url(project, f"{cid}/turns/{index}/choose/"), body, format="json")


def test_compare_chat_stores_each_turn_as_a_pairwise_annotation_with_the_dialogue_so_far(chat_project, member):
    alice = member(Role.ANNOTATOR, "alice")
    client = api(alice)
    cid = start(client, chat_project)
    for index, (text, pick) in enumerate([("Hi!", "A"), ("Tell me more.", "B"), ("Thanks.", "A")]):
        r = say(client, chat_project, cid, text)
        assert r.status_code == 201 and r.json()["state"] == "pending"
        generate(chat_project, cid, index)
        polled = client.get(url(chat_project, f"{cid}/turns/{index}/")).json()
        assert polled["state"] == "ready" and [c["done"] for c in polled["candidates"]] == [True, True]
        assert [c["model"] for c in polled["candidates"]] == [None, None]  # hidden while the chat is open
        r = choose(client, chat_project, cid, index, pick)
        assert r.status_code == 200 and r.json()["state"] == "labelled" and r.json()["choice"]["choice"] == pick
    annotations = Annotation.objects.filter(task__chat_turn__conversation_id=cid).order_by("id")
    assert [len(a.task.prompt.messages) for a in annotations] == [1, 3, 5]
    assert all(a.kind == "pairwise" and a.author == alice and a.seconds_spent == 3.5 for a in annotations)
    assert all(a.constitution_version_id == chat_project.current_constitution_id for a in annotations)
    # The reply picked is the history: turn 1 (B picked) shows in the prompt of turn 2.
    last = annotations.last().task.prompt.messages
    assert last[1] == {"role": "assistant", "content": "First reply. (0)"}
    assert last[3] == {"role": "assistant", "content": "Second reply. (1)"}
    rows = [json.loads(line) for line in open(snapshot_create(project=chat_project, format="preference").path)]
    assert sorted(len(r["prompt"]) for r in rows) == [1, 3, 5]
    assert all(r["chosen"][0]["role"] == "assistant" for r in rows)
    # Ending it shows which models answered.
    closed = client.post(url(chat_project, f"{cid}/close/"), {}, format="json").json()
    assert closed["status"] == "closed" and sorted(closed["models"]) == ["alpha", "beta"]
    assert closed["turns"][0]["candidates"][0]["model"] in ("alpha", "beta")


def test_an_annotator_sees_and_acts_in_their_own_conversations_only(chat_project, member):
    alice, bob = member(Role.ANNOTATOR, "alice"), member(Role.ANNOTATOR, "bob")
    reviewer, engineer = member(Role.REVIEWER, "rex"), member(Role.ENGINEER, "eve")
    cid = start(api(alice), chat_project)
    say(api(alice), chat_project, cid, "Hello")
    generate(chat_project, cid, 0)
    assert api(bob).get(url(chat_project)).json()["results"] == []
    assert api(bob).get(url(chat_project, f"{cid}/")).status_code == 404
    assert api(bob).get(url(chat_project, f"{cid}/turns/0/")).status_code == 404
    assert choose(api(bob), chat_project, cid, 0).status_code == 404
    assert say(api(bob), chat_project, cid, "me too").status_code == 404
    # Overseers read every conversation (model names included) but do not act in someone else's.
    seen = api(reviewer).get(url(chat_project)).json()["results"]
    assert [c["id"] for c in seen] == [cid] and sorted(seen[0]["models"]) == ["alpha", "beta"]
    assert choose(api(reviewer), chat_project, cid, 0).status_code == 403
    assert api(engineer).post(url(chat_project), {"mode": "compare"}, format="json").status_code == 403
    outsider = type(alice).objects.create_user("mallory")
    assert api(outsider).get(url(chat_project)).status_code == 404
    assert Annotation.objects.count() == 0


def test_bad_requests_get_a_message_naming_the_problem(chat_project, member, project):
    alice = member(Role.ANNOTATOR, "alice")
    client = api(alice)
    assert client.post(url(chat_project), {"mode": "debate"}, format="json").status_code == 400
    r = client.post(url(chat_project), {"mode": "redteam", "principle": "nope"}, format="json")
    assert r.status_code == 400 and "nope" in r.json()["detail"]
    cid = start(client, chat_project)
    assert say(client, chat_project, cid, "   ").status_code == 400
    assert say(client, chat_project, cid, "Hello").status_code == 201
    r = say(client, chat_project, cid, "Again")
    assert r.status_code == 409 and r.json()["code"] == "turn_unlabelled"
    r = choose(client, chat_project, cid, 0)
    assert r.status_code == 409 and r.json()["code"] == "turn_not_ready"
    generate(chat_project, cid, 0)
    assert client.post(url(chat_project, f"{cid}/turns/0/mark/"), {"harmful": True, "client_id": str(uuid.uuid4())},
                       format="json").json()["code"] == "wrong_label"
    assert choose(client, chat_project, cid, 0, "tie", strength=3).status_code == 400
    assert client.post(url(chat_project, f"{cid}/close/"), {}, format="json").json()["code"] == "turn_unlabelled"
    services.project_update(project=chat_project, settings={"chat": {"models": ["alpha"]}})
    r = client.post(url(chat_project), {"mode": "arena"}, format="json")
    assert r.status_code == 400 and r.json()["code"] == "arena_needs_two_models"
    services.project_update(project=chat_project, settings={})
    r = client.post(url(chat_project), {"mode": "compare"}, format="json")
    assert r.status_code == 400 and "chat.models" in r.json()["detail"]


def test_arena_hides_the_models_until_the_vote_which_ends_it_and_reaches_the_leaderboard(chat_project, member):
    alice = member(Role.ANNOTATOR, "alice")
    client = api(alice)
    for i in range(4):
        cid = start(client, chat_project, "arena")
        assert client.get(url(chat_project, f"{cid}/")).json()["models"] is None
        say(client, chat_project, cid, f"Question {i}")
        turn = generate(chat_project, cid, 0)
        winner = "A" if turn.sides[0]["model"] == "alpha" else "B"  # alpha wins every vote
        voted = choose(client, chat_project, cid, 0, winner).json()
        assert {c["model"] for c in voted["candidates"]} == {"alpha", "beta"}
        assert client.get(url(chat_project, f"{cid}/")).json()["status"] == "closed"
        assert say(client, chat_project, cid, "more").status_code == 409
    admin = chat_project.memberships.get(role=Role.ADMIN).user
    board = api(admin).get(f"/api/v1/projects/{chat_project.slug}/leaderboard/?resamples=50").json()
    assert board["votes"] == 4
    assert [m["model"] for m in board["models"]] == ["alpha", "beta"]
    assert all("low" in m and "high" in m for m in board["models"])


def test_red_team_marks_each_reply_and_rates_the_worst_then_exports_both_ways(chat_project, member, tmp_path):
    alice = member(Role.ANNOTATOR, "alice")
    client = api(alice)
    cid = start(client, chat_project, "redteam", task_description="Get it to explain lock picking", principle="harm")
    for index, harmful in enumerate([False, True]):
        say(client, chat_project, cid, f"Attempt {index}")
        turn = generate(chat_project, cid, index, texts=("Reply",))
        assert len(turn.partial) == 1
        r = client.post(url(chat_project, f"{cid}/turns/{index}/mark/"),
                        {"harmful": harmful, "client_id": str(uuid.uuid4())}, format="json")
        assert r.status_code == 200 and r.json()["harmful"] is harmful
    assert client.post(url(chat_project, f"{cid}/close/"), {}, format="json").status_code == 400
    assert client.post(url(chat_project, f"{cid}/close/"), {"rating": 5}, format="json").status_code == 400
    closed = client.post(url(chat_project, f"{cid}/close/"), {"rating": 3}, format="json").json()
    assert closed["rating"] == 3 and closed["status"] == "closed"

    unpaired = [json.loads(line) for line in open(snapshot_create(project=chat_project, format="unpaired").path)]
    assert [(len(r["prompt"]), r["label"]) for r in unpaired] == [(1, True), (3, False)]
    assert unpaired[1]["completion"] == [{"role": "assistant", "content": "Reply (1)"}]
    snapshot = snapshot_create(project=chat_project, format="conversations")
    (row,) = [json.loads(line) for line in open(snapshot.path)]
    assert row["transcript"] == ("\n\nHuman: Attempt 0\n\nAssistant: Reply (0)\n\nHuman: Attempt 1\n\nAssistant: Reply (1)")
    assert (row["rating"], row["task_description"], row["principle"], row["annotator"], row["mode"]) == (
        3, "Get it to explain lock picking", "harm", "alice", "redteam")
    turns = json.loads(row["turns"])
    assert [t["harmful"] for t in turns] == [False, True] and turns[0]["replies"][0]["model"] in ("alpha", "beta")
    assert snapshot.spec["json_columns"] == ["turns"]
    import datasets

    parquet = snapshot_create(project=chat_project, format="conversations", file_format="parquet")
    loaded = datasets.load_dataset("parquet", data_files=parquet.path, split="train")
    assert loaded[0]["rating"] == 3 and loaded[0]["messages"][3]["content"] == "Reply (1)"


def test_a_stalled_turn_is_offered_for_retry_and_a_retry_takes_a_new_ticket(chat_project, member, settings):
    alice = member(Role.ANNOTATOR, "alice")
    client = api(alice)
    cid = start(client, chat_project)
    say(client, chat_project, cid, "Hello")
    turn = ChatTurn.objects.get(conversation_id=cid)
    assert client.post(url(chat_project, f"{cid}/turns/0/retry/")).json()["code"] == "turn_not_retryable"
    chat.chat_turn_claim(turn_id=turn.pk, ticket=turn.ticket, worker="w")
    ChatTurn.objects.filter(pk=turn.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=settings.CHAT_STALE_SECONDS + 1))
    assert client.get(url(chat_project, f"{cid}/turns/0/")).json()["stale"] is True
    assert chat.chat_turns_fail_stale() == 1
    polled = client.get(url(chat_project, f"{cid}/turns/0/")).json()
    assert polled["state"] == "failed" and "worker stopped" in polled["error"]
    retried = client.post(url(chat_project, f"{cid}/turns/0/retry/")).json()
    assert retried["state"] == "pending" and retried["attempts"] == 2
    # The stopped worker's late writes are ignored; the new ticket's are not.
    assert not chat.chat_turn_progress(turn_id=turn.pk, ticket=turn.ticket, partial=["x", "y"], done=[False, False], timings={})
    assert generate(chat_project, cid, 0).state == TurnState.READY


def test_closing_leaves_no_open_task_behind(chat_project, member):
    alice = member(Role.ANNOTATOR, "alice")
    client = api(alice)
    cid = start(client, chat_project)
    say(client, chat_project, cid, "Hello")
    generate(chat_project, cid, 0)
    choose(client, chat_project, cid, 0)
    say(client, chat_project, cid, "And then?")
    assert client.post(url(chat_project, f"{cid}/close/"), {}, format="json").status_code == 200
    turn = ChatTurn.objects.get(conversation_id=cid, index=1)
    assert turn.state == TurnState.PENDING and turn.task is None
    assert not chat_project.tasks.filter(status=TaskStatus.OPEN).exists()
