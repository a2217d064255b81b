"""Scoring responses with saved reward models: one model directory, or an ensemble directory (ensemble.json).

Used by the reward evaluation, by PPO (the reward signal) and by rounds (active selection, reward-model accuracy).
Sequences are built as TRL's RewardTrainer builds them for training: a chat template over prompt + completion for
conversational rows, prompt + completion + EOS for plain strings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["ENSEMBLE_FILE", "RewardScorer", "completion_ids", "is_ensemble", "member_dirs", "score_sequences"]

ENSEMBLE_FILE = "ensemble.json"


def is_ensemble(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_FILE).is_file()


def member_dirs(path: str | Path) -> list[Path]:
    """The model directories of a reward model: itself, or an ensemble's members in order."""
    path = Path(path)
    if not is_ensemble(path):
        return [path]
    spec = json.loads((path / ENSEMBLE_FILE).read_text())
    return [path / member for member in spec["members"]]


def sequence_ids(tokenizer: Any, prompt: Any, completion: Any) -> tuple[list[int], int]:
    """(token ids of prompt + completion, number of completion tokens), as TRL's RewardTrainer tokenizes a row."""
    if isinstance(prompt, list) or isinstance(completion, list):
        prompt_messages = list(prompt) if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        completion_messages = (
            list(completion) if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
        )
        ids = tokenizer.apply_chat_template(prompt_messages + completion_messages, tokenize=True, return_dict=True)[
            "input_ids"
        ]
        prompt_ids = tokenizer.apply_chat_template(
            prompt_messages, tokenize=True, return_dict=True, add_generation_prompt=True
        )["input_ids"]
        shared = 0
        for a, b in zip(ids, prompt_ids):
            if a != b:
                break
            shared += 1
        return list(ids), len(ids) - shared
    eos = tokenizer.eos_token or ""
    text = completion if completion.endswith(eos) else completion + eos
    ids = tokenizer(prompt + text)["input_ids"]
    return list(ids), len(tokenizer(text, add_special_tokens=False)["input_ids"])


def completion_ids(tokenizer: Any, prompt: Any, completion: Any) -> list[int]:
    return sequence_ids(tokenizer, prompt, completion)[0]


@torch.no_grad()
def score_sequences(
    model: Any, sequences: Sequence[Sequence[int]], pad_token_id: int, batch_size: int = 16, max_length: int | None = None
) -> torch.Tensor:
    """One float per sequence: a sequence classifier's first logit at the last real token (right padding)."""
    device = next(model.parameters()).device
    scores = []
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))  # similar lengths batch together
    for start in range(0, len(order), batch_size):
        chunk = [list(sequences[i])[-max_length:] if max_length else list(sequences[i]) for i in order[start : start + batch_size]]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, seq in enumerate(chunk):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        scores.append(logits[:, 0].float().cpu())
    flat = torch.cat(scores) if scores else torch.empty(0)
    out = torch.empty_like(flat)
    out[torch.tensor(order, dtype=torch.long)] = flat
    return out


class RewardScorer:
    """Scores (prompt, completion) pairs with a reward model directory or an ensemble of them.

    `score(...)` returns a `(members, n)` tensor; `reduce(scores, how)` gives the mean, the minimum (a pessimistic
    ensemble) or the mean less `k` standard deviations. The tokenizer is the one saved in `path` (an ensemble saves it
    at its top level).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 16,
        max_length: int | None = None,
    ):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.path = Path(path)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.models = []
        for directory in member_dirs(self.path):
            model = AutoModelForSequenceClassification.from_pretrained(directory, dtype=dtype).to(device)
            model.requires_grad_(False)
            model.eval()
            if model.config.pad_token_id is None:
                model.config.pad_token_id = self.tokenizer.pad_token_id
            self.models.append(model)
        self.batch_size = batch_size
        self.max_length = max_length

    @property
    def size(self) -> int:
        return len(self.models)

    def sequences(self, prompts: Sequence[Any], completions: Sequence[Any]) -> tuple[list[list[int]], list[int]]:
        pairs = [sequence_ids(self.tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)]
        return [ids for ids, _ in pairs], [n for _, n in pairs]

    def score_ids(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        return torch.stack(
            [
                score_sequences(m, sequences, self.tokenizer.pad_token_id, self.batch_size, self.max_length)
                for m in self.models
            ]
        )

    def score(self, prompts: Sequence[Any], completions: Sequence[Any]) -> torch.Tensor:
        return self.score_ids(self.sequences(prompts, completions)[0])

    @staticmethod
    def reduce(scores: torch.Tensor, how: str = "mean", uncertainty_penalty: float = 0.0) -> torch.Tensor:
        """Combine `(members, n)` scores into `n`: "mean" or "min" over members, less `uncertainty_penalty` × the
        members' standard deviation (0 for a single model)."""
        combined = scores.min(0).values if how == "min" else scores.mean(0)
        if uncertainty_penalty and scores.shape[0] > 1:
            combined = combined - uncertainty_penalty * scores.std(0)
        return combined
