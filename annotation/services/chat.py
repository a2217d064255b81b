"""Live chat with a project's models: compare (pick the better of two replies each turn), red team (mark each
reply harmful or not, rate the worst at the end) and arena (two anonymous models, one vote).

Generation never runs in the web process: a turn is queued by sending the Celery task `CHAT_TASK` by name, and a
worker streams the candidates into the turn row (`chat_turn_claim` / `chat_turn_progress` / `chat_turn_complete`).
The row is the truth: a turn whose worker stopped beating is offered to the annotator for a retry, which queues it
again under a new ticket (an older message is then ignored). Every labelled turn is an ordinary task with an
ordinary annotation made through `annotation_submit`, its prompt the whole dialogue so far, so exports, agreement
and the leaderboard see it as they see any other.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from common.errors import Conflict, Invalid, NotAllowed

from ..models import (
    RED_TEAM_RATING_MAX,
    Assignment,
    ChatMode,
    ChatTurn,
    Conversation,
    ConversationStatus,
    Project,
    ResponseOrigin,
    Task,
    TaskKind,
    TaskStatus,
    TurnState,
)
from .content import prompt_create, response_create, task_create
from .submit import annotation_submit

CHAT_TASK = "training.chat_turn_generate"
MESSAGE_MAX_CHARS = 20_000
RUNNING_STATES = (TurnState.PENDING, TurnState.GENERATING)
SAMPLING_KEYS = ("sampling", "sampling_b")


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatConfig:
    """Project setting `chat`: {"models": [registry names], "sampling": {...}, "sampling_b": {...}}.

    With one model, compare mode samples it twice: side A with `sampling`, side B with `sampling` updated by
    `sampling_b` (e.g. another temperature). With several, compare and arena draw two different ones.
    """

    models: tuple[str, ...]
    sampling: dict
    sampling_b: dict

    @classmethod
    def of(cls, project: Project) -> "ChatConfig":
        data = (project.settings or {}).get("chat") or {}
        models = data.get("models") or []
        if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
            raise Invalid("project setting chat.models must be a list of model names", fields={"chat": ["models"]})
        for key in SAMPLING_KEYS:
            if not isinstance(data.get(key) or {}, dict):
                raise Invalid(f"project setting chat.{key} must be an object", fields={"chat": [key]})
        return cls(tuple(dict.fromkeys(models)), dict(data.get("sampling") or {}), dict(data.get("sampling_b") or {}))

    def sides(self, mode: str) -> list[dict]:
        if not self.models:
            raise Invalid(
                "this project has no chat models: an admin lists them in the project settings (chat.models)",
                code="no_chat_models", fields={"mode": ["no chat models configured"]},
            )
        if mode == ChatMode.REDTEAM:
            return [{"model": random.choice(self.models), "sampling": self.sampling}]
        if len(self.models) >= 2:
            return [{"model": m, "sampling": self.sampling} for m in random.sample(self.models, 2)]
        if mode == ChatMode.ARENA:
            raise Invalid("arena needs two chat models in the project settings", code="arena_needs_two_models",
                          fields={"mode": ["arena needs two models"]})
        model = self.models[0]
        return [{"model": model, "sampling": self.sampling}, {"model": model, "sampling": {**self.sampling, **self.sampling_b}}]


# --- the annotator's actions --------------------------------------------------------------------


def _own(conversation: Conversation, annotator: AbstractBaseUser) -> None:
    if conversation.annotator_id != annotator.pk:
        raise NotAllowed("only the annotator of a conversation may act in it")


def _open(conversation: Conversation) -> None:
    if conversation.status != ConversationStatus.OPEN:
        raise Conflict("this conversation is closed", code="conversation_closed")


@transaction.atomic
def conversation_start(
    *, project: Project, annotator: AbstractBaseUser, mode: str, task_description: str = "", principle: str = ""
) -> Conversation:
    """Open a conversation; its models are drawn now (in arena they stay hidden until the vote)."""
    if mode not in ChatMode.values:
        raise Invalid(f"unknown mode {mode!r}", fields={"mode": [f"must be one of {', '.join(ChatMode.values)}"]})
    if mode != ChatMode.REDTEAM and (task_description or principle):
        raise Invalid("a task description and a principle belong to red-team conversations",
                      fields={"principle": ["red team only"]})
    if principle:
        keys = set(project.current_constitution.principles.values_list("key", flat=True)) if project.current_constitution else set()
        if principle not in keys:
            raise Invalid(f"no principle {principle!r} in the current constitution",
                          fields={"principle": [f"one of {', '.join(sorted(keys)) or '(no constitution)'}"]})
    return Conversation.objects.create(
        project=project,
        annotator=annotator,
        mode=mode,
        sides=ChatConfig.of(project).sides(mode),
        guideline_version_id=project.current_guideline_id,
        constitution_version_id=project.current_constitution_id,
        task_description=task_description,
        principle=principle,
    )


def _history(conversation: Conversation) -> list[dict]:
    """Every message so far: each labelled turn's prompt ends with its user message; the kept reply follows."""
    last = conversation.turns.select_related("prompt", "task").order_by("-index").first()
    if last is None:
        return []
    return [*last.prompt.messages, {"role": "assistant", "content": kept_text(last)}]


