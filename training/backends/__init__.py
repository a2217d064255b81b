"""Generation backends behind one interface (`base.GenerationBackend`), and a warm per-process cache.

`open_backend(model)` builds the backend a registry row names; `backend_for(model)` keeps the last few loaded
in this process so a worker does not reload weights for every task. Only `vllm_engine` imports vllm, and only
when a vllm model is opened.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from .base import (
    BackendError,
    BackendUnavailable,
    Completion,
    GenerationBackend,
    Sampling,
    TransientBackendError,
    storable_text,
)

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "Completion",
    "GenerationBackend",
    "Sampling",
    "TransientBackendError",
    "backend_for",
    "forget_backends",
    "open_backend",
    "storable_text",
]

TRANSFORMERS_OPTIONS = {"device", "dtype", "max_batch_size"}
OPENAI_OPTIONS = {"timeout", "connect_timeout", "max_retries", "backoff", "max_backoff", "concurrency", "template_vars", "tokenizer"}
VLLM_OPTIONS = {"dtype", "tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "seed", "enforce_eager"}


def _options(model, allowed: set[str]) -> dict:
    options = dict(getattr(model, "options", None) or {})
    return {k: v for k, v in options.items() if k in allowed}


def open_backend(model) -> GenerationBackend:
    """A backend for a registry row (anything with name, backend, path, base_url, served_name, chat_template, options)."""
    kind = model.backend
    if kind == "transformers":
        from .transformers_local import TransformersBackend

        return TransformersBackend.load(
            model.path, chat_template=model.chat_template, name=model.name, **_options(model, TRANSFORMERS_OPTIONS)
        )
    if kind == "openai":
        from .openai_http import OpenAIBackend

        options = dict(model.options or {})
        # Secrets never live in the database: the row names the environment variable that holds the key.
        api_key = os.environ.get(options["api_key_env"], "") if options.get("api_key_env") else ""
        return OpenAIBackend(
            model.base_url,
            model.served_name or model.name,
            api_key=api_key,
            chat_template=model.chat_template,
            name=model.name,
            **_options(model, OPENAI_OPTIONS),
        )
    if kind == "vllm":
        from .vllm_engine import VLLMBackend

        return VLLMBackend(model.path, chat_template=model.chat_template, name=model.name, **_options(model, VLLM_OPTIONS))
    raise BackendError(f"unknown backend {kind!r}")


_WARM: OrderedDict = OrderedDict()
_LOCK = threading.Lock()


def _warm_limit() -> int:
    return max(1, int(os.environ.get("QUORUM_WARM_MODELS", "1")))


def backend_for(model) -> GenerationBackend:
    """The backend for this row, loaded once per process and kept warm (least recently used dropped first)."""
    key = (model.pk, str(model.updated_at))
    with _LOCK:
        backend = _WARM.get(key)
        if backend is not None:
            _WARM.move_to_end(key)
            return backend
        for stale in [k for k in _WARM if k[0] == model.pk]:
            _WARM.pop(stale).close()
        while len(_WARM) >= _warm_limit():
            _, old = _WARM.popitem(last=False)
            old.close()
        backend = open_backend(model)
        _WARM[key] = backend
        return backend


def forget_backends() -> None:
    with _LOCK:
        while _WARM:
            _WARM.popitem()[1].close()
