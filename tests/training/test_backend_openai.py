"""The openai backend against a real OpenAI-compatible HTTP server (tests/training/openai_server.py) serving
the tiny model: generation with token counts, candidate scoring, retries on 500/429, timeouts, limits."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.tiny import CHAT_TEMPLATE, save_tiny_model
from training.backends import BackendError, Sampling, TransientBackendError
from training.backends.openai_http import OpenAIBackend
from training.backends.transformers_local import TransformersBackend

SERVER = Path(__file__).with_name("openai_server.py")
CONVERSATIONS = [[{"role": "user", "content": f"Question {i}?"}] for i in range(3)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def server(tiny_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), str(tiny_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("listening on") or proc.poll() is not None:
            break
    if not line.startswith("listening on"):
        proc.kill()
        pytest.fail(f"test server did not start: {line!r} {proc.stderr.read()[-2000:]}")
    url = f"http://127.0.0.1:{int(line.split()[-1])}"
    yield url
    proc.kill()
    proc.wait(timeout=10)


@pytest.fixture
def control(server):
    def set_(**body):
        httpx.post(f"{server}/control", json=body, timeout=5).raise_for_status()

    def get():
        return httpx.get(f"{server}/control", timeout=5).json()

    # Requests an earlier test gave up on (timeouts) may still be sleeping on the server.
    deadline = time.monotonic() + 15
    while get()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.1)
    set_(fail=[], delay=0, delay_count=0, reset=True)
    yield type("Control", (), {"set": staticmethod(set_), "get": staticmethod(get)})
    set_(fail=[], delay=0, delay_count=0)


def backend(server, **kwargs):
    kwargs.setdefault("backoff", 0.05)
    kwargs.setdefault("timeout", 20)
    return OpenAIBackend(f"{server}/v1", "tiny", **kwargs)


def test_generates_n_completions_per_conversation_with_their_own_token_counts(server, control):
    b = backend(server)
    out = b.generate(CONVERSATIONS, 2, Sampling(max_new_tokens=8, temperature=1.0, seed=7))
    assert [len(x) for x in out] == [2, 2, 2]
    for completions in out:
        for c in completions:
            assert isinstance(c.text, str)
            assert 1 <= c.completion_tokens <= 8 and c.prompt_tokens > 0
            assert c.finish_reason in ("stop", "length")
    sent = control.get()["bodies"]
    assert len(sent) == 6 and all(body["n"] == 1 and body["max_tokens"] == 8 for body in sent)
    # One request per sample, each with its own seed, so seeded samples still differ.
    assert sorted(body["seed"] for body in sent) == [7, 7, 7, 8, 8, 8]


def test_scores_candidates_like_the_local_backend(server, tiny_dir, control):
    remote = backend(server, chat_template=CHAT_TEMPLATE)
    local = TransformersBackend.load(tiny_dir)
    got = remote.logprobs(CONVERSATIONS[:2], [" (A)", " (B)"], prefix="Answer:")
    want = local.logprobs(CONVERSATIONS[:2], [" (A)", " (B)"], prefix="Answer:")
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for key in g:
            assert g[key] == pytest.approx(w[key], abs=1e-3)
    assert all(v < 0 for row in got for v in row.values())


def test_scoring_without_a_chat_template_says_what_is_missing(server):
    with pytest.raises(BackendError, match="chat template"):
        backend(server).logprobs(CONVERSATIONS[:1], ["A", "B"])


def test_a_500_is_retried_and_the_request_then_succeeds(server, control):
    control.set(fail=[500, 503])
    out = backend(server).generate(CONVERSATIONS[:1], 1, Sampling(max_new_tokens=4))
    assert len(out[0]) == 1
    assert control.get()["requests"] == 3


def test_a_429_is_retried_after_the_servers_retry_after(server, control):
    control.set(fail=[429])
    t0 = time.monotonic()
    backend(server, backoff=0.0).generate(CONVERSATIONS[:1], 1, Sampling(max_new_tokens=4))
    assert time.monotonic() - t0 >= 0.1
    assert control.get()["requests"] == 2


def test_persistent_5xx_ends_in_a_transient_error_after_the_retry_budget(server, control):
    control.set(fail=[500] * 10)
    with pytest.raises(TransientBackendError, match="HTTP 500 after 3 attempts"):
        backend(server, max_retries=2).generate(CONVERSATIONS[:1], 1, Sampling(max_new_tokens=4))
    assert control.get()["requests"] == 3


def test_a_server_that_does_not_answer_in_time_is_a_transient_timeout(server, control):
    control.set(delay=3.0, delay_count=2)
    t0 = time.monotonic()
    with pytest.raises(TransientBackendError, match="timed out"):
        backend(server, timeout=0.5, max_retries=1).generate(CONVERSATIONS[:1], 1, Sampling(max_new_tokens=4))
    assert time.monotonic() - t0 < 2.5, "the client waited for the slow server instead of timing out"


def test_a_timeout_then_an_answer_succeeds(server, control):
    control.set(delay=3.0, delay_count=1)
    out = backend(server, timeout=0.5, max_retries=2).generate(CONVERSATIONS[:1], 1, Sampling(max_new_tokens=4))
    assert len(out[0]) == 1


def test_a_client_error_is_not_retried(server, control):
    b = OpenAIBackend(f"{server}/v1", "no-such-model", backoff=0.05)
    with pytest.raises(BackendError) as info:
        b.generate(CONVERSATIONS[:1], 1, Sampling(max_new_tokens=4))
    assert not isinstance(info.value, TransientBackendError)
    assert "404" in str(info.value)
    assert control.get()["requests"] == 1


def test_no_more_requests_in_flight_than_the_concurrency_limit(server, control):
    conversations = [[{"role": "user", "content": f"Q{i}"}] for i in range(8)]
    control.set(delay=0.3, delay_count=8)  # slow answers, so that requests the client lets through overlap
    backend(server, concurrency=2).generate(conversations, 1, Sampling(max_new_tokens=2))
    state = control.get()
    assert state["requests"] == 8
    assert state["peak"] == 2


def test_a_server_that_is_not_there_is_a_transient_error():
    b = OpenAIBackend("http://127.0.0.1:9/v1", "tiny", max_retries=1, backoff=0.01, connect_timeout=1)
    with pytest.raises(TransientBackendError, match="connection failed"):
        b.generate(CONVERSATIONS[:1], 1, Sampling(max_new_tokens=4))
