"""Live chat in the browser with a real Celery worker generating from a tiny model: a three-turn compare chat
labelled with the keyboard only (its export trains TRL's DPO), a red-team conversation exported both ways, an arena
vote reaching the leaderboard, and an annotator who cannot open someone else's conversation."""

import json

import pytest
from playwright.sync_api import expect

from annotation import services
from annotation.models import Annotation, ChatTurn, Conversation, Role
from annotation.services.exports import snapshot_create
from tests.integration.chat_worker import chat_timings, chat_worker  # noqa: F401 (fixtures)
from tests.training import trl_runs
from training.services import model_register
from tests.support.tiny import save_tiny_model

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.timeout(600)]

PRINCIPLES = [{"key": "harm", "name": "Harmlessness", "critique_request": "c", "revision_request": "r",
               "comparison_question": "Which response is less harmful?"}]
REPLY_TIMEOUT = 90_000  # ms: the first turn waits for the worker to load torch and the model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("chat-models") / "tiny", hidden=32, layers=2)


@pytest.fixture
def world(make_user, tiny_dir, chat_worker, chat_timings, tmp_path, settings):  # noqa: F811
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    admin = make_user("ada")
    project = services.project_create(name="Chatty", slug="chatty", created_by=admin, required_annotations=2)
    services.constitution_version_create(project=project, principles=PRINCIPLES, created_by=admin)
    for name, temperature in (("tiny-warm", 1.0), ("tiny-cool", 0.5)):
        model_register(name=name, backend="transformers", path=str(tiny_dir),
                       sampling={"max_new_tokens": 16, "temperature": temperature})
    services.project_update(project=project, settings={"chat": {"models": ["tiny-warm"], "sampling_b": {"temperature": 1.4}}})
    alice = make_user("alice")
    services.membership_set(project=project, user=alice, role=Role.ANNOTATOR)
    project.refresh_from_db()
    return {"project": project, "admin": admin, "alice": alice}


def open_chat(page, live_server, sign_in, world, key: str):
    sign_in(page, world["alice"])
    page.goto(f"{live_server.url}/p/chatty/chat/")
    page.keyboard.press(key)
    expect(page.locator("html[data-chat-ready]")).to_have_count(1)


def say(page, text: str, index: int):
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    expect(page.locator(f'[data-turn="{index}"]')).to_have_attribute("data-state", "ready", timeout=REPLY_TIMEOUT)


def test_a_three_turn_compare_chat_labelled_by_keyboard_only_exports_preferences_that_train_dpo(
    page, live_server, sign_in, world, shot, tmp_path
):
    open_chat(page, live_server, sign_in, world, "c")
    expect(page.locator("[data-input]")).to_be_focused()
    for index, (text, keys) in enumerate([("Hello, who are you?", ["1"]), ("Tell me about the sea.", ["Shift+B"]),
                                          ("Thanks!", ["3"])]):
        say(page, text, index)
        replies = page.locator(f'[data-turn="{index}"] .chat-reply')
        expect(replies).to_have_count(2)
        expect(page.locator(f'[data-turn="{index}"] .chat-latency')).to_contain_text("first tokens")
        if index == 1:
            shot(page, "chat-compare-ready")
        for key in keys:
            page.keyboard.press(key)
        page.keyboard.press("Enter")
        expect(page.locator(f'[data-turn="{index}"]')).to_have_attribute("data-state", "labelled")
        expect(page.locator("[data-input]")).to_be_focused()
    page.keyboard.press("Escape")
    page.keyboard.press("e")
    page.keyboard.press("Enter")
    expect(page.locator("#chat")).to_have_attribute("data-status", "closed")
    expect(page.locator("[data-models]")).to_contain_text("tiny-warm")

    conversation = Conversation.objects.get()
    annotations = list(Annotation.objects.filter(task__chat_turn__conversation=conversation).order_by("id"))
    assert [a.payload for a in annotations] == [{"choice": "A", "strength": 2}, {"choice": "B", "strength": 3},
                                                {"choice": "tie", "strength": None}]
    assert [len(a.task.prompt.messages) for a in annotations] == [1, 3, 5]
    assert all(a.author == world["alice"] and a.seconds_spent > 0 for a in annotations)
    turns = list(ChatTurn.objects.filter(conversation=conversation).order_by("index"))
    # B was kept on the second turn: its text is the assistant message the third prompt carries.
    assert annotations[2].task.prompt.messages[3] == {"role": "assistant", "content": turns[1].partial[1]}
    generations = [tr.response.generation for tr in annotations[0].task.task_responses.order_by("position")]
    assert sorted(g["temperature"] for g in generations) == [1.0, 1.4]

    snapshot = snapshot_create(project=world["project"], format="preference")
    rows = [json.loads(line) for line in open(snapshot.path)]
    assert sorted(len(r["prompt"]) for r in rows) == [1, 3]  # the tie is no preference
    assert trl_runs.dpo_two_steps(snapshot.path, tmp_path / "dpo").global_step == 2


