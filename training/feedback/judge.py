"""The AI judge: soft pairwise labels read from a model's next-token probabilities, both orders averaged.

Plain Python over any backend of `training.backends` (no Django), so the feedback jobs, the AI rater, the
training rounds and `bench/judge.py` all call the same code:

    from training.feedback.judge import PairItem, judge_pairs

    verdicts = judge_pairs(backend, [PairItem(messages, first, second, question, key=task_id), ...])
    win_rate = sum(v.p_first for v in verdicts) / len(verdicts)   # soft win rate of `first`

For each item the comparison prompt (Bai et al. 2022, "Constitutional AI", appendix) is built twice, with
`first` shown as option (A) and then as option (B), and the judge's probabilities of "(A)" and "(B)" are read
from `backend.logprobs` after the opened answer "The answer is: (" (the candidates are the single letter
tokens, so the shared "(" cancels and the closing ")" is certain). Each order is normalized so its two
probabilities sum to 1; `p_first` is the mean of P(first) over the two orders, which cancels position bias.
All items' prompts, both orders side by side, go to the backend in one call per `batch_size` items (sorted by
length, the items of one conversation together, so a call pads little and shares the most); with `cot=True` the judge first writes its reasoning (greedy), then the answer
is read after it and each order's probabilities are clamped to [0.4, 0.6], as the paper did for
chain-of-thought labels.

A backend error on a batch is retried item by item, so one bad item (a prompt too long for the model) gets a
`Verdict` with `error` set instead of failing the others; transient errors (a server's 503) are raised for the
caller to retry.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Hashable, Sequence

from ..backends.base import BackendError, Sampling, TransientBackendError
from .prompts import COT_ANSWER, COT_PREFIX, comparison_prompt, conversation_text

__all__ = [
    "ANSWER_OPEN",
    "CHOICES",
    "COT_CLAMP",
    "PairItem",
    "Verdict",
    "judge_pairs",
    "normalize",
    "ranking_pairs",
]

ANSWER_OPEN = "The answer is: ("
CHOICES = ("A", "B")
COT_CLAMP = (0.4, 0.6)
DEFAULT_BATCH = 16  # pairs per backend call (32 prompts with both orders)


@dataclass(frozen=True)
class PairItem:
    """One comparison: a conversation (the prompt's messages), two responses, and the principle's question.

    `first`/`second` are the responses in the task's canonical positions A and B; `key` is the caller's handle
    (a task id, a (task, principle) tuple…) and comes back on the verdict unchanged.
    """

    messages: Sequence[dict]
    first: str
    second: str
    question: str
    key: Hashable = None
    principle: str = ""  # the principle's key, carried into the verdict for provenance


@dataclass(frozen=True)
class Verdict:
    """The judge's soft label for one `PairItem`.

    `order_ab` = (P(A), P(B)) with `first` shown as (A); `order_ba` = (P(A), P(B)) with `second` shown as (A).
    Each sums to 1. `p_first` = mean of P(first) over both orders (in [0.4, 0.6] with chain of thought).
    """

    key: Hashable
    principle: str
    p_first: float
    order_ab: tuple[float, float]
    order_ba: tuple[float, float]
    logprobs_ab: dict[str, float] = field(default_factory=dict)
    logprobs_ba: dict[str, float] = field(default_factory=dict)
    prompt_ab: list[dict] = field(default_factory=list)
    prompt_ba: list[dict] = field(default_factory=list)
    reasoning: tuple[str, str] | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def p_second(self) -> float:
        return 1.0 - self.p_first

    @property
    def choice(self) -> str:
        """"A" or "B" in canonical positions ("tie" only at exactly 0.5)."""
        if self.p_first > 0.5:
            return "A"
        return "B" if self.p_first < 0.5 else "tie"

    @property
    def first_wins_ab(self) -> bool:
        return self.order_ab[0] > 0.5

    @property
    def first_wins_ba(self) -> bool:
        return self.order_ba[1] > 0.5

    @property
    def flipped(self) -> bool:
        """Position bias: the verdict changes when the order is swapped (the judge prefers a position)."""
        return self.first_wins_ab != self.first_wins_ba

    def details(self) -> dict:
        """What an AI annotation stores about how it was made (JSON-ready)."""
        return {
            "principle": self.principle,
            "p_first": self.p_first,
            "order_ab": list(self.order_ab),
            "order_ba": list(self.order_ba),
            "logprobs_ab": self.logprobs_ab,
            "logprobs_ba": self.logprobs_ba,
            "flipped": self.flipped,
            "prompt_ab": self.prompt_ab,
            "prompt_ba": self.prompt_ba,
            "answer_open": ANSWER_OPEN,
            **({"reasoning": list(self.reasoning)} if self.reasoning else {}),
        }


def normalize(logprobs: dict[str, float], choices: Sequence[str] = CHOICES) -> tuple[float, ...]:
    """Softmax over the choices' log-probabilities: probabilities that sum to 1 (a stable log-sum-exp)."""
    values = [float(logprobs[c]) for c in choices]
    top = max(values)
    if math.isinf(top):  # every choice impossible: no preference
        return tuple(1.0 / len(values) for _ in values)
    weights = [math.exp(v - top) for v in values]
    total = sum(weights)
    return tuple(w / total for w in weights)


def _clamp(pair: tuple[float, float], bounds: tuple[float, float]) -> tuple[float, float]:
    low, high = bounds
    a = min(high, max(low, pair[0]))
    return (a, 1.0 - a)


def _orders(item: PairItem) -> tuple[list[dict], list[dict]]:
    ab = comparison_prompt(item.messages, item.question, [item.first, item.second])
    ba = comparison_prompt(item.messages, item.question, [item.second, item.first])
    return ab, ba


def _score(backend, conversations: list[list[dict]], prefixes: list[str]) -> list[dict[str, float]]:
    """One backend call per distinct prefix (one in all without chain of thought)."""
    out: list[dict[str, float] | None] = [None] * len(conversations)
    groups: dict[str, list[int]] = {}
    for i, prefix in enumerate(prefixes):
        groups.setdefault(prefix, []).append(i)
    for prefix, indices in groups.items():
        scores = backend.logprobs([conversations[i] for i in indices], CHOICES, prefix=prefix)
        for i, s in zip(indices, scores):
            out[i] = s
    return out  # type: ignore[return-value]


def _reason(backend, conversations: list[list[dict]], max_new_tokens: int) -> list[str]:
    """Chain of thought: the judge writes its reasoning (greedy) after "Let's think step by step:"."""
    # The backends open the assistant turn themselves; the reasoning prefix goes in the user turn's last line
    # so the same call works on every backend (generate has no assistant prefix).
    asks = [
        [*c[:-1], {"role": c[-1]["role"], "content": c[-1]["content"] + f"\nFirst explain your reasoning briefly, then answer. {COT_PREFIX}"}]
        for c in conversations
    ]
    completions = backend.generate(asks, 1, Sampling(max_new_tokens=max_new_tokens, temperature=0.0))
    return [c[0].text.strip() for c in completions]


def _judge_batch(backend, items: Sequence[PairItem], cot: bool, cot_tokens: int) -> list[Verdict]:
    prompts: list[list[dict]] = []
    for item in items:
        prompts.extend(_orders(item))
    reasoning = None
    if cot:
        reasoning = _reason(backend, prompts, cot_tokens)
        prefixes = [f"{COT_PREFIX} {r}{COT_ANSWER} (" for r in reasoning]
    else:
        prefixes = [ANSWER_OPEN] * len(prompts)
    scores = _score(backend, prompts, prefixes)
    verdicts = []
    for i, item in enumerate(items):
        lab, lba = scores[2 * i], scores[2 * i + 1]
        ab, ba = normalize(lab), normalize(lba)
        if cot:
            ab, ba = _clamp(ab, COT_CLAMP), _clamp(ba, COT_CLAMP)
        p_first = (ab[0] + ba[1]) / 2
        verdicts.append(
            Verdict(
                key=item.key,
                principle=item.principle,
                p_first=p_first,
                order_ab=(ab[0], ab[1]),
                order_ba=(ba[0], ba[1]),
                logprobs_ab={k: float(v) for k, v in lab.items()},
                logprobs_ba={k: float(v) for k, v in lba.items()},
                prompt_ab=prompts[2 * i],
                prompt_ba=prompts[2 * i + 1],
                reasoning=(reasoning[2 * i], reasoning[2 * i + 1]) if reasoning else None,
            )
        )
    return verdicts


def _failed(item: PairItem, message: str) -> Verdict:
    return Verdict(key=item.key, principle=item.principle, p_first=0.5, order_ab=(0.5, 0.5), order_ba=(0.5, 0.5),
                   error=message[:2000])


def judge_pairs(
    backend,
    items: Sequence[PairItem],
    *,
    cot: bool = False,
    batch_size: int = DEFAULT_BATCH,
    cot_tokens: int = 96,
) -> list[Verdict]:
    """Judge every item in both orders and return one `Verdict` per item, in the items' order.

    `backend`: anything with the `GenerationBackend` methods (`logprobs`; `generate` too with `cot`).
    `batch_size`: items per backend call; both orders of an item always share its call. Items are sorted by
    length first, so each call pads little; verdicts come back in the input order. Deterministic: the same
    backend and items give the same verdicts (chain of thought decodes greedily).
    Raises `TransientBackendError` (retry later); any other backend error is confined to the items it hits.
    """
    items = list(items)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    # Longest first, the items of one conversation side by side: they share the beginning of their prompts, which
    # a CPU backend computes once per call.
    texts = [conversation_text(item.messages) for item in items]
    order = sorted(range(len(items)), key=lambda i: (-len(texts[i]), texts[i], -len(items[i].first) - len(items[i].second)))
    results: list[Verdict | None] = [None] * len(items)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = [items[i] for i in chunk]
        try:
            verdicts = _judge_batch(backend, batch, cot, cot_tokens)
        except TransientBackendError:
            raise
        except BackendError:
            # Find the item(s) at fault: alone, each either succeeds or carries its error.
            verdicts = []
            for item in batch:
                try:
                    verdicts.extend(_judge_batch(backend, [item], cot, cot_tokens))
                except TransientBackendError:
                    raise
                except BackendError as exc:
                    verdicts.append(_failed(item, str(exc)))
        for i, verdict in zip(chunk, verdicts):
            results[i] = verdict
    return results  # type: ignore[return-value]


def ranking_pairs(n: int, *, subset: str = "all") -> list[tuple[int, int]]:
    """The pairs of positions a ranking of `n` responses is judged on.

    "all": every pair (n(n-1)/2). "network": the comparators of a Batcher odd-even merge sort, which sort any
    order, O(n log² n) of them (fewer than all pairs from n = 5 on), in network order; a pair may come twice
    (judge it once: a verdict does not change).
    """
    if subset == "all":
        return list(itertools.combinations(range(n), 2))
    if subset != "network":
        raise ValueError("subset must be 'all' or 'network'")
    # Built for the next power of two; comparators that touch a position past n compare with +inf there and
    # never swap, so dropping them leaves a network that sorts n.
    size = 1
    while size < n:
        size *= 2
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    return pairs


def rank_from_verdicts(n: int, verdicts: Sequence[tuple[int, int, float]]) -> list[int]:
    """Ranks (1 = best) from soft pairwise verdicts (i, j, P(i beats j)): Copeland-style expected wins."""
    wins = [0.0] * n
    for i, j, p in verdicts:
        wins[i] += p
        wins[j] += 1.0 - p
    order = sorted(range(n), key=lambda k: (-wins[k], k))
    ranks = [0] * n
    for rank, position in enumerate(order, start=1):
        ranks[position] = rank
    return ranks
