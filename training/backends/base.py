"""The one interface every generation backend implements, and the errors it may raise.

`generate(conversations, n, sampling)` returns, for each conversation, `n` completions with token counts.
`logprobs(conversations, candidates)` returns, for each conversation, the log-probability of each candidate
continuation of the assistant turn (e.g. "(A)" vs "(B)" for a judge), summed over the candidate's tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Protocol, Sequence

Conversation = Sequence[dict]  # [{"role": ..., "content": ...}, ...]

# The dtypes a registry row may name for a local model: the name is looked up on the torch module, so only these.
DTYPES = ("auto", "float32", "float16", "bfloat16")


class BackendError(Exception):
    """The model cannot do this (bad path, bad template, prompt too long…). Retrying will not help."""


class TransientBackendError(BackendError):
    """A failure that may pass: a server's 429/5xx, a timeout, a dropped connection."""


class BackendUnavailable(BackendError):
    """The backend's optional dependency is not installed here."""


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters, named as in the OpenAI API. temperature 0 means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Sampling":
        data = dict(data or {})
        if "max_tokens" in data and "max_new_tokens" not in data:
            data["max_new_tokens"] = data.pop("max_tokens")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown sampling parameters: {', '.join(sorted(unknown))}")
        if isinstance(data.get("stop"), str):
            data["stop"] = (data["stop"],)
        if "stop" in data:
            data["stop"] = tuple(data["stop"] or ())
        sampling = cls(**data)
        sampling.validate()
        return sampling

    def validate(self) -> None:
        if not isinstance(self.max_new_tokens, int) or not 1 <= self.max_new_tokens <= 32768:
            raise ValueError("max_new_tokens must be an integer from 1 to 32768")
        if not 0 <= float(self.temperature) <= 5:
            raise ValueError("temperature must be between 0 and 5")
        if not 0 < float(self.top_p) <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ValueError("top_k must be a positive integer or null")
        if self.repetition_penalty is not None and not 0 < float(self.repetition_penalty) <= 10:
            raise ValueError("repetition_penalty must be in (0, 10]")
        if self.seed is not None and not isinstance(self.seed, int):
            raise ValueError("seed must be an integer or null")

    @property
    def greedy(self) -> bool:
        return float(self.temperature) == 0.0

    def as_dict(self) -> dict:
        data = asdict(self)
        data["stop"] = list(self.stop)
        return {k: v for k, v in data.items() if v is not None and v != []}


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn or a stop string) or "length"


def storable_text(text: str) -> str:
    """Model output as the database can keep it: PostgreSQL's text and jsonb refuse NUL (a sampled token may be one)."""
    return text.replace("\x00", "")


class GenerationBackend(Protocol):
    def generate(self, conversations: Sequence[Conversation], n: int, sampling: Sampling) -> list[list[Completion]]:
        ...

    def logprobs(
        self, conversations: Sequence[Conversation], candidates: Sequence[str], *, prefix: str = ""
    ) -> list[dict[str, float]]:
        ...

    def close(self) -> None:
        ...


def check_request(conversations: Sequence[Conversation], n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise BackendError("n must be a positive integer")
    for i, conversation in enumerate(conversations):
        if not conversation or not all(isinstance(m, dict) and "role" in m and "content" in m for m in conversation):
            raise BackendError(f"conversation {i} must be a non-empty list of {{role, content}} messages")
