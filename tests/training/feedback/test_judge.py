"""The AI judge on a tiny random model and on a deterministic position-biased backend."""

import itertools
import math

import pytest
import torch

from tests.support.backends import FirstPositionBackend, RecordingBackend
from tests.support.tiny import save_tiny_model
from training.backends.transformers_local import TransformersBackend
from training.feedback.judge import (
    ANSWER_OPEN,
    COT_CLAMP,
    PairItem,
    judge_pairs,
    rank_from_verdicts,
    ranking_pairs,
)

QUESTION = "Which of these assistant responses is less harmful?"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    return TransformersBackend.load(save_tiny_model(tmp_path_factory.mktemp("judge") / "m"), max_batch_size=8)


def items(n=5):
    return [
        PairItem([{"role": "user", "content": f"Question {i}?"}], f"Answer {i} is kind.", f"Reply {i} is rude." * (i + 1),
                 QUESTION, key=i, principle="harmless")
        for i in range(n)
    ]


def test_both_orders_are_evaluated_and_each_sums_to_one(tiny):
    recorder = RecordingBackend(tiny)
    verdicts = judge_pairs(recorder, items(), batch_size=2)
    assert [v.key for v in verdicts] == list(range(5))
    shown = [m[0]["content"] for call in recorder.calls for m in call["conversations"]]
    for item, v in zip(items(), verdicts):
        # Both orders went to the model: the first response as option (A), then as option (B).
        assert f"(A) {item.first}\n(B) {item.second}" in v.prompt_ab[0]["content"]
        assert f"(A) {item.second}\n(B) {item.first}" in v.prompt_ba[0]["content"]
        assert v.prompt_ab[0]["content"] in shown and v.prompt_ba[0]["content"] in shown
        assert sum(v.order_ab) == pytest.approx(1.0) and sum(v.order_ba) == pytest.approx(1.0)
        assert v.p_first == pytest.approx((v.order_ab[0] + v.order_ba[1]) / 2)
        # The stored raw log-probabilities are the model's own for each order.
        assert v.order_ab[0] == pytest.approx(1 / (1 + math.exp(v.logprobs_ab["B"] - v.logprobs_ab["A"])))
    # Both orders of an item always travel in the same backend call.
    for call in recorder.calls:
        assert call["prefix"] == ANSWER_OPEN and len(call["conversations"]) % 2 == 0


def test_batched_verdicts_equal_one_pair_at_a_time(tiny):
    together = judge_pairs(tiny, items(), batch_size=8)
    alone = [judge_pairs(tiny, [item])[0] for item in items()]
    for t, a in zip(together, alone):
        assert t.p_first == pytest.approx(a.p_first, abs=1e-4)
        assert t.order_ba == pytest.approx(a.order_ba, abs=1e-4)


def test_single_letter_scores_equal_the_general_candidate_path(tiny):
    conversation = items(1)[0]
    verdict = judge_pairs(tiny, [conversation])[0]
    # The fast path reads one row per prompt; it must agree with scoring each candidate as its own row.
    general = tiny.logprobs([verdict.prompt_ab], ["A", "B", "A)"], prefix=ANSWER_OPEN)[0]
    assert general["A"] == pytest.approx(verdict.logprobs_ab["A"], abs=1e-4)
    assert general["B"] == pytest.approx(verdict.logprobs_ab["B"], abs=1e-4)


def test_a_judge_that_always_prefers_the_first_position_flips_on_every_item():
    verdicts = judge_pairs(FirstPositionBackend(), items())
    for v in verdicts:
        assert v.order_ab[0] > 0.5 and v.order_ba[0] > 0.5  # (A) wins in both orders…
        assert v.flipped  # …so its verdict on the responses flips with the order,
        assert v.p_first == pytest.approx(0.5)  # and averaging the orders cancels the bias.


def test_chain_of_thought_reasons_first_and_clamps(tiny):
    recorder = RecordingBackend(FirstPositionBackend(strength=6.0))
    verdicts = judge_pairs(recorder, items(2), cot=True, cot_tokens=4)
    assert recorder.generated == 4  # two items, two orders
    for v in verdicts:
        assert v.reasoning is not None and len(v.reasoning) == 2
        assert COT_CLAMP[0] <= v.order_ab[0] <= COT_CLAMP[1]
        assert v.order_ab[0] == pytest.approx(COT_CLAMP[1])
    assert all("Let's think step by step:" in call["prefix"] for call in recorder.calls)


def test_an_item_the_model_cannot_take_fails_alone():
    bad = PairItem([{"role": "user", "content": "x"}], "bad-marker", "b", QUESTION, key="bad")
    verdicts = judge_pairs(FirstPositionBackend(reject="bad-marker"), [*items(2), bad])
    assert [v.ok for v in verdicts] == [True, True, False]
    assert "bad-marker" in verdicts[2].error


@pytest.mark.parametrize("n", range(2, 10))
def test_the_sorting_network_subset_sorts_every_order(n):
    network = ranking_pairs(n, subset="network")
    assert len(set(network)) <= n * (n - 1) // 2
    for bits in itertools.product([0, 1], repeat=n):  # the 0-1 principle
        values = list(bits)
        for i, j in network:
            if values[i] > values[j]:
                values[i], values[j] = values[j], values[i]
        assert values == sorted(values)


def test_ranks_follow_soft_wins():
    # 2 beats 0 beats 1, softly.
    assert rank_from_verdicts(3, [(0, 1, 0.7), (0, 2, 0.2), (1, 2, 0.3)]) == [2, 3, 1]
