"""The AI judge through an OpenAI-compatible server (prompt log-probabilities, as vLLM serves them) gives the
verdicts the local backend gives on the same model."""

import pytest

from tests.support.tiny import CHAT_TEMPLATE
from training.backends.openai_http import OpenAIBackend
from training.backends.transformers_local import TransformersBackend
from training.feedback.judge import PairItem, judge_pairs

from ..test_backend_openai import server, tiny_dir  # noqa: F401 (fixtures)


def test_remote_and_local_judges_agree(server, tiny_dir):  # noqa: F811
    items = [PairItem([{"role": "user", "content": f"Question {i}?"}], f"Yes {i}.", f"No, {i}!", "Which is better?",
                      key=i) for i in range(3)]
    remote = judge_pairs(OpenAIBackend(f"{server}/v1", "tiny", chat_template=CHAT_TEMPLATE), items)
    local = judge_pairs(TransformersBackend.load(tiny_dir), items)
    for r, l in zip(remote, local):
        assert r.ok and sum(r.order_ab) == pytest.approx(1.0)
        assert r.order_ab == pytest.approx(l.order_ab, abs=1e-3) and r.order_ba == pytest.approx(l.order_ba, abs=1e-3)
