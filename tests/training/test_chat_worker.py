"""The chat worker's body (training/chat.py), run in this process on a tiny random model: it streams the
candidates into the turn row, stores them as the turn's task, and leaves the turn to a retry when it fails."""

import dataclasses
import uuid

import pytest

from annotation import services
from annotation.models import Role, Task, TurnState
from annotation.services import chat
from tests.support.openai import ServerControl, openai_server
from training.backends import forget_backends
from training.chat import chat_turn_run
from training.services import model_register

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat_project(project, member, tiny_model, settings):
    settings.CHAT_WRITES_PER_SECOND = 1000  # every decoding step is written, so the stream is observable
    model_register(name="tiny-a", backend="transformers", path=str(tiny_model),
                   sampling={"max_new_tokens": 12, "temperature": 1.0})
    model_register(name="tiny-b", backend="transformers", path=str(tiny_model),
                   sampling={"max_new_tokens": 8, "temperature": 0.7})
    services.project_update(project=project, settings={"chat": {"models": ["tiny-a"], "sampling_b": {"temperature": 1.5}}})
    project.refresh_from_db()
    return project, member(Role.ANNOTATOR)


def _progress_spy(monkeypatch) -> list[list[str]]:
    """The partial texts the worker writes to the turn row, in order."""
    seen = []
    original = chat.chat_turn_progress

    def spy(**kwargs):
        seen.append(list(kwargs["partial"]))
        return original(**kwargs)

    monkeypatch.setattr("training.chat.chat_turn_progress", spy)
    return seen


def _send(project, user, mode="compare", text="Hello there", models=None):
    if models is not None:
        services.project_update(project=project, settings={"chat": {"models": models}})
        project.refresh_from_db()
    conversation = chat.conversation_start(project=project, annotator=user, mode=mode)
    return conversation, chat.chat_message_send(conversation=conversation, annotator=user, content=text)


def test_a_turn_streams_both_candidates_then_becomes_a_private_pairwise_task(chat_project, monkeypatch):
    project, user = chat_project
    conversation, turn = _send(project, user)
    seen = _progress_spy(monkeypatch)
    assert chat_turn_run(turn_id=turn.pk, ticket=turn.ticket, worker="w1") == "ready"
    turn.refresh_from_db()
    assert turn.state == TurnState.READY and all(turn.done)
    # Text grew over several writes before it was complete.
    assert len(seen) > 3 and any(0 < len(p[0]) < len(turn.partial[0]) for p in seen if p[0])
    task = turn.task
    assert task.kind == "pairwise" and task.open_slots == 0 and task.prompt.messages == [{"role": "user", "content": "Hello there"}]
    responses = [tr.response for tr in task.task_responses.order_by("position")]
    assert [r.content for r in responses] == turn.partial
    assert {r.model_name for r in responses} == {"tiny-a"}
    temperatures = sorted(r.generation["temperature"] for r in responses)
    assert temperatures == [1.0, 1.5]  # two samplings of one model
    assert all(r.generation["chat_turn"] == turn.pk and r.origin == "generated" for r in responses)
    assert turn.timings["complete_s"][0] >= turn.timings["first_token_s"][0] >= 0
    # The queue never hands the chat's task to anyone.
    other = type(user).objects.create_user("zed")
    services.membership_set(project=project, user=other, role=Role.ANNOTATOR)
    assert services.task_next_for(annotator=other, project=project) is None


class _SamplesNul:
    """A real backend whose text carries a NUL, as a sampled token may: PostgreSQL's text and jsonb refuse it."""

    def __init__(self, backend):
        self.backend, self.streams = backend, getattr(backend, "streams", False)

    def partial_text(self, tokens):
        return self.backend.partial_text(tokens) + "\x00"

    def generate(self, *args, **kwargs):
        rows = self.backend.generate(*args, **kwargs)
        return [[dataclasses.replace(c, text=c.text + "\x00") for c in row] for row in rows]


def test_a_nul_the_model_samples_is_left_out_of_the_stream_and_the_candidates(chat_project, monkeypatch):
    import training.chat as worker

    real = worker.backend_for
    monkeypatch.setattr(worker, "backend_for", lambda model: _SamplesNul(real(model)))
    project, user = chat_project
    _, turn = _send(project, user)
    assert chat_turn_run(turn_id=turn.pk, ticket=turn.ticket) == "ready"
    turn.refresh_from_db()
    stored = turn.partial + [tr.response.content for tr in turn.task.task_responses.all()]
    assert len(stored) == 4 and all(text and "\x00" not in text for text in stored)


def test_same_model_and_sampling_are_sampled_in_one_batch(chat_project):
    project, user = chat_project
    _, turn = _send(project, user, models=["tiny-a"])
    assert chat_turn_run(turn_id=turn.pk, ticket=turn.ticket) == "ready"
    turn.refresh_from_db()
    generations = [tr.response.generation for tr in turn.task.task_responses.all()]
    assert [g["samples_together"] for g in generations] == [2, 2]


