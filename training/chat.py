"""Generating live-chat turns on a worker: the Celery task the web sends by name (`training.chat_turn_generate`).

The worker claims the turn (its ticket must still be current), loads the side's model through the registry's
backend (kept warm between turns), and streams each candidate's text into the turn row at most
CHAT_WRITES_PER_SECOND times a second, beating all the while; the finished candidates become the turn's task
(`annotation.services.chat.chat_turn_complete`). Two sides with the same model and the same sampling (bar the seed)
are sampled together in one batch; otherwise the sides run one after the other. The transformers and OpenAI-compatible
backends stream; the in-process vLLM engine does not, so its candidates show once they are complete.
"""

from __future__ import annotations

import logging
import threading
import time

from celery import shared_task
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from annotation.models import ChatTurn
from annotation.services.chat import (
    chat_turn_beat,
    chat_turn_claim,
    chat_turn_complete,
    chat_turn_fail,
    chat_turn_progress,
    chat_turns_fail_stale,
)

from .backends import BackendError, Sampling, backend_for, storable_text
from .jobs.runtime import Heartbeat
from .models import Model, ModelRole
from .tasks import wait_for_preload

log = logging.getLogger(__name__)


class Abandoned(Exception):
    """The turn is no longer this worker's (retried under a new ticket, or marked failed)."""


class _Stream:
    """The turn's candidates as they grow: throttled writes to the row, first-token and completion times."""

    def __init__(self, turn: ChatTurn):
        self.turn_id, self.ticket = turn.pk, turn.ticket
        self.started = turn.queued_at
        n = len(turn.sides)
        self.texts, self.done = [""] * n, [False] * n
        self.timings = {**turn.timings, "first_token_s": [None] * n, "complete_s": [None] * n}
        self.interval = 1.0 / max(settings.CHAT_WRITES_PER_SECOND, 0.1)
        self.last_write = 0.0
        self.lost = threading.Event()

    def _since_message(self) -> float:
        return round((timezone.now() - self.started).total_seconds(), 3)

    def update(self, side: int, text: str) -> None:
        if self.lost.is_set():
            raise Abandoned()
        if text and self.timings["first_token_s"][side] is None:
            self.timings["first_token_s"][side] = self._since_message()
        self.texts[side] = storable_text(text)
        if time.monotonic() - self.last_write >= self.interval:
            self.write()

    def finish(self, side: int, text: str) -> None:
        self.texts[side], self.done[side] = storable_text(text), True
        self.timings["complete_s"][side] = self._since_message()
        if self.timings["first_token_s"][side] is None:
            self.timings["first_token_s"][side] = self.timings["complete_s"][side]
        self.write()

    def write(self) -> None:
        self.last_write = time.monotonic()
        if not chat_turn_progress(turn_id=self.turn_id, ticket=self.ticket, partial=self.texts, done=self.done,
                                  timings=self.timings):
            self.lost.set()
            raise Abandoned()


def _heartbeat(stream: _Stream) -> Heartbeat:
    """Beats on the turn while the main thread loads a model or generates (when no text is written)."""

    def beat() -> bool:
        if chat_turn_beat(turn_id=stream.turn_id, ticket=stream.ticket):
            return True
        stream.lost.set()
        return False

    return Heartbeat(beat, name=f"heartbeat-chat-turn-{stream.turn_id}", interval=settings.CHAT_HEARTBEAT_SECONDS)


def _side_model(name: str) -> Model:
    model = Model.objects.filter(name=name, is_active=True).first()
    if model is None:
        raise BackendError(f"model {name!r} is not in the registry (or is archived)")
    if ModelRole.POLICY not in (model.roles or []):
        raise BackendError(f"model {name!r} is not registered as a policy")
    return model


def _sampling(model: Model, side: dict) -> Sampling:
    try:
        return Sampling.from_dict({**(model.sampling or {}), **(side.get("sampling") or {})})
    except (TypeError, ValueError) as exc:
        raise BackendError(f"chat sampling for {model.name}: {exc}") from exc


def _groups(turn: ChatTurn) -> list[tuple[Model, Sampling, list[int]]]:
    """(model, sampling, shown positions) to generate together: one batch for two samplings of one model."""
    groups: list[tuple[Model, Sampling, list[int]]] = []
    for position, side in enumerate(turn.sides):
        model = next((g[0] for g in groups if g[0].name == side["model"]), None) or _side_model(side["model"])
        sampling = _sampling(model, side)
        same = next((g for g in groups if g[0].pk == model.pk and _batchable(g[1], sampling)), None)
        if same is not None:
            same[2].append(position)
        else:
            groups.append((model, sampling, [position]))
    return groups


def _batchable(a: Sampling, b: Sampling) -> bool:
    return a.seed is None and b.seed is None and a == b


def _generate(turn: ChatTurn, stream: _Stream) -> list[dict]:
    conversation = turn.prompt.messages
    candidates: list[dict | None] = [None] * len(turn.sides)
    for model, sampling, positions in _groups(turn):
        backend = backend_for(model)
        streaming = {}
        if getattr(backend, "streams", False):
            def on_tokens(rows, backend=backend, positions=positions):
                for position, tokens in zip(positions, rows):
                    stream.update(position, backend.partial_text(tokens))

            streaming["on_tokens"] = on_tokens
        began = time.monotonic()
        completions = backend.generate([conversation], len(positions), sampling, **streaming)
        seconds = round(time.monotonic() - began, 3)
        for position, completion in zip(positions, completions[0]):
            stream.finish(position, completion.text)
            candidates[position] = {
                "content": storable_text(completion.text),
                "model_name": model.name,
                "generation": {
                    **sampling.as_dict(), "backend": model.backend, "prompt_tokens": completion.prompt_tokens,
                    "completion_tokens": completion.completion_tokens, "finish_reason": completion.finish_reason,
                    "seconds": seconds, "samples_together": len(positions), "chat_turn": turn.pk,
                },
            }
    return candidates  # type: ignore[return-value]


def chat_turn_run(*, turn_id: int, ticket: str, worker: str = "") -> str:
    """Generate one turn's candidates; the outcome in a word (for logs and tests)."""
    turn = chat_turn_claim(turn_id=turn_id, ticket=ticket, worker=worker)
    if turn is None:
        return "skipped"
    stream = _Stream(turn)
    heartbeat = _heartbeat(stream)
    heartbeat.start()
    try:
        candidates = _generate(turn, stream)
    except Abandoned:
        return "abandoned"
    except BackendError as exc:
        chat_turn_fail(turn_id=turn_id, ticket=ticket, error=str(exc))
        return "failed"
    except Exception as exc:  # a bug or a broken model must still give the annotator a retry, with a reason
        log.exception("chat turn %s failed", turn_id)
        chat_turn_fail(turn_id=turn_id, ticket=ticket, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    finally:
        heartbeat.stop()
    done = chat_turn_complete(turn_id=turn_id, ticket=ticket, candidates=candidates, timings=stream.timings)
    return "ready" if done is not None else "abandoned"


@shared_task(bind=True, name="training.chat_turn_generate", acks_late=True, ignore_result=True)
def chat_turn_generate(self, turn_id: int, ticket: str) -> str:
    close_old_connections()
    wait_for_preload()  # transformers must not be imported from two threads at once
    return chat_turn_run(turn_id=turn_id, ticket=ticket, worker=self.request.hostname or "")


@shared_task(name="training.chat_reconcile", ignore_result=True)
def chat_reconcile() -> int:
    """Periodic (beat): turns whose worker stopped are marked failed, so the page offers a retry at once."""
    close_old_connections()
    return chat_turns_fail_stale()
