"""Scoring rows through a prefix tree gives what a plain forward pass of each row gives, while computing each
shared beginning once."""

import random

import pytest
import torch

from tests.support.tiny import save_tiny_model
from training.backends.prefix_tree import score_next_token
from training.backends.transformers_local import TransformersBackend

CANDIDATES = [5, 6, 7]
pytestmark = pytest.mark.usefixtures("offline_single_thread")  # tests/training/conftest.py


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", layers=3)


@pytest.fixture(scope="module")
def backend(tiny_dir):
    return TransformersBackend.load(tiny_dir, max_batch_size=4)


def plain(model, row):
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([row])).logits[0, -1].float()
    return torch.log_softmax(logits, -1)[CANDIDATES].tolist()


def tokens(rng, n, vocab):
    return [rng.randrange(10, vocab) for _ in range(n)]


def judge_like_rows(vocab):
    """Both orders of pairs over one conversation, a chain of growing step prompts, an unrelated row, a row that
    is a prefix of another, a duplicate and one-token rows: every shape the tree has to split."""
    rng = random.Random(7)
    head, question, tail = tokens(rng, 30, vocab), tokens(rng, 12, vocab), tokens(rng, 6, vocab)
    answers = [tokens(rng, n, vocab) for n in (25, 40, 33)]
    rows = []
    for i, j in ((0, 1), (0, 2), (1, 2)):
        rows.append(head + question + [8] + answers[i] + [9] + answers[j] + tail)
        rows.append(head + question + [8] + answers[j] + [9] + answers[i] + tail)
    steps = [tokens(rng, n, vocab) for n in (20, 18, 22, 15)]
    for k in range(1, len(steps) + 1):
        rows.append(head + sum(steps[:k], []) + question + tail)
    rows.append(tokens(rng, 50, vocab))
    rows.append(rows[0][:70])
    rows.append(list(rows[3]))
    rows += [[11], [12], [11]]
    return rows


def test_tree_scores_equal_a_plain_forward_of_each_row(backend):
    model, vocab = backend.model, backend.model.config.vocab_size
    rows = judge_like_rows(vocab)
    scores, stats = score_next_token(model, rows, CANDIDATES, pad_id=0, max_batch=4, min_saved=8)
    assert len(scores) == len(rows)
    for row, got in zip(rows, scores):
        assert got == pytest.approx(plain(model, row), abs=1e-4)
    assert stats.rows == len(rows)
    assert stats.row_tokens == sum(len(r) for r in rows)
    # The shared head, question and first answers were computed once: far fewer tokens than the rows hold.
    assert stats.computed_tokens < 0.7 * stats.row_tokens


def test_without_sharing_every_token_is_computed_and_the_scores_agree(backend):
    model, vocab = backend.model, backend.model.config.vocab_size
    rows = judge_like_rows(vocab)
    shared, _ = score_next_token(model, rows, CANDIDATES, pad_id=0, max_batch=4, min_saved=8)
    whole, stats = score_next_token(model, rows, CANDIDATES, pad_id=0, max_batch=4, share=False)
    assert stats.computed_tokens == stats.row_tokens
    for a, b in zip(shared, whole):
        assert a == pytest.approx(b, abs=1e-4)


def test_short_shared_runs_are_not_worth_a_pass_of_their_own(backend):
    model, vocab = backend.model, backend.model.config.vocab_size
    rng = random.Random(3)
    common = tokens(rng, 5, vocab)
    rows = [common + tokens(rng, 20, vocab) for _ in range(3)]
    # 5 shared tokens x 2 rows spared = 10 < 48: each row is computed whole, in one batch.
    scores, stats = score_next_token(model, rows, CANDIDATES, pad_id=0, max_batch=8)
    assert stats.computed_tokens == stats.row_tokens
    assert stats.forward_passes == 1
    for row, got in zip(rows, scores):
        assert got == pytest.approx(plain(model, row), abs=1e-4)


def test_an_empty_row_is_refused(backend):
    with pytest.raises(ValueError, match="at least one token"):
        score_next_token(backend.model, [[1, 2], []], CANDIDATES, pad_id=0)


def test_the_backend_scores_judge_prompts_through_the_tree_on_cpu(backend):
    """Both orders of a comparison share the conversation: the backend computes it once and the verdicts are
    the ones each prompt scored alone gives."""
    from training.feedback.judge import PairItem, judge_pairs

    long_question = "Explain how a reward model is trained from pairwise preferences, step by step. " * 4
    items = [PairItem([{"role": "user", "content": long_question}], f"first answer {k}", f"second answer {k}",
                      "Which response is more helpful?", key=k) for k in range(3)]
    together = judge_pairs(backend, items, batch_size=3)
    stats = backend.last_tree
    assert stats.computed_tokens < stats.row_tokens
    alone = judge_pairs(backend, [items[1]])
    assert together[1].p_first == pytest.approx(alone[0].p_first, abs=1e-4)
    backend.share_prefixes = False
    try:
        unshared = judge_pairs(backend, items, batch_size=3)
        assert backend.last_tree.computed_tokens == backend.last_tree.row_tokens
    finally:
        backend.share_prefixes = True
    for a, b in zip(together, unshared):
        assert a.order_ab == pytest.approx(b.order_ab, abs=1e-4)
        assert a.order_ba == pytest.approx(b.order_ba, abs=1e-4)


def test_a_leaf_batch_copies_a_bounded_amount_of_shared_cache(backend, monkeypatch):
    """Each row of a leaf batch gets its own copy of the shared cache, so rows x shared tokens is capped."""
    import training.backends.prefix_tree as prefix_tree

    model, vocab = backend.model, backend.model.config.vocab_size
    rng = random.Random(5)
    common = tokens(rng, 60, vocab)
    rows = [common + tokens(rng, 4, vocab) for _ in range(6)]
    _, wide = score_next_token(model, rows, CANDIDATES, pad_id=0, max_batch=16)
    assert wide.forward_passes == 2  # the shared 60 tokens, then the six tails together
    monkeypatch.setattr(prefix_tree, "PAST_BUDGET", 120)  # two rows of 60 shared tokens per batch
    scores, capped = score_next_token(model, rows, CANDIDATES, pad_id=0, max_batch=16)
    assert capped.forward_passes == 1 + 3
    for row, got in zip(rows, scores):
        assert got == pytest.approx(plain(model, row), abs=1e-4)
