"""Small snapshots in Quorum's export formats and toy rewards, for the trainers' tests, smoke runs and benchmarks.

Everything is built in-process and offline; models come from `tests.support.tiny`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "QUESTIONS",
    "TARGET_TOKENS",
    "preference_rows",
    "separable_preference_rows",
    "sft_rows",
    "stepwise_rows",
    "target_token_reward",
    "unpaired_rows",
    "write_jsonl",
]

QUESTIONS = [
    ("What is two plus two?", "Two plus two is four.", "It is five."),
    ("What is the capital of France?", "The capital of France is Paris.", "Rome, I think."),
    ("Say hello politely.", "Hello, how are you today?", "No."),
    ("How do I sort a list in Python?", "Use the sorted function.", "You cannot sort lists."),
    ("Write a short poem about the sea.", "The sea is blue in the morning light.", "Sea."),
    ("Summarize: the council voted to build a park.", "The council will build a new park.", "Parks are green."),
    ("What is three times three?", "Three times three is nine.", "It is six."),
    ("Thank the user.", "Thank you! You're welcome.", "Whatever."),
]

_WORDS = "the cat sat on mat dog ran in garden birds sing trees every day sea sky morning light river park city".split()

# Token ids the toy PPO reward pays for: a quarter of the tiny tokenizer's vocabulary.
TARGET_TOKENS = frozenset(range(100, 228))


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def preference_rows(conversational: bool = True, margin: float | None = 1.0, repeat: int = 1) -> list[dict]:
    """Preference rows with a `margin` column on every row (null when `margin` is None, as a file made by hand may be)."""
    rows = []
    for q, c, r in QUESTIONS * repeat:
        if conversational:
            rows.append({"prompt": _user(q), "chosen": _assistant(c), "rejected": _assistant(r), "margin": margin})
        else:
            rows.append({"prompt": q, "chosen": c, "rejected": r, "margin": margin})
    return rows


def separable_preference_rows(n: int, seed: int = 0, marker: str = "Paris") -> list[dict]:
    """Pairs whose chosen response contains `marker` and whose rejected one has another word in its place; both
    are built from the same random filler, so length carries no signal."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        filler = " ".join(rnd.choice(_WORDS) for _ in range(rnd.randint(3, 6)))
        other = rnd.choice(["Rome", "Berlin", "Madrid", "Vienna"])
        position = rnd.randint(0, 1)
        chosen = f"{marker} {filler}" if position else f"{filler} {marker}"
        rejected = f"{other} {filler}" if position else f"{filler} {other}"
        rows.append(
            {
                "prompt": _user(f"Question {i}: {rnd.choice(_WORDS)} {rnd.choice(_WORDS)}?"),
                "chosen": _assistant(chosen),
                "rejected": _assistant(rejected),
                "margin": None,
            }
        )
    return rows


def unpaired_rows(conversational: bool = True) -> list[dict]:
    """Unpaired (KTO) rows: thumbs up on the good answers, thumbs down on the bad ones (imbalanced, 2:1)."""
    rows = []
    for i, (q, c, r) in enumerate(QUESTIONS):
        prompt = _user(q) if conversational else q
        rows.append({"prompt": prompt, "completion": _assistant(c) if conversational else c, "label": True})
        if i % 2 == 0:
            rows.append({"prompt": prompt, "completion": _assistant(r) if conversational else r, "label": False})
    return rows


def sft_rows() -> list[dict]:
    rows = [{"messages": _user(q) + _assistant(c)} for q, c, _ in QUESTIONS]
    rows[0]["messages"] = [{"role": "system", "content": "You are a helpful assistant."}, *rows[0]["messages"]]
    return rows


def stepwise_rows(problems: int = 8, candidates: int = 3, seed: int = 0, ints: bool = False) -> list[dict]:
    """Stepwise rows: several candidate solutions per problem; a wrong step says "wrong", and every step after it is
    labelled wrong too. With `ints`, labels are −1/0/+1 as a raw export carries them (a few steps neutral)."""
    rnd = random.Random(seed)
    rows = []
    for p in range(problems):
        for c in range(candidates):
            n = rnd.randint(2, 3)
            steps = [f"Step {i + 1}. Two plus two is four." for i in range(n)]
            good = [True] * n
            if (c + p) % 2:  # about half the candidates go wrong at some step
                k = rnd.randrange(n)
                steps[k] = f"Step {k + 1}. No, that is wrong."
                good[k:] = [False] * (n - k)
            labels: list = good
            if ints:
                labels = [1 if g else -1 for g in good]
                if good[0] and (p + c) % 3 == 0:
                    labels[0] = 0
            rows.append({"prompt": f"Question {p}? What is two plus two?", "completions": steps, "labels": labels})
    return rows


def target_token_reward(prompts=None, completions=None, completion_ids=None, **kwargs) -> list[float]:  # noqa: ARG001
    """A toy reward: the share of a completion's tokens that are in `TARGET_TOKENS`."""
    return [sum(t in TARGET_TOKENS for t in ids) / max(len(ids), 1) for ids in completion_ids]
