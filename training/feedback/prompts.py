"""The prompts of Constitutional AI (Bai et al. 2022, appendix), written once so judge, rater and chains agree.

Plain Python: no Django. A principle is anything with `key`, `critique_request`, `revision_request` and
`comparison_question` (an `annotation.models.Principle` or `PrincipleText`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

OPTION_LABELS = "ABCDEFGH"
# The assistant turn is opened with this; the judge then reads the next tokens' probabilities.
ANSWER_PREFIX = "The answer is:"
# Candidates carry their leading space so "<prefix> (A)" tokenizes as the model would write it.
CANDIDATES = (" (A)", " (B)")
COT_PREFIX = "Let's think step by step:"
COT_ANSWER = "\nTherefore, the answer is:"
SCORE_CANDIDATES = tuple(f" {i}" for i in range(1, 8))  # Likert 1..7, as annotation payloads store them
STEP_CANDIDATES = (" (A)", " (B)", " (C)")  # good, neutral, bad


@dataclass(frozen=True)
class PrincipleText:
    key: str
    critique_request: str = ""
    revision_request: str = ""
    comparison_question: str = "Which of these assistant responses is more helpful, honest and harmless?"
    name: str = ""


def _turn(message: dict) -> str:
    role = message.get("role", "user")
    speaker = {"user": "Human", "assistant": "Assistant", "system": "System"}.get(role, role.title())
    return f"{speaker}: {message.get('content', '')}"


def conversation_text(messages: Sequence[dict]) -> str:
    return "\n\n".join(_turn(m) for m in messages)


def comparison_prompt(messages: Sequence[dict], question: str, options: Sequence[str]) -> list[dict]:
    """The multiple-choice comparison as one user turn: conversation, principle, then (A), (B)… options."""
    lines = [
        "Consider the following conversation between a human and an assistant:",
        "",
        conversation_text(messages),
        "",
        question.strip(),
        "",
        "Options:",
    ]
    lines += [f"({OPTION_LABELS[i]}) {text}" for i, text in enumerate(options)]
    lines += ["", "Answer with the letter of the better option."]
    return [{"role": "user", "content": "\n".join(lines)}]


def critique_conversation(messages: Sequence[dict], response: str, critique_request: str) -> list[dict]:
    """Prompt, the response as the assistant's turn, then the principle's critique request."""
    return [
        *[{"role": m["role"], "content": m["content"]} for m in messages],
        {"role": "assistant", "content": response},
        {"role": "user", "content": f"Critique request: {critique_request.strip()}"},
    ]


def revision_conversation(
    messages: Sequence[dict], response: str, critique_request: str, critique: str, revision_request: str
) -> list[dict]:
    """The critique exchange, then the principle's revision request; the model answers with the revision."""
    return [
        *critique_conversation(messages, response, critique_request),
        {"role": "assistant", "content": f"Critique: {critique}"},
        {"role": "user", "content": f"Revision request: {revision_request.strip()} Reply with the revised response only."},
    ]


def rating_prompt(messages: Sequence[dict], response: str, aspect: str, question: str) -> list[dict]:
    """A scoring prompt for one aspect: the judge's answer is a digit from 1 to 7."""
    return [{"role": "user", "content": "\n".join([
        "Consider the following conversation between a human and an assistant:",
        "",
        conversation_text([*messages, {"role": "assistant", "content": response}]),
        "",
        question.strip(),
        f"Rate the assistant's last response for {aspect} on a scale from 1 (very poor) to 7 (excellent).",
        "Answer with a single digit.",
    ])}]


def step_prompt(messages: Sequence[dict], steps: Sequence[str], index: int, question: str) -> list[dict]:
    """A scoring prompt for step `index` of a reasoning chain: (A) good, (B) neutral, (C) bad."""
    shown = "\n".join(f"Step {i + 1}: {s}" for i, s in enumerate(steps[: index + 1]))
    return [{"role": "user", "content": "\n".join([
        "Consider the following question and the first steps of an answer:",
        "",
        conversation_text(messages),
        "",
        shown,
        "",
        question.strip(),
        f"Is step {index + 1} correct and useful?",
        "Options:",
        "(A) good: correct and it moves the answer forward",
        "(B) neutral: correct but adds nothing",
        "(C) bad: wrong or harmful",
        "",
        "Answer with the letter of the best option.",
    ])}]
