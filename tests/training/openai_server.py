"""A small OpenAI-compatible server over a local model, for tests: `python openai_server.py MODEL_DIR`.

Serves /v1/models, /v1/chat/completions (through the transformers backend; with `"stream": true` as server-sent
events, a chunk per decoding step, ending with `data: [DONE]`) and /v1/completions with `echo` + `logprobs`
(prompt log-probabilities, as vLLM and OpenAI's legacy API return them). Prints `listening on PORT` once ready.
Faults are injected through POST /control: `{"fail": [500, 429, ...]}` answers the next requests with those
statuses, `{"delay": s}` sleeps before each of the next `delay_count` answers, `{"chunk_delay": s}` sleeps
before each streamed chunk, `{"break_after": k}` closes the next stream after k chunks and `{"error_after": k}`
ends it with an error event instead. GET /control returns request counts, requests in flight and the peak concurrency seen.
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import torch  # noqa: E402

from training.backends.base import Sampling  # noqa: E402
from training.backends.transformers_local import TransformersBackend  # noqa: E402

MODEL_NAME = "tiny"


class State:
    def __init__(self, backend):
        self.backend = backend
        self.lock = threading.Lock()
        self.model_lock = threading.Lock()
        self.fail: list[int] = []
        self.delay = 0.0
        self.delay_count = 0
        self.chunk_delay = 0.0
        self.break_after: int | None = None
        self.error_after: int | None = None
        self.requests = 0
        self.in_flight = 0
        self.peak = 0
        self.bodies: list[dict] = []


class Handler(BaseHTTPRequestHandler):
    state: State

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: dict, headers: dict | None = None):
        data = json.dumps(body).encode()
        self._leave()  # out of flight before the client can see the answer and send its next request
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _leave(self):
        if getattr(self, "_in_flight", False):
            self._in_flight = False
            with self.state.lock:
                self.state.in_flight -= 1

    def do_GET(self):
        st = self.state
        if self.path == "/control":
            with st.lock:
                return self._send(
                    200, {"requests": st.requests, "peak": st.peak, "in_flight": st.in_flight, "bodies": st.bodies[-50:]}
                )
        if self.path == "/v1/models":
            return self._send(200, {"object": "list", "data": [{"id": MODEL_NAME, "object": "model"}]})
        self._send(404, {"error": "not found"})

    def do_POST(self):
        st = self.state
        body = self._body()
        if self.path == "/control":
            with st.lock:
                st.fail = list(body.get("fail", st.fail))
                st.delay = float(body.get("delay", st.delay))
                st.delay_count = int(body.get("delay_count", st.delay_count))
                st.chunk_delay = float(body.get("chunk_delay", st.chunk_delay))
                st.break_after = body.get("break_after", st.break_after)
                st.error_after = body.get("error_after", st.error_after)
                if body.get("reset"):
                    st.requests, st.peak, st.bodies = 0, 0, []
            return self._send(200, {"ok": True})
        with st.lock:
            st.requests += 1
            st.in_flight += 1
            self._in_flight = True
            st.peak = max(st.peak, st.in_flight)
            st.bodies.append(body)
            fail = st.fail.pop(0) if st.fail else None
            delay = 0.0
            if st.delay_count > 0:
                st.delay_count -= 1
                delay = st.delay
        try:
            if delay:
                time.sleep(delay)
            else:
                time.sleep(0.05)  # long enough for concurrent requests to overlap
            if fail == 429:
                return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0.1"})
            if fail:
                return self._send(fail, {"error": {"message": f"injected {fail}"}})
            if body.get("model") != MODEL_NAME:
                return self._send(404, {"error": {"message": f"model {body.get('model')!r} does not exist"}})
            if self.path == "/v1/chat/completions" and body.get("stream"):
                return self._stream(body)
            if self.path == "/v1/chat/completions":
                return self._send(200, self._chat(body))
            if self.path == "/v1/completions":
                return self._send(200, self._completions(body))
            self._send(404, {"error": "not found"})
        finally:
            self._leave()

    @staticmethod
    def _sampling(body: dict) -> Sampling:
        return Sampling.from_dict(
            {
                "max_new_tokens": body.get("max_tokens", 16),
                "temperature": body.get("temperature", 1.0),
                "top_p": body.get("top_p", 1.0),
                "seed": body.get("seed"),
                "stop": body.get("stop") or (),
            }
        )

    def _chat(self, body: dict) -> dict:
        sampling = self._sampling(body)
        n = int(body.get("n", 1))
        with self.state.model_lock:
            out = self.state.backend.generate([body["messages"]], n, sampling)[0]
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": MODEL_NAME,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": c.text}, "finish_reason": c.finish_reason}
                for i, c in enumerate(out)
            ],
            "usage": {
                "prompt_tokens": out[0].prompt_tokens,
                "completion_tokens": sum(c.completion_tokens for c in out),
                "total_tokens": out[0].prompt_tokens + sum(c.completion_tokens for c in out),
            },
        }

    def _stream(self, body: dict) -> None:
        """Server-sent events as vLLM sends them: a role chunk, a content delta per decoding step and row, a
        finish chunk per row, a usage chunk when `stream_options.include_usage`, then [DONE]."""
        st = self.state
        with st.lock:
            break_after, error_after = st.break_after, st.error_after
            st.break_after = st.error_after = None
        self._leave()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        chunks = 0
        backend = st.backend
        n = int(body.get("n", 1))
        sent = [""] * n

        def event(payload) -> None:
            self.wfile.write(b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n")
            self.wfile.flush()

        def delta(index: int, text: str) -> None:
            nonlocal chunks
            if not text.startswith(sent[index]) or text == sent[index]:
                return
            if break_after is not None and chunks >= break_after:
                raise ConnectionAbortedError("fault injected: the stream breaks here")
            if error_after is not None and chunks >= error_after:
                event({"error": {"message": "injected: the engine ran out of memory", "code": 500}})
                raise ConnectionAbortedError("fault injected: error event sent")
            if st.chunk_delay:
                time.sleep(st.chunk_delay)
            piece, sent[index] = text[len(sent[index]):], text
            event(_chunk({"index": index, "delta": {"content": piece}, "finish_reason": None}))
            chunks += 1

        def on_tokens(rows) -> None:
            for index, tokens in enumerate(rows):
                delta(index, backend.partial_text(tokens))

        try:
            event(_chunk({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}))
            with st.model_lock:
                out = backend.generate([body["messages"]], n, self._sampling(body), on_tokens=on_tokens)[0]
            for index, completion in enumerate(out):
                delta(index, completion.text)
                event(_chunk({"index": index, "delta": {}, "finish_reason": completion.finish_reason}))
            if (body.get("stream_options") or {}).get("include_usage"):
                completion_tokens = sum(c.completion_tokens for c in out)
                usage = {"prompt_tokens": out[0].prompt_tokens, "completion_tokens": completion_tokens,
                         "total_tokens": out[0].prompt_tokens + completion_tokens}
                event({**_chunk(None), "choices": [], "usage": usage})
            event(b"[DONE]")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass
        self.close_connection = True

    def _completions(self, body: dict) -> dict:
        if not body.get("echo") or body.get("logprobs") is None:
            return {"error": "this test server implements completions only with echo and logprobs"}
        backend = self.state.backend
        tok = backend.tokenizer
        encoded = tok(body["prompt"], add_special_tokens=False, return_offsets_mapping=True)
        ids = encoded["input_ids"]
        with self.state.model_lock, torch.inference_mode():
            logits = backend.model(input_ids=torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        token_logprobs = [None] + [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]
        tokens = [tok.decode([t]) for t in ids]
        offsets = [start for start, _ in encoded["offset_mapping"]]
        return {
            "id": "cmpl-test",
            "object": "text_completion",
            "model": MODEL_NAME,
            "choices": [
                {
                    "index": 0,
                    "text": body["prompt"],
                    "logprobs": {"tokens": tokens, "token_logprobs": token_logprobs, "text_offset": offsets},
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": 1, "total_tokens": len(ids) + 1},
        }


def _chunk(choice: dict | None) -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "model": MODEL_NAME,
            "choices": [choice] if choice else []}


def main(model_dir: str) -> None:
    torch.set_num_threads(1)
    backend = TransformersBackend.load(model_dir)
    Handler.state = State(backend)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])