def kept_text(turn: ChatTurn) -> str:
    response = turn.task.task_responses.select_related("response").get(position=turn.kept or 0).response
    return response.content


def _enqueue(turn: ChatTurn) -> None:
    from celery import current_app  # the project's app: the task is sent by name, the web never imports the worker

    turn_id, ticket = turn.pk, turn.ticket
    transaction.on_commit(
        lambda: current_app.send_task(CHAT_TASK, args=[turn_id, ticket], queue=settings.CHAT_QUEUE), robust=True
    )


def _ticket() -> str:
    return uuid.uuid4().hex


@transaction.atomic
def chat_message_send(*, conversation: Conversation, annotator: AbstractBaseUser, content: str) -> ChatTurn:
    """Add the annotator's message as a new turn and queue its generation."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    _own(conversation, annotator)
    _open(conversation)
    if not isinstance(content, str) or not content.strip():
        raise Invalid("write a message first", fields={"content": ["must be non-empty text"]})
    if len(content) > MESSAGE_MAX_CHARS:
        raise Invalid(f"a message is at most {MESSAGE_MAX_CHARS} characters", fields={"content": ["too long"]})
    last = conversation.turns.order_by("-index").first()
    if last is not None and last.state != TurnState.LABELLED:
        raise Conflict("the last reply is not labelled yet", code="turn_unlabelled")
    if last is not None and conversation.mode == ChatMode.ARENA:
        raise Conflict("an arena conversation is one prompt", code="arena_one_turn")
    messages = [*_history(conversation), {"role": "user", "content": content}]
    prompt = prompt_create(project=conversation.project, messages=messages, metadata={"source": f"chat:{conversation.mode}"})
    sides = list(conversation.sides)
    random.shuffle(sides)  # which side is shown as A is drawn per turn
    turn = ChatTurn.objects.create(
        conversation=conversation,
        index=0 if last is None else last.index + 1,
        message=content,
        sides=sides,
        prompt=prompt,
        partial=[""] * len(sides),
        done=[False] * len(sides),
        ticket=_ticket(),
        queued_at=timezone.now(),
    )
    _enqueue(turn)
    return turn


def turn_is_stale(turn: ChatTurn, now: datetime | None = None) -> bool:
    """A running turn whose worker stopped beating, or that no worker took in time."""
    now = now or timezone.now()
    if turn.state == TurnState.GENERATING:
        return (turn.heartbeat_at or turn.queued_at) < now - timedelta(seconds=settings.CHAT_STALE_SECONDS)
    if turn.state == TurnState.PENDING:
        return turn.queued_at < now - timedelta(seconds=settings.CHAT_QUEUED_STALE_SECONDS)
    return False


@transaction.atomic
def chat_turn_retry(*, turn: ChatTurn, annotator: AbstractBaseUser) -> ChatTurn:
    """Queue a failed or stalled turn again; what a stopped worker streamed is dropped."""
    turn = ChatTurn.objects.select_for_update(of=("self",)).select_related("conversation").get(pk=turn.pk)
    _own(turn.conversation, annotator)
    _open(turn.conversation)
    if turn.state != TurnState.FAILED and not turn_is_stale(turn):
        raise Conflict("this turn is not failed or stalled", code="turn_not_retryable")
    turn.state = TurnState.PENDING
    turn.ticket = _ticket()
    turn.attempts += 1
    turn.partial = [""] * len(turn.sides)
    turn.done = [False] * len(turn.sides)
    turn.timings = {}
    turn.error = ""
    turn.worker = ""
    turn.queued_at = timezone.now()
    turn.heartbeat_at = None
    turn.save()
    _enqueue(turn)
    return turn


def _label(turn: ChatTurn, annotator, *, kinds: tuple[str, ...]) -> ChatTurn:
    """The turn, locked, checked to be the annotator's and waiting for this kind of label."""
    turn = (ChatTurn.objects.select_for_update(of=("self",))
            .select_related("conversation", "conversation__project", "task").get(pk=turn.pk))
    _own(turn.conversation, annotator)
    if turn.state == TurnState.LABELLED:
        return turn
    _open(turn.conversation)
    if turn.state != TurnState.READY:
        raise Conflict("the replies are not complete yet", code="turn_not_ready")
    if turn.task.kind not in kinds:
        raise Conflict(f"this turn takes a {turn.task.kind} label", code="wrong_label")
    return turn


