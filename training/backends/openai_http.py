"""The `openai` backend: any OpenAI-compatible server (`vllm serve`, llama.cpp, TGI, OpenAI itself) over httpx.

Every request has a timeout; 429s, 5xx and transport errors are retried with exponential backoff (honouring
`Retry-After`), and at most `concurrency` requests are in flight. Each sample is its own request (`n=1`, seed
+ sample index when a seed is set) so every completion comes back with its own token count, whatever the
server supports. With `on_tokens=` (live chat) the samples are streamed (`"stream": true`, server-sent
events) and the callback sees each sample's text pieces as they arrive, as the transformers backend's does;
batch generation does not stream. `logprobs` scores candidates through the legacy completions endpoint with
`echo`, which needs the chat template here (the model's `chat_template`, or a local `tokenizer` directory in its options).
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import httpx

from .base import BackendError, Completion, Conversation, Sampling, TransientBackendError, check_request

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class OpenAIBackend:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        concurrency: int = 8,
        chat_template: str = "",
        template_vars: dict | None = None,
        tokenizer: str = "",
        name: str = "",
    ):
        if not base_url:
            raise BackendError("the openai backend needs a base URL, e.g. http://127.0.0.1:8000/v1")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.name = name or model
        self.model = model
        self.max_retries = max(0, int(max_retries))
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.concurrency = max(1, int(concurrency))
        self.chat_template = chat_template
        self.template_vars = dict(template_vars or {})
        self.tokenizer_path = tokenizer
        self._tokenizer = None
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self.client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(float(timeout), connect=float(connect_timeout)),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
        )

    # --- HTTP ----------------------------------------------------------------------------
    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            retry_after = response.headers.get("retry-after")
            try:
                if retry_after is not None:
                    return min(self.max_backoff, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return min(self.max_backoff, self.backoff * (2**attempt)) * (0.5 + random.random() / 2)

    def _request(self, path: str, body: dict, *, stream: bool = False) -> httpx.Response:
        """A response with a status below 400: 429s, 5xx and transport errors are retried with backoff, other
        statuses raise. A streamed one is left open for the caller to read and close, holding a concurrency slot."""
        problem = ""
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                request = self.client.build_request("POST", path, json=body)
                if stream:
                    response = self.client.send(request, stream=True)
                else:
                    with self._slots:
                        response = self.client.send(request)
            except httpx.TimeoutException as exc:
                problem = f"timed out ({type(exc).__name__})"
            except httpx.TransportError as exc:
                problem = f"connection failed ({exc})"
            else:
                if response.status_code < 400:
                    return response
                text = response.read().decode(errors="replace")[:500]
                response.close()
                if response.status_code not in RETRY_STATUS:
                    raise BackendError(f"{path}: HTTP {response.status_code}: {text}")
                problem = f"HTTP {response.status_code}"
            if attempt < self.max_retries:
                time.sleep(self._delay(attempt, response))
        raise TransientBackendError(f"{path}: {problem} after {self.max_retries + 1} attempts")

    def post(self, path: str, body: dict) -> dict:
        response = self._request(path, body)
        try:
            return response.json()
        except ValueError as exc:
            raise BackendError(f"{path}: the server answered with something other than JSON") from exc

    # --- generation ----------------------------------------------------------------------
    def _chat_body(self, conversation: Conversation, sampling: Sampling, sample: int) -> dict:
        body = {
            "model": self.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in conversation],
            "n": 1,
            "max_tokens": sampling.max_new_tokens,
            "temperature": float(sampling.temperature),
            "top_p": float(sampling.top_p),
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed + sample
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        # Not in OpenAI's API; vLLM and llama.cpp accept them, so they are sent only when asked for.
        if sampling.top_k is not None:
            body["top_k"] = sampling.top_k
        if sampling.repetition_penalty is not None:
            body["repetition_penalty"] = float(sampling.repetition_penalty)
        return body

    def _one(self, conversation: Conversation, sampling: Sampling, sample: int) -> Completion:
        data = self.post("chat/completions", self._chat_body(conversation, sampling, sample))
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
            finish = choice.get("finish_reason") or "stop"
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(f"chat/completions: unexpected answer {str(data)[:300]}") from exc
        return Completion(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason="length" if finish == "length" else "stop",
        )

    streams = True  # `generate(..., on_tokens=)` streams the samples and reports their text pieces as they arrive

    def generate(
        self, conversations: Sequence[Conversation], n: int, sampling: Sampling, *, on_tokens=None
    ) -> list[list[Completion]]:
        """`on_tokens(rows)`, if given, is called in this thread whenever text arrives, with the pieces received so
        far for each row (prompt-major, `n` rows per prompt); `partial_text` turns a row into text."""
        check_request(conversations, n)
        jobs = [(c, s) for c in conversations for s in range(n)]
        if on_tokens is not None:
            flat = _StreamedBatch(self, jobs, sampling).run(on_tokens)
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs) or 1)) as pool:
                flat = list(pool.map(lambda job: self._one(job[0], sampling, job[1]), jobs))
        return [flat[i * n : (i + 1) * n] for i in range(len(conversations))]

    def partial_text(self, pieces: list[str]) -> str:
        return "".join(pieces)

    # --- streaming -----------------------------------------------------------------------
    def stream_one(self, conversation: Conversation, sampling: Sampling, sample: int, on_piece, stop: threading.Event):
        """One sample over server-sent events: `on_piece(text)` for each piece of content; the whole Completion."""
        body = {**self._chat_body(conversation, sampling, sample), "stream": True,
                "stream_options": {"include_usage": True}}
        pieces: list[str] = []
        finish, usage = "stop", {}
        with self._slots:
            response = self._request("chat/completions", body, stream=True)
            try:
                for event in _events(response):
                    if stop.is_set():
                        raise BackendError("chat/completions: the stream was abandoned")
                    if event.get("usage"):
                        usage = event["usage"]
                    for choice in event.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") or ""
                        if piece:
                            pieces.append(piece)
                            on_piece(piece)
                        finish = choice.get("finish_reason") or finish
            except httpx.HTTPError as exc:
                raise TransientBackendError(
                    f"chat/completions: the stream broke after {len(''.join(pieces))} characters "
                    f"({type(exc).__name__}: {exc or 'connection closed'})"
                ) from exc
            finally:
                response.close()
        return Completion(
            text="".join(pieces),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or len(pieces)),
            finish_reason="length" if finish == "length" else "stop",
        )

    # --- scoring -------------------------------------------------------------------------
    def render(self, conversation: Conversation, prefix: str = "") -> str:
        messages = [dict(m) for m in conversation]
        if self.chat_template:
            # transformers' renderer: the same sandbox, filters and {% generation %} tag as apply_chat_template.
            from transformers.utils.chat_template_utils import render_jinja_template

            try:
                rendered, _ = render_jinja_template(
                    conversations=[messages], chat_template=self.chat_template, add_generation_prompt=True,
                    **self.template_vars,
                )
            except Exception as exc:  # jinja syntax errors and raise_exception() from the template
                raise BackendError(f"the chat template cannot render this conversation: {exc}") from exc
            return rendered[0] + prefix
        if self.tokenizer_path:
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path, local_files_only=True)
            return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefix
        raise BackendError(
            "scoring over an OpenAI-compatible server needs the model's chat template: "
            "set chat_template on the model, or options.tokenizer to a local tokenizer directory"
        )

    def _score(self, context: str, candidate: str) -> float:
        body = {
            "model": self.model,
            "prompt": context + candidate,
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": True,
            "logprobs": 1,
        }
        data = self.post("completions", body)
        try:
            lp = data["choices"][0]["logprobs"]
            offsets, values = lp["text_offset"], lp["token_logprobs"]
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError("completions: the server returned no prompt log-probabilities (echo + logprobs)") from exc
        # The echoed prompt comes first; the one generated token after it is ignored.
        total, counted = 0.0, 0
        for offset, value in zip(offsets, values):
            if offset >= len(context) + len(candidate):
                break
            if offset >= len(context):
                if value is None:
                    raise BackendError("completions: a candidate token has no log-probability")
                total += float(value)
                counted += 1
        if counted == 0:
            raise BackendError("completions: no token of the candidate was found in the echoed prompt")
        return total

    def logprobs(
        self, conversations: Sequence[Conversation], candidates: Sequence[str], *, prefix: str = ""
    ) -> list[dict[str, float]]:
        check_request(conversations, 1)
        if not candidates or any(not c for c in candidates):
            raise BackendError("candidates must be non-empty strings")
        contexts = [self.render(c, prefix) for c in conversations]
        jobs = [(ctx, cand) for ctx in contexts for cand in candidates]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs))) as pool:
            flat = list(pool.map(lambda job: self._score(*job), jobs))
        k = len(candidates)
        return [dict(zip(candidates, flat[i * k : (i + 1) * k])) for i in range(len(conversations))]

    def close(self) -> None:
        self.client.close()


def _events(response: httpx.Response):
    """The JSON events of a server-sent event stream, up to `data: [DONE]`; an error event or an end without
    [DONE] raises, naming what the server said."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, comments (": keep-alive"), `event:` lines
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise BackendError(f"chat/completions: the stream sent something other than JSON: {data[:200]}") from exc
        if not isinstance(event, dict):
            raise BackendError(f"chat/completions: unexpected stream event {data[:200]}")
        if event.get("error"):
            error = event["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise TransientBackendError(f"chat/completions: the server stopped the stream: {message}")
        yield event
    raise TransientBackendError("chat/completions: the stream ended before [DONE] (the server closed it)")


class _StreamedBatch:
    """Streams every (conversation, sample) in its own thread; the calling thread hands the pieces to `on_tokens`
    (which may write to the database, so it runs where the caller's connection lives) and stops them all when it
    raises or one stream fails."""

    def __init__(self, backend: OpenAIBackend, jobs: list, sampling: Sampling):
        self.backend, self.jobs, self.sampling = backend, jobs, sampling
        self.rows: list[list[str]] = [[] for _ in jobs]
        self.events: queue.Queue = queue.Queue()
        self.stop = threading.Event()

    def _worker(self, row: int) -> None:
        conversation, sample = self.jobs[row]
        try:
            completion = self.backend.stream_one(
                conversation, self.sampling, sample, lambda piece: self.events.put((row, piece, None)), self.stop
            )
        except BaseException as exc:  # handed to the calling thread, which raises it
            self.events.put((row, None, exc))
        else:
            self.events.put((row, None, completion))

    def run(self, on_tokens) -> list[Completion]:
        results: list[Completion | None] = [None] * len(self.jobs)
        with ThreadPoolExecutor(max_workers=min(self.backend.concurrency, len(self.jobs))) as pool:
            for row in range(len(self.jobs)):
                pool.submit(self._worker, row)
            try:
                self._collect(results, on_tokens)
            finally:
                self.stop.set()
        return results  # type: ignore[return-value]

    def _collect(self, results: list, on_tokens) -> None:
        pending = len(self.jobs)
        while pending:
            changed = False
            row, piece, outcome = self.events.get()
            while True:  # take every piece already waiting, so a slow callback sees them in one call
                if piece is not None:
                    self.rows[row].append(piece)
                    changed = True
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    results[row] = outcome
                    pending -= 1
                try:
                    row, piece, outcome = self.events.get_nowait()
                except queue.Empty:
                    break
            if changed:
                on_tokens(self.rows)
