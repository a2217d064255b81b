"""The `vllm` backend: vLLM's in-process engine, for a worker on a GPU host (the `gpu` queue).

vLLM is an optional extra (`pip install 'quorum[gpu]'` on a CUDA machine): it pins its own torch and
transformers, so it is imported here, inside functions, and nowhere else in Quorum. Generation goes through
`LLM.chat` with `SamplingParams(n=...)`; candidate scoring through `LLM.generate` on token ids with
`prompt_logprobs`, so the candidate's tokens are exactly those the model is scored on.
"""

from __future__ import annotations

from typing import Sequence

from .base import BackendError, BackendUnavailable, Completion, Conversation, Sampling, check_request

INSTALL_HINT = "install the optional extra on a CUDA machine: pip install 'quorum[gpu]'"


def import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise BackendUnavailable(f"the vllm backend needs the vllm package, which is not installed here; {INSTALL_HINT}") from exc
    return vllm


class VLLMBackend:
    def __init__(
        self,
        path: str,
        *,
        chat_template: str = "",
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        seed: int = 0,
        name: str = "",
        **engine_kwargs,
    ):
        vllm = import_vllm()
        self.name = name
        self.chat_template = chat_template or None
        kwargs = dict(
            model=str(path),
            dtype=dtype,
            tensor_parallel_size=int(tensor_parallel_size),
            gpu_memory_utilization=float(gpu_memory_utilization),
            seed=int(seed),
            **engine_kwargs,
        )
        if max_model_len:
            kwargs["max_model_len"] = int(max_model_len)
        try:
            self.llm = vllm.LLM(**kwargs)
        except Exception as exc:  # engine start-up errors are many and version-specific
            raise BackendError(f"vLLM could not load {path}: {exc}") from exc
        self._vllm = vllm

    def sampling_params(self, sampling: Sampling, n: int):
        params = dict(
            n=n,
            max_tokens=sampling.max_new_tokens,
            temperature=float(sampling.temperature),
            top_p=float(sampling.top_p),
        )
        if sampling.top_k is not None:
            params["top_k"] = int(sampling.top_k)
        if sampling.repetition_penalty is not None:
            params["repetition_penalty"] = float(sampling.repetition_penalty)
        if sampling.seed is not None:
            params["seed"] = int(sampling.seed)
        if sampling.stop:
            params["stop"] = list(sampling.stop)
        return self._vllm.SamplingParams(**params)

    def generate(self, conversations: Sequence[Conversation], n: int, sampling: Sampling) -> list[list[Completion]]:
        check_request(conversations, n)
        messages = [[{"role": m["role"], "content": m["content"]} for m in c] for c in conversations]
        outputs = self.llm.chat(
            messages,
            self.sampling_params(sampling, n),
            use_tqdm=False,
            chat_template=self.chat_template,
            add_generation_prompt=True,
        )
        results = []
        for request in outputs:
            prompt_tokens = len(request.prompt_token_ids or [])
            results.append(
                [
                    Completion(
                        text=choice.text,
                        prompt_tokens=prompt_tokens,
                        completion_tokens=len(choice.token_ids),
                        finish_reason="length" if choice.finish_reason == "length" else "stop",
                    )
                    for choice in request.outputs
                ]
            )
        return results

    def logprobs(
        self, conversations: Sequence[Conversation], candidates: Sequence[str], *, prefix: str = ""
    ) -> list[dict[str, float]]:
        check_request(conversations, 1)
        if not candidates or any(not c for c in candidates):
            raise BackendError("candidates must be non-empty strings")
        tokenizer = self.llm.get_tokenizer()
        if self.chat_template:
            tokenizer.chat_template = self.chat_template
        candidate_ids = [tokenizer.encode(c, add_special_tokens=False) for c in candidates]
        prompts, spans = [], []
        for conversation in conversations:
            text = tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True) + prefix
            context = tokenizer.encode(text, add_special_tokens=False)
            for ids in candidate_ids:
                prompts.append({"prompt_token_ids": context + ids})
                spans.append(ids)
        # One generated token is the least vLLM accepts; prompt_logprobs=0 returns each prompt token's own logprob.
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        scores = []
        for request, ids in zip(outputs, spans):
            per_token = request.prompt_logprobs or []
            tail = per_token[len(per_token) - len(ids) :]
            total = 0.0
            for token_id, entry in zip(ids, tail):
                if not entry or token_id not in entry:
                    raise BackendError("vLLM returned no log-probability for a candidate token")
                total += float(entry[token_id].logprob)
            scores.append(total)
        k = len(candidates)
        return [dict(zip(candidates, scores[i * k : (i + 1) * k])) for i in range(len(conversations))]

    def close(self) -> None:
        self.llm = None