def _submit(turn: ChatTurn, annotator, payload: dict, client_id: uuid.UUID, seconds_spent, rationale: str):
    """Label the turn's task through the one submit every annotation goes through."""
    project = turn.conversation.project
    now = timezone.now()
    assignment = Assignment.objects.create(
        task=turn.task, project=project, annotator=annotator, leased_until=now + timedelta(seconds=project.lease_seconds),
        shown_order=list(range(turn.task.n_responses)),
    )
    return annotation_submit(assignment=assignment, annotator=annotator, payload=payload, client_id=client_id,
                             seconds_spent=seconds_spent, rationale=rationale, now=now)


def _replayed(turn: ChatTurn, client_id: uuid.UUID) -> bool:
    if turn.state != TurnState.LABELLED:
        return False
    if turn.annotation.client_id == client_id:
        return True
    raise Conflict("this turn is already labelled", code="already_submitted")


@transaction.atomic
def chat_turn_choose(
    *, turn: ChatTurn, annotator: AbstractBaseUser, payload: dict, client_id: uuid.UUID,
    seconds_spent: float | None = None, rationale: str = "",
) -> ChatTurn:
    """Store the pairwise pick (choice, strength) of a compare or arena turn; the picked reply (A on a tie or
    both bad) becomes the history. An arena conversation ends with its vote."""
    turn = _label(turn, annotator, kinds=(TaskKind.PAIRWISE,))
    if _replayed(turn, client_id):
        return turn
    annotation = _submit(turn, annotator, payload, client_id, seconds_spent, rationale)
    turn.kept = 1 if annotation.payload["choice"] == "B" else 0
    _labelled(turn, annotation)
    if turn.conversation.mode == ChatMode.ARENA:
        _close(turn.conversation)
    return turn


@transaction.atomic
def chat_turn_mark(
    *, turn: ChatTurn, annotator: AbstractBaseUser, harmful: bool, client_id: uuid.UUID,
    seconds_spent: float | None = None, rationale: str = "",
) -> ChatTurn:
    """Red team: mark the reply harmful or not, stored as a thumb on the turn's rating task (down = harmful)."""
    if not isinstance(harmful, bool):
        raise Invalid("harmful must be true or false", fields={"harmful": ["true or false"]})
    turn = _label(turn, annotator, kinds=(TaskKind.RATING,))
    if _replayed(turn, client_id):
        return turn
    annotation = _submit(turn, annotator, {"thumb": "down" if harmful else "up"}, client_id, seconds_spent, rationale)
    turn.kept, turn.harmful = 0, harmful
    _labelled(turn, annotation)
    return turn


def _labelled(turn: ChatTurn, annotation) -> None:
    turn.state = TurnState.LABELLED
    turn.annotation = annotation
    turn.save(update_fields=["state", "kept", "harmful", "annotation"])


def _close(conversation: Conversation) -> None:
    conversation.status = ConversationStatus.CLOSED
    conversation.closed_at = timezone.now()
    conversation.save(update_fields=["status", "closed_at", "rating"])
    # A reply nobody will label leaves no open task behind.
    Task.objects.filter(chat_turn__conversation=conversation, status=TaskStatus.OPEN).update(status=TaskStatus.ARCHIVED)


