"""A chat worker SIGKILLed while it streams a turn: the turn goes stale, the annotator retries, a new worker
finishes it, and the conversation goes on (nothing lost, no second task)."""

import uuid

import pytest
from rest_framework.test import APIClient

from annotation import services
from annotation.models import ChatTurn, Role, Task
from tests.support.tiny import save_tiny_model
from training.services import model_register

from .chat_worker import chat_timings, chat_worker, wait_for  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def test_a_turn_whose_worker_is_killed_is_retried_and_completes(transactional_db, make_user, chat_worker, chat_timings,  # noqa: F811
                                                                 tmp_path):
    owner, alice = make_user("owner"), make_user("alice")
    project = services.project_create(name="Kill", slug="kill", created_by=owner, required_annotations=1)
    services.membership_set(project=project, user=alice, role=Role.ANNOTATOR)
    # A random model rarely ends early: long replies leave time to kill the worker mid-turn.
    model_register(name="tiny", backend="transformers", path=str(save_tiny_model(tmp_path / "tiny", hidden=64)),
                   sampling={"max_new_tokens": 600, "temperature": 1.0})
    services.project_update(project=project, settings={"chat": {"models": ["tiny"]}})
    api = APIClient()
    api.force_authenticate(alice)
    base = "/api/v1/projects/kill/conversations/"
    cid = api.post(base, {"mode": "compare"}, format="json").json()["id"]
    assert api.post(f"{base}{cid}/messages/", {"content": "Tell me a long story."}, format="json").status_code == 201
    turn_url = f"{base}{cid}/turns/0/"

    streaming = wait_for(lambda: (t := api.get(turn_url).json())["state"] == "generating" and t["candidates"][0]["text"] and t,
                         "the replies to start streaming", chat_worker)
    assert not all(c["done"] for c in streaming["candidates"])
    chat_worker.kill()
    stale = wait_for(lambda: (t := api.get(turn_url).json())["stale"] and t, "the turn to go stale", chat_worker, 30)
    assert stale["state"] == "generating"  # what it streamed is kept until the retry
    chat_worker.start()
    retried = api.post(f"{turn_url}retry/").json()
    assert retried["state"] == "pending" and retried["attempts"] == 2 and retried["candidates"][0]["text"] == ""
    ready = wait_for(lambda: (t := api.get(turn_url).json())["state"] == "ready" and t, "the retried turn", chat_worker, 180)
    assert all(c["done"] and c["text"] for c in ready["candidates"])
    chosen = api.post(f"{turn_url}choose/", {"choice": "A", "client_id": str(uuid.uuid4())}, format="json")
    assert chosen.status_code == 200 and chosen.json()["state"] == "labelled"
    assert Task.objects.filter(project=project).count() == 1
    assert ChatTurn.objects.get(conversation_id=cid).worker != ""
    assert api.post(f"{base}{cid}/messages/", {"content": "And then?"}, format="json").status_code == 201
