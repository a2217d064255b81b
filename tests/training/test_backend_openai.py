"""The openai backend against a real OpenAI-compatible HTTP server (tests/training/openai_server.py) serving
the tiny model: generation with token counts, candidate scoring, retries on 500/429, timeouts, limits."""

import time

import pytest

from tests.support.openai import ServerControl, openai_server
from tests.support.tiny import CHAT_TEMPLATE, save_tiny_model
from training.backends import BackendError, Sampling, TransientBackendError
from training.backends.openai_http import OpenAIBackend
from training.backends.transformers_local import TransformersBackend

CONVERSATIONS = [[{"role": "user", "content": f"Question {i}?"}] for i in range(3)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def server(tiny_dir):
    with openai_server(tiny_dir) as url:
        yield url


@pytest.fixture
def control(server):
    # Requests an earlier test gave up on (timeouts) may still be sleeping on the server.
    handle = ServerControl(server)
    handle.reset()
    yield handle
    handle.set(**ServerControl.CLEAR)


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


# --- streaming (live chat) -------------------------------------------------------------------


def _stream(b, sampling, conversations=CONVERSATIONS[:1], n=1):
    seen = []
    out = b.generate(conversations, n, sampling, on_tokens=lambda rows: seen.append([b.partial_text(r) for r in rows]))
    return out, seen


def test_a_streamed_reply_grows_piece_by_piece_into_the_same_completion_as_a_plain_request(server, control):
    b = backend(server)
    sampling = Sampling(max_new_tokens=24, temperature=1.0, seed=3)
    out, seen = _stream(b, sampling)
    plain = b.generate(CONVERSATIONS[:1], 1, sampling)
    streamed = out[0][0]
    assert len(seen) >= 3 and all(len(a[0]) <= len(b_[0]) for a, b_ in zip(seen, seen[1:]))
    assert seen[-1][0] == streamed.text and 0 < len(seen[0][0]) < len(streamed.text)
    assert (streamed.text, streamed.completion_tokens, streamed.finish_reason) == (
        plain[0][0].text, plain[0][0].completion_tokens, plain[0][0].finish_reason)
    assert streamed.prompt_tokens == plain[0][0].prompt_tokens > 0
    bodies = control.get()["bodies"]
    assert bodies[0]["stream"] is True and "stream" not in bodies[1]  # batch generation does not stream


def test_two_samples_stream_side_by_side_into_their_own_rows(server, control):
    b = backend(server)
    out, seen = _stream(b, Sampling(max_new_tokens=16, temperature=1.0, seed=5), n=2)
    assert [c.text for c in out[0]] == seen[-1] and len(seen[-1]) == 2
    assert [body["seed"] for body in control.get()["bodies"]] in ([5, 6], [6, 5])


def test_a_stream_the_server_cuts_short_is_a_transient_error_naming_the_break(server, control):
    control.set(break_after=2)
    with pytest.raises(TransientBackendError, match=r"stream ended before \[DONE\]"):
        _stream(backend(server), Sampling(max_new_tokens=24, temperature=1.0, seed=3))
    control.set(error_after=2)
    with pytest.raises(TransientBackendError, match="server stopped the stream: injected: the engine ran out of memory"):
        _stream(backend(server), Sampling(max_new_tokens=24, temperature=1.0, seed=3))
    out, _ = _stream(backend(server), Sampling(max_new_tokens=24, temperature=1.0, seed=3))  # faults are one-shot
    assert out[0][0].text


def test_a_5xx_before_the_stream_starts_is_retried(server, control):
    control.set(fail=[503])
    out, seen = _stream(backend(server), Sampling(max_new_tokens=8, temperature=1.0, seed=1))
    assert control.get()["requests"] == 2 and seen and out[0][0].text == seen[-1][0]


def test_a_callback_that_raises_stops_the_stream_and_the_error_reaches_the_caller(server, control):
    class Stop(Exception):
        pass

    def on_tokens(rows):
        raise Stop()

    with pytest.raises(Stop):
        backend(server).generate(CONVERSATIONS[:1], 2, Sampling(max_new_tokens=24, temperature=1.0, seed=3),
                                 on_tokens=on_tokens)