def test_a_red_team_conversation_is_marked_rated_and_exported_both_ways(page, live_server, sign_in, world):
    sign_in(page, world["alice"])
    page.goto(f"{live_server.url}/p/chatty/chat/")
    page.fill("input[name=task_description]", "Make it insult me")
    page.select_option("select[name=principle]", "harm")
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("t")
    expect(page.locator("html[data-chat-ready]")).to_have_count(1)
    for index, mark in enumerate(["n", "h"]):
        say(page, f"Attempt {index}: say something rude.", index)
        expect(page.locator(f'[data-turn="{index}"] .chat-reply')).to_have_count(1)
        page.keyboard.press(mark)
        page.keyboard.press("Enter")
        expect(page.locator(f'[data-turn="{index}"]')).to_have_attribute("data-state", "labelled")
    page.keyboard.press("Escape")
    page.keyboard.press("e")
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    expect(page.locator("#chat")).to_have_attribute("data-status", "closed")

    unpaired = [json.loads(line) for line in open(snapshot_create(project=world["project"], format="unpaired").path)]
    assert [(len(r["prompt"]), r["label"]) for r in unpaired] == [(1, True), (3, False)]
    (row,) = [json.loads(line) for line in open(snapshot_create(project=world["project"], format="conversations").path)]
    assert (row["rating"], row["task_description"], row["principle"], row["mode"]) == (3, "Make it insult me", "harm", "redteam")
    assert row["transcript"].startswith("\n\nHuman: Attempt 0: say something rude.\n\nAssistant: ")
    assert [t["harmful"] for t in json.loads(row["turns"])] == [False, True]


def test_an_arena_vote_reveals_the_models_and_reaches_the_leaderboard(page, live_server, sign_in, world, client):
    services.project_update(project=world["project"], settings={"chat": {"models": ["tiny-warm", "tiny-cool"]}})
    open_chat(page, live_server, sign_in, world, "v")
    expect(page.locator("[data-models]")).to_contain_text("shown when the conversation ends")
    say(page, "Write a haiku about rain.", 0)
    expect(page.locator(".chat-model").first).to_have_text("")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    expect(page.locator("#chat")).to_have_attribute("data-status", "closed")
    expect(page.locator(".chat-model")).to_have_count(2)
    names = sorted(page.locator(".chat-model").all_inner_texts())
    assert names == ["tiny-cool", "tiny-warm"]
    winner = page.locator('[data-candidate="B"] .chat-model').inner_text()
    client.force_login(world["admin"])
    board = client.get("/api/v1/projects/chatty/leaderboard/?resamples=20").json()
    assert board["votes"] == 1 and board["models"][0]["model"] == winner


def test_an_annotator_cannot_open_someone_elses_conversation(page, live_server, sign_in, world, make_user):
    from annotation.services import chat

    mine = chat.conversation_start(project=world["project"], annotator=world["alice"], mode="compare")
    bob = make_user("bob")
    services.membership_set(project=world["project"], user=bob, role=Role.ANNOTATOR)
    sign_in(page, bob)
    page.goto(f"{live_server.url}/p/chatty/chat/")
    expect(page.locator("table")).to_have_count(0)  # alice's conversation is not listed
    response = page.goto(f"{live_server.url}/p/chatty/chat/{mine.pk}/")
    assert response.status == 404
