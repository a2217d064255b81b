"""Snapshot loading for the trainers: a JSONL/JSON/Parquet file as a `datasets.Dataset`, checked for its format's
columns and rows, split for evaluation, and string rows made ready for TRL (chat turns or joined text).

`datasets` is imported when a snapshot is loaded, not with this module.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from training.trainers.config import ConfigError, TrainConfig

__all__ = [
    "DataError",
    "chat_rows",
    "check_text_or_messages",
    "is_messages",
    "load_snapshot",
    "preference_rows",
    "preference_splits",
    "prompt_text",
    "resolve_string_rows",
    "split_for_eval",
]

FORMAT_COLUMNS = {
    "preference": ("prompt", "chosen", "rejected"),
    "unpaired": ("prompt", "completion", "label"),
    "stepwise": ("prompt", "completions", "labels"),
    "sft": ("messages",),
}


class DataError(ValueError):
    """A snapshot that cannot be trained on as it is."""


def load_snapshot(path: str | os.PathLike, format: str | None = None) -> Any:
    """A JSONL/JSON/Parquet snapshot as an in-memory `datasets.Dataset`, checked for the columns of `format`.

    The `datasets` cache goes to a temporary directory removed afterwards, so runs never share or leave one behind.
    """
    import datasets

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    builder = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(suffix)
    if builder is None:
        raise DataError(f"{path}: unknown file type {suffix!r}; expected .jsonl, .json or .parquet")
    try:
        with tempfile.TemporaryDirectory(prefix="quorum-datasets-") as cache:
            dataset = datasets.load_dataset(
                builder, data_files=str(path), split="train", cache_dir=cache, keep_in_memory=True
            )
    except Exception as error:  # datasets wraps parse errors in several exception types
        raise DataError(f"{path}: cannot be read as {builder}: {error}") from error
    if len(dataset) == 0:
        raise DataError(f"{path}: no rows")
    if format is not None:
        missing = [c for c in FORMAT_COLUMNS[format] if c not in dataset.column_names]
        if missing:
            raise DataError(
                f"{path}: not a {format} snapshot: missing column(s) {missing}; it has {dataset.column_names}"
            )
    return dataset


def split_for_eval(dataset: Any, config: TrainConfig, format: str | None = None) -> tuple[Any, Any | None]:
    """(train, held-out): the held-out part is `config.eval_data` when given, else a seeded `eval_fraction` of
    `dataset` (the same rows on every resume), else None."""
    if config.eval_data:
        return dataset, load_snapshot(config.eval_data, format)
    if config.eval_fraction <= 0 or len(dataset) < 2:
        return dataset, None
    held = min(len(dataset) - 1, max(1, round(config.eval_fraction * len(dataset))))
    parts = dataset.train_test_split(test_size=held, seed=config.seed, shuffle=True)
    return parts["train"], parts["test"]


def resolve_string_rows(config: TrainConfig, tokenizer: Any) -> str:
    if config.string_rows != "auto":
        if config.string_rows == "chat" and not getattr(tokenizer, "chat_template", None):
            raise ConfigError(["string_rows: 'chat' needs a tokenizer with a chat template; use 'join'"])
        return config.string_rows
    return "chat" if getattr(tokenizer, "chat_template", None) else "join"


def chat_rows(dataset: Any, completion_columns: Iterable[str], mode: str, separator: str) -> Any:
    """Rows with string prompts made ready for TRL: as a user turn and assistant turn(s) (`mode` "chat"), or with
    `separator` appended to the prompt (`mode` "join"; TRL concatenates prompt and completion with nothing between).
    Conversational rows pass through unchanged."""
    completion_columns = list(completion_columns)
    if not len(dataset):
        return dataset
    if not isinstance(dataset[0]["prompt"], str):
        return dataset if mode == "chat" else transcript_rows(dataset, completion_columns)

    def convert(row: dict) -> dict:
        prompt = row["prompt"]
        if mode == "chat":
            row["prompt"] = [{"role": "user", "content": prompt}]
            for column in completion_columns:
                row[column] = [{"role": "assistant", "content": row[column]}]
        elif prompt and separator and not prompt[-1].isspace():
            if not all(row[c][:1].isspace() for c in completion_columns):
                row["prompt"] = prompt + separator
        return row

    return dataset.map(convert)


def transcript_rows(dataset: Any, completion_columns: Iterable[str]) -> Any:
    """Conversational rows as plain text, for a tokenizer without a chat template (an encoder such as MiniLM as a
    reward model): the prompt becomes "User: ...\n\nAssistant:" and each completion its assistant text."""
    completion_columns = list(completion_columns)

    def text(messages: list[dict]) -> str:
        return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)

    def convert(row: dict) -> dict:
        row["prompt"] = text(row["prompt"]) + "\n\nAssistant:"
        for column in completion_columns:
            turns = row[column]
            row[column] = " " + (turns[0]["content"] if len(turns) == 1 else text(turns))
        return row

    return dataset.map(convert)


def is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)
    )


def check_text_or_messages(dataset: Any, columns: Iterable[str], path: str) -> None:
    """Every value of `columns` is a non-empty string or a non-empty list of {role, content} messages, and the
    prompt column is of the same kind on every row; `DataError` names the first bad row."""
    columns = list(columns)
    kinds = set()
    for i, row in enumerate(dataset.select_columns(columns)):
        for column in columns:
            value = row[column]
            if isinstance(value, str):
                if not value:
                    raise DataError(f"{path}: row {i}: `{column}` is empty")
                kinds.add((column, "text"))
            elif is_messages(value):
                kinds.add((column, "messages"))
            else:
                raise DataError(f"{path}: row {i}: `{column}` must be a string or a list of {{role, content}} messages")
    for column in columns:
        if {(column, "text"), (column, "messages")} <= kinds:
            raise DataError(f"{path}: `{column}` mixes strings and message lists; use one style per snapshot")


def preference_rows(dataset: Any, config: TrainConfig, tokenizer: Any, keep: Iterable[str] = ()) -> Any:
    """A preference snapshot made ready for a TRL pairwise trainer: checked, columns other than prompt, chosen,
    rejected (and `keep`) removed, string rows converted per `config.string_rows`."""
    check_text_or_messages(dataset, ["prompt", "chosen", "rejected"], config.data)
    wanted = {"prompt", "chosen", "rejected", *keep}
    dataset = dataset.remove_columns([c for c in dataset.column_names if c not in wanted])
    mode = resolve_string_rows(config, tokenizer)
    return chat_rows(dataset, ["chosen", "rejected"], mode, config.join_separator)


def preference_splits(config: TrainConfig, tokenizer: Any, keep: Iterable[str] = ()) -> tuple[Any, Any | None]:
    """The config's preference snapshot made ready (`preference_rows`) and split for evaluation (`split_for_eval`);
    a separate `eval_data` file is made ready the same way."""
    data = preference_rows(load_snapshot(config.data, "preference"), config, tokenizer, keep=keep)
    train_set, eval_set = split_for_eval(data, config, "preference")
    if eval_set is not None and config.eval_data:
        eval_set = preference_rows(eval_set, config, tokenizer, keep=keep)
    return train_set, eval_set


def prompt_text(prompt: Any, tokenizer: Any, mode: str, separator: str) -> str:
    """The text a policy continues for `prompt` (a string or a list of messages)."""
    if isinstance(prompt, str):
        if mode == "chat":
            prompt = [{"role": "user", "content": prompt}]
        else:
            return prompt + separator if prompt and separator and not prompt[-1].isspace() else prompt
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)

