"""Deterministic backends for tests and checks: they implement the backend protocol without a model.

`FirstPositionBackend` is a judge with pure position bias (it always prefers option (A)); `RecordingBackend`
wraps any backend and records what it was asked.
"""

from __future__ import annotations

from typing import Sequence

from training.backends.base import BackendError, Completion, Sampling, check_request


class FirstPositionBackend:
    """Prefers the first listed candidate by `strength` nats, whatever the conversation says."""

    name = "first-position"

    def __init__(self, strength: float = 2.0, reject: str = "", reply: str = "I prefer the first option."):
        self.strength, self.reject, self.reply = strength, reject, reply

    def _check(self, conversations) -> None:
        if self.reject and any(self.reject in m["content"] for c in conversations for m in c):
            raise BackendError(f"cannot take a conversation that contains {self.reject!r}")

    def generate(self, conversations: Sequence, n: int, sampling: Sampling) -> list[list[Completion]]:
        check_request(conversations, n)
        self._check(conversations)
        text = self.reply[: max(1, sampling.max_new_tokens * 4)]
        return [[Completion(text, 10, len(text.split()), "stop") for _ in range(n)] for _ in conversations]

    def logprobs(self, conversations: Sequence, candidates: Sequence[str], *, prefix: str = "") -> list[dict[str, float]]:
        check_request(conversations, 1)
        self._check(conversations)
        return [{c: (0.0 if i == 0 else -self.strength) for i, c in enumerate(candidates)} for _ in conversations]

    def close(self) -> None:
        pass


class RecordingBackend:
    """Passes every call to `inner` and keeps what was asked (conversations, candidates, prefix)."""

    def __init__(self, inner):
        self.inner = inner
        self.name = getattr(inner, "name", "")
        self.calls: list[dict] = []
        self.generated = 0

    def generate(self, conversations, n, sampling):
        self.generated += len(conversations)
        return self.inner.generate(conversations, n, sampling)

    def logprobs(self, conversations, candidates, *, prefix: str = ""):
        self.calls.append({"conversations": list(conversations), "candidates": list(candidates), "prefix": prefix})
        return self.inner.logprobs(conversations, candidates, prefix=prefix)

    def close(self) -> None:
        self.inner.close()