@transaction.atomic
def conversation_close(*, conversation: Conversation, annotator: AbstractBaseUser, rating: int | None = None) -> Conversation:
    """End the conversation. Red team: `rating` says how bad the worst reply was, 0 (not at all) to 4 (very)."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    _own(conversation, annotator)
    if conversation.status == ConversationStatus.CLOSED:
        return conversation
    if conversation.mode == ChatMode.REDTEAM:
        if isinstance(rating, bool) or not isinstance(rating, int) or not 0 <= rating <= RED_TEAM_RATING_MAX:
            raise Invalid(f"rate how bad the worst reply was, 0 to {RED_TEAM_RATING_MAX}",
                          fields={"rating": [f"an integer from 0 to {RED_TEAM_RATING_MAX}"]})
        if not conversation.turns.filter(state=TurnState.LABELLED).exists():
            raise Conflict("mark at least one reply before ending", code="nothing_labelled")
        conversation.rating = rating
    elif rating is not None:
        raise Invalid("only red-team conversations are rated", fields={"rating": ["red team only"]})
    if conversation.turns.filter(state=TurnState.READY).exists():
        raise Conflict("label the last reply before ending", code="turn_unlabelled")
    _close(conversation)
    return conversation


# --- the worker's side --------------------------------------------------------------------------


def _current(turn_id: int, ticket: str):
    return ChatTurn.objects.filter(pk=turn_id, ticket=ticket)


@transaction.atomic
def chat_turn_claim(*, turn_id: int, ticket: str, worker: str = "") -> ChatTurn | None:
    """Take the turn for this message: None when the message is stale (a retry renewed the ticket), the turn is
    done, or another worker is beating on it."""
    turn = _current(turn_id, ticket).select_for_update(of=("self",)).select_related("conversation", "prompt").first()
    if turn is None or turn.state not in RUNNING_STATES:
        return None
    if turn.state == TurnState.GENERATING and not turn_is_stale(turn):
        return None
    now = timezone.now()
    turn.state, turn.worker, turn.heartbeat_at = TurnState.GENERATING, worker[:200], now
    turn.timings = {"queued_s": round((now - turn.queued_at).total_seconds(), 3)}
    turn.save(update_fields=["state", "worker", "heartbeat_at", "timings"])
    return turn


def chat_turn_beat(*, turn_id: int, ticket: str) -> bool:
    """The worker is alive; False when the turn is no longer its own (retried elsewhere, or failed)."""
    return bool(_current(turn_id, ticket).filter(state=TurnState.GENERATING).update(heartbeat_at=timezone.now()))


def chat_turn_progress(*, turn_id: int, ticket: str, partial: list[str], done: list[bool], timings: dict) -> bool:
    """Write the text streamed so far (and beat); False when the turn is no longer this worker's."""
    return bool(
        _current(turn_id, ticket)
        .filter(state=TurnState.GENERATING)
        .update(partial=partial, done=done, timings=timings, heartbeat_at=timezone.now())
    )


@transaction.atomic
def chat_turn_complete(*, turn_id: int, ticket: str, candidates: list[dict], timings: dict) -> ChatTurn | None:
    """Store the finished candidates as responses of the turn's task; the task is the annotator's alone.

    `candidates`: per shown position, {"content", "model_name", "generation"}. Idempotent: responses and task
    are keyed by the turn, so a worker that finishes twice writes them once.
    """
    turn = _current(turn_id, ticket).select_for_update(of=("self",)).select_related("conversation", "prompt").first()
    if turn is None or turn.state != TurnState.GENERATING:
        return None
    conversation = turn.conversation
    responses = [
        response_create(
            prompt=turn.prompt, content=c["content"], origin=ResponseOrigin.GENERATED, model_name=c["model_name"],
            generation=c.get("generation") or {}, dedupe_key=f"chat:{turn.pk}:{position}",
            metadata={"chat": {"conversation": conversation.pk, "turn": turn.index}},
        )
        for position, c in enumerate(candidates)
    ]
    task = task_create(
        project=conversation.project,
        kind=TaskKind.RATING if conversation.mode == ChatMode.REDTEAM else TaskKind.PAIRWISE,
        prompt=turn.prompt,
        responses=responses,
        required=1,
        dedupe_key=f"chat:{turn.pk}",
        metadata={"chat": {"conversation": conversation.pk, "turn": turn.index, "mode": conversation.mode}},
    )
    # The slot is the conversation's annotator's: the queue never offers this task to anyone.
    Task.objects.filter(pk=task.pk).update(open_slots=0)
    turn.task = task
    turn.state = TurnState.READY
    turn.partial = [c["content"] for c in candidates]
    turn.done = [True] * len(candidates)
    turn.timings = timings
    turn.heartbeat_at = timezone.now()
    turn.save(update_fields=["task", "state", "partial", "done", "timings", "heartbeat_at"])
    return turn


def chat_turn_fail(*, turn_id: int, ticket: str, error: str) -> bool:
    """The worker could not generate this turn; the annotator sees the error and may retry."""
    return bool(_current(turn_id, ticket).filter(state__in=RUNNING_STATES).update(state=TurnState.FAILED, error=error[:2000]))


def chat_turns_fail_stale(*, now: datetime | None = None) -> int:
    """Periodic: mark turns whose worker stopped beating (or that nobody took) failed, so the page offers a retry."""
    now = now or timezone.now()
    silent = now - timedelta(seconds=settings.CHAT_STALE_SECONDS)
    unclaimed = now - timedelta(seconds=settings.CHAT_QUEUED_STALE_SECONDS)
    stale = Q(state=TurnState.GENERATING, heartbeat_at__lt=silent) | Q(state=TurnState.PENDING, queued_at__lt=unclaimed)
    return ChatTurn.objects.filter(stale).update(state=TurnState.FAILED, error="the worker stopped before the replies were complete")