def test_two_models_answer_in_arena_and_a_stale_ticket_does_nothing(chat_project):
    project, user = chat_project
    _, turn = _send(project, user, mode="arena", models=["tiny-a", "tiny-b"])
    assert chat_turn_run(turn_id=turn.pk, ticket="old-ticket") == "skipped"
    assert chat_turn_run(turn_id=turn.pk, ticket=turn.ticket) == "ready"
    assert chat_turn_run(turn_id=turn.pk, ticket=turn.ticket) == "skipped"  # a redelivered message
    turn.refresh_from_db()
    assert sorted(tr.response.model_name for tr in turn.task.task_responses.all()) == ["tiny-a", "tiny-b"]
    assert Task.objects.filter(project=project).count() == 1


def test_a_missing_model_fails_the_turn_with_its_reason_and_a_retry_completes(chat_project):
    project, user = chat_project
    _, turn = _send(project, user, models=["gone"])
    assert chat_turn_run(turn_id=turn.pk, ticket=turn.ticket) == "failed"
    turn.refresh_from_db()
    assert turn.state == TurnState.FAILED and "gone" in turn.error
    model_register(name="gone", backend="transformers", path=_tiny_path())
    retried = chat.chat_turn_retry(turn=turn, annotator=user)
    assert retried.state == TurnState.PENDING and retried.ticket != turn.ticket and retried.attempts == 2
    assert chat_turn_run(turn_id=turn.pk, ticket=retried.ticket) == "ready"


def _tiny_path():
    from training.models import Model

    return Model.objects.get(name="tiny-a").path


def test_a_turn_labelled_twice_with_one_client_id_stores_one_annotation(chat_project):
    project, user = chat_project
    _, turn = _send(project, user)
    chat_turn_run(turn_id=turn.pk, ticket=turn.ticket)
    client_id = uuid.uuid4()
    for _ in range(2):
        chat.chat_turn_choose(turn=turn, annotator=user, payload={"choice": "B", "strength": 2}, client_id=client_id)
    turn.refresh_from_db()
    assert turn.task.annotations.count() == 1 and turn.kept == 1


# --- a model served over the OpenAI-compatible API ------------------------------------------------


@pytest.fixture(scope="module")
def served(tiny_model):
    with openai_server(tiny_model) as url:
        yield url


@pytest.fixture
def remote_project(chat_project, served):
    control = ServerControl(served)
    control.reset()
    model_register(name="remote", backend="openai", base_url=f"{served}/v1", served_name="tiny",
                   sampling={"max_new_tokens": 24, "temperature": 1.0}, options={"backoff": 0.05})
    project, user = chat_project
    yield project, user, control
    control.set(**ServerControl.CLEAR)
    forget_backends()


def test_a_turn_served_over_the_openai_api_shows_its_text_before_it_is_complete(remote_project, monkeypatch):
    project, user, control = remote_project
    control.set(chunk_delay=0.02)
    _, turn = _send(project, user, models=["remote"])
    seen = _progress_spy(monkeypatch)
    assert chat_turn_run(turn_id=turn.pk, ticket=turn.ticket) == "ready"
    turn.refresh_from_db()
    final = turn.partial
    unfinished = [p for p in seen if any(0 < len(p[i]) < len(final[i]) for i in range(2))]
    assert len(unfinished) >= 2, seen  # partial text written at least twice before the replies were complete
    assert all(final[i].startswith(p[i]) for p in seen for i in range(2))
    generations = [tr.response.generation for tr in turn.task.task_responses.order_by("position")]
    assert [g["backend"] for g in generations] == ["openai", "openai"]
    assert all(g["completion_tokens"] > 0 and g["prompt_tokens"] > 0 for g in generations)
    assert all(body["stream"] is True for body in control.get()["bodies"])


def test_a_stream_broken_mid_reply_fails_the_turn_with_its_reason_and_a_retry_completes(remote_project):
    project, user, control = remote_project
    control.set(break_after=3)
    _, turn = _send(project, user, models=["remote"])
    assert chat_turn_run(turn_id=turn.pk, ticket=turn.ticket) == "failed"
    turn.refresh_from_db()
    assert turn.state == TurnState.FAILED and "stream ended before [DONE]" in turn.error
    control.set(error_after=1)
    retried = chat.chat_turn_retry(turn=turn, annotator=user)
    assert chat_turn_run(turn_id=turn.pk, ticket=retried.ticket) == "failed"
    turn.refresh_from_db()
    assert "the server stopped the stream: injected: the engine ran out of memory" in turn.error
    retried = chat.chat_turn_retry(turn=turn, annotator=user)
    assert chat_turn_run(turn_id=turn.pk, ticket=retried.ticket) == "ready"
    turn.refresh_from_db()
    assert turn.state == TurnState.READY and all(turn.partial)
