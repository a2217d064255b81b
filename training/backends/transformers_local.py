"""The `transformers` backend: a local model, batched and left-padded, its chat template applied.

CPU by default, the GPU when one is present. Prompts are grouped into micro-batches of at most
`max_batch_size` sequences (prompts × samples); each prompt's `n` samples are generated in the same batch.
"""

from __future__ import annotations

import os
from pathlib import Path

# OpenMP threads that spin while they wait turn a busy 2-core machine into a crawl (10x slower measured);
# passive waiting costs next to nothing when the cores are free. Read when torch first loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from typing import Sequence

from .base import DTYPES, BackendError, Completion, Conversation, Sampling, check_request
from .prefix_tree import score_next_token


def _torch():
    import torch

    return torch


def pick_device(device: str | None = None) -> str:
    torch = _torch()
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, dtype: str | None = None):
    torch = _torch()
    if dtype and dtype != "auto":
        if dtype not in DTYPES:
            raise BackendError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # Half precision is slow on most CPUs; float32 is the fast path there.
    return torch.float32


class TransformersBackend:
    def __init__(self, model, tokenizer, *, chat_template: str = "", max_batch_size: int = 8, name: str = ""):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.max_batch_size = max(1, int(max_batch_size))
        self.device = str(next(model.parameters()).device)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if chat_template:
            tokenizer.chat_template = chat_template
        if not tokenizer.chat_template:
            raise BackendError(f"model {name or '?'} has no chat template: register one with the model")
        self._stop_ids = self._end_token_ids()
        self.share_prefixes = True  # CPU scoring computes rows' shared beginnings once (False: each row whole)
        self.last_tree = None  # TreeStats of the last CPU scoring call: tokens run against tokens asked

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        chat_template: str = "",
        device: str | None = None,
        dtype: str | None = None,
        max_batch_size: int = 8,
        name: str = "",
    ) -> "TransformersBackend":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a registered model is a local directory; never fetch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        # A LoRA run saved without merging leaves adapters only; transformers loads them onto their base via peft.
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise BackendError(f"no model at {path} (config.json missing)")
        device = pick_device(device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(device, dtype), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load the model at {path}: {exc}") from exc
        model.to(device).eval()
        return cls(model, tokenizer, chat_template=chat_template, max_batch_size=max_batch_size, name=name)

    # --- prompts -------------------------------------------------------------------------
    def _end_token_ids(self) -> list[int]:
        ids = set()
        eos = self.model.generation_config.eos_token_id
        for value in eos if isinstance(eos, (list, tuple)) else [eos]:
            if value is not None:
                ids.add(int(value))
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        if not ids:
            raise BackendError("the model defines no end-of-sequence token")
        return sorted(ids)

    def render(self, conversation: Conversation, prefix: str = "") -> str:
        try:
            text = self.tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # jinja errors (e.g. a template that rejects a system turn)
            raise BackendError(f"the chat template cannot render this conversation: {exc}") from exc
        return text + prefix

    def _encode(self, texts: list[str]):
        # The chat template already holds any BOS token the model wants.
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    # --- generation ----------------------------------------------------------------------
    def generation_kwargs(self, sampling: Sampling) -> dict:
        kwargs = {
            "max_new_tokens": sampling.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self._stop_ids,
            "num_return_sequences": 1,
        }
        if sampling.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            # top_k=0 turns off transformers' default top-k of 50, as in the OpenAI API.
            kwargs.update(do_sample=True, temperature=float(sampling.temperature), top_p=float(sampling.top_p),
                          top_k=sampling.top_k or 0)
        if sampling.repetition_penalty is not None:
            kwargs["repetition_penalty"] = float(sampling.repetition_penalty)
        return kwargs

    def _stopping(self, sampling: Sampling, prompt_length: int):
        if not sampling.stop:
            return None
        from transformers import StoppingCriteriaList

        return StoppingCriteriaList([_StopStrings(self.tokenizer, sampling.stop, prompt_length)])

    streams = True  # `generate(..., on_tokens=)` reports the tokens of every row after each decoding step

    def generate(
        self, conversations: Sequence[Conversation], n: int, sampling: Sampling, *, on_tokens=None
    ) -> list[list[Completion]]:
        """`on_tokens(rows)`, if given, is called after each decoding step with the tokens generated so far for each
        row of the current micro-batch (prompt-major, `n` rows per prompt); `partial_text` turns a row into text."""
        check_request(conversations, n)
        torch = _torch()
        texts = [self.render(c) for c in conversations]
        kwargs = self.generation_kwargs(sampling)
        per_batch = max(1, self.max_batch_size // n)
        results: list[list[Completion]] = []
        for start in range(0, len(texts), per_batch):
            encoded = self._encode(texts[start : start + per_batch])
            input_ids = encoded["input_ids"].repeat_interleave(n, dim=0)
            attention = encoded["attention_mask"].repeat_interleave(n, dim=0)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed + start)
            stopping = self._stopping(sampling, input_ids.shape[1])
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=input_ids, attention_mask=attention, stopping_criteria=stopping,
                    streamer=_RowStreamer(on_tokens) if on_tokens else None, **kwargs
                )
            new_tokens = output[:, input_ids.shape[1] :].tolist()
            prompt_lengths = attention.sum(dim=1).tolist()
            for i in range(0, len(new_tokens), n):
                results.append(
                    [self._completion(new_tokens[j], int(prompt_lengths[j]), sampling) for j in range(i, i + n)]
                )
        return results

    def _end(self, tokens: list[int]) -> int | None:
        """Index of the first end-of-turn (or padding) token, None while there is none."""
        ends = set(self._stop_ids) | {self.tokenizer.pad_token_id}
        return next((k for k, t in enumerate(tokens) if t in ends), None)

    def partial_text(self, tokens: list[int]) -> str:
        """The text of a completion still being generated, up to its end-of-turn token once there is one."""
        end = self._end(tokens)
        return self.tokenizer.decode(tokens if end is None else tokens[:end], skip_special_tokens=True)

    def _completion(self, tokens: list[int], prompt_tokens: int, sampling: Sampling) -> Completion:
        length = self._end(tokens)
        finish = "stop" if length is not None else "length"
        kept = tokens if length is None else tokens[:length]
        count = len(kept) + (1 if length is not None else 0)  # the end-of-turn token was generated too
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        if sampling.stop:
            cut = min((p for p in (text.find(s) for s in sampling.stop) if p >= 0), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=count, finish_reason=finish)

    # --- scoring -------------------------------------------------------------------------
    def logprobs(
        self, conversations: Sequence[Conversation], candidates: Sequence[str], *, prefix: str = ""
    ) -> list[dict[str, float]]:
        """log P(candidate | conversation, assistant turn opened, prefix), summed over the candidate's tokens."""
        check_request(conversations, 1)
        if not candidates or any(not c for c in candidates):
            raise BackendError("candidates must be non-empty strings")
        torch = _torch()
        candidate_ids = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in candidates]
        if all(len(ids) == 1 for ids in candidate_ids):
            return self._next_token_logprobs(conversations, candidates, [ids[0] for ids in candidate_ids], prefix)
        rows, spans = [], []
        for conversation in conversations:
            context = self.tokenizer(self.render(conversation, prefix), add_special_tokens=False)["input_ids"]
            for ids in candidate_ids:
                rows.append(context + ids)
                spans.append(len(ids))
        pad = self.tokenizer.pad_token_id
        scores: list[float] = []
        per_batch = self.max_batch_size
        for start in range(0, len(rows), per_batch):
            chunk, chunk_spans = rows[start : start + per_batch], spans[start : start + per_batch]
            width = max(len(r) for r in chunk)
            input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in chunk], device=self.device)
            attention = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in chunk], device=self.device)
            positions = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
            with torch.inference_mode():
                logits = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            targets = input_ids[:, 1:]
            token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            for row, span in enumerate(chunk_spans):
                scores.append(float(token_logp[row, width - 1 - span :].sum()))
        out = []
        for i in range(len(conversations)):
            block = scores[i * len(candidates) : (i + 1) * len(candidates)]
            out.append(dict(zip(candidates, block)))
        return out

    def _next_token_logprobs(self, conversations, candidates, token_ids: list[int], prefix: str) -> list[dict[str, float]]:
        """Single-token candidates (a judge's "A"/"B"): one row per conversation, read at its last position,
        instead of one full row per candidate. On a CPU the rows' shared beginnings are computed once
        (`prefix_tree`); on a GPU rows go in padded batches, where width is cheap."""
        torch = _torch()
        rows = [self.tokenizer(self.render(c, prefix), add_special_tokens=False)["input_ids"] for c in conversations]
        pad = self.tokenizer.pad_token_id
        if self.device.startswith("cpu"):
            scores, self.last_tree = score_next_token(self.model, rows, token_ids, pad_id=pad,
                                                      max_batch=self.max_batch_size, share=self.share_prefixes)
            return [dict(zip(candidates, map(float, row))) for row in scores]
        out: list[dict[str, float] | None] = [None] * len(rows)
        index = torch.tensor(token_ids, device=self.device)
        for start in range(0, len(rows), self.max_batch_size):
            chunk_ids = list(range(start, min(start + self.max_batch_size, len(rows))))
            chunk = [rows[i] for i in chunk_ids]
            width = max(len(r) for r in chunk)
            input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in chunk], device=self.device)
            attention = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in chunk], device=self.device)
            positions = (attention.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self.model(
                    input_ids=input_ids, attention_mask=attention, position_ids=positions, logits_to_keep=1
                ).logits[:, -1].float()
            picked = torch.log_softmax(logits, dim=-1)[:, index].tolist()
            for i, row in zip(chunk_ids, picked):
                out[i] = dict(zip(candidates, map(float, row)))
        return out  # type: ignore[return-value]

    def close(self) -> None:
        self.model = None
        self.tokenizer = None


class _RowStreamer:
    """A transformers streamer for a whole batch: collects each row's new tokens and hands them all to a callback
    after every decoding step (transformers' own streamers take one row only)."""

    def __init__(self, on_tokens):
        self.on_tokens = on_tokens
        self.rows: list[list[int]] | None = None

    def put(self, value) -> None:
        if self.rows is None:  # the first call carries the prompts
            self.rows = [[] for _ in range(value.shape[0])]
            return
        for row, token in zip(self.rows, value.reshape(-1).tolist()):
            row.append(int(token))
        self.on_tokens(self.rows)

    def end(self) -> None:
        pass


class _StopStrings:
    """Stop a row once its generated text (never the prompt) contains a stop string, as the OpenAI API does.

    transformers' own `stop_strings` also matches across the end of the prompt, which stops too early.
    """

    def __init__(self, tokenizer, stops, prompt_length: int):
        self.tokenizer, self.stops, self.prompt_length = tokenizer, tuple(stops), prompt_length
        # Every token spells at least one character, so this many last tokens hold any stop string.
        self.window = max(len(s) for s in self.stops) + 1

    def __call__(self, input_ids, scores, **kwargs):
        torch = _torch()
        tails = input_ids[:, self.prompt_length :][:, -self.window :]
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stops) for t in texts], device=input_ids.device)
