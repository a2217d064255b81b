"""Shared machinery of the trainers: typed configs from JSON, metrics as JSON lines, checkpoints and resume,
cancellation on SIGTERM, device and precision, LoRA, snapshot loading, and the command-line entry point.

Plain Python: torch, transformers, peft, accelerate and datasets, never Django.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

import torch

log = logging.getLogger("quorum.trainers")

__all__ = [
    "Cancellation",
    "ConfigError",
    "LoraSettings",
    "MetricsWriter",
    "Run",
    "StageOutcome",
    "TrainConfig",
    "TrainResult",
    "chat_rows",
    "describe_config",
    "execute",
    "last_checkpoint",
    "load_config",
    "load_snapshot",
    "main",
    "option",
    "split_for_eval",
]

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_INVALID_CONFIG = 2
EXIT_CANCELLED = 3

RESULT_FILE = "result.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"  # written last into a checkpoint: its presence marks the checkpoint complete
COMPLETED_FILE = "completed.json"


# --- Configs -------------------------------------------------------------------------------------------------------


def option(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None) -> Any:
    """A config field with its documentation (shown by `--describe` and kept in `dataclasses.fields(...).metadata`)."""
    if not help:
        raise ValueError("every config field needs a help text")
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


class ConfigError(ValueError):
    """A run config that cannot be used; `problems` lists every problem found, one line each."""

    def __init__(self, problems: list[str], *, method: str | None = None, source: str | None = None):
        self.problems = list(problems)
        head = f"invalid {method or 'training'} config" + (f" ({source})" if source else "")
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclasses.dataclass
class LoraSettings:
    """Low-rank adapters (Hu et al. 2021) through peft; only the adapters (and any task head) are trained."""

    r: int = option(16, "Rank of each adapter's update matrices.")
    alpha: float = option(32.0, "Scaling numerator: the update is scaled by alpha / r.")
    dropout: float = option(0.05, "Dropout on the adapter input, in [0, 1).")
    target_modules: str | list[str] = option(
        "all-linear", "Module names to adapt, or 'all-linear' for every linear layer except the output head."
    )

    def problems(self) -> list[str]:
        out = []
        if self.r < 1:
            out.append("lora.r: must be at least 1")
        if self.alpha <= 0:
            out.append("lora.alpha: must be positive")
        if not 0 <= self.dropout < 1:
            out.append("lora.dropout: must be in [0, 1)")
        return out


@dataclasses.dataclass
class TrainConfig:
    """Fields every method shares. Relative paths are relative to the working directory of the process."""

    method: ClassVar[str] = ""

    model: str = option(help="Base model: a directory written by save_pretrained (or a hub id where allowed).")
    data: str = option(help="Training snapshot: a .jsonl, .json or .parquet file in the method's export format.")
    output_dir: str = option(help="Where the final model, checkpoints/, metrics.jsonl and result.json go.")
    tokenizer: str | None = option(None, "Tokenizer directory; the model's own when null.")
    eval_data: str | None = option(None, "Held-out snapshot for evaluation; when null, eval_fraction of data is held out.")
    eval_fraction: float = option(0.0, "Share of `data` held out for evaluation when eval_data is null (0 for none).")
    seed: int = option(0, "Seed for initialisation, data order and the held-out split.")
    max_steps: int = option(-1, "Optimizer steps to run; -1 to run num_epochs instead.")
    num_epochs: float = option(1.0, "Passes over the training data when max_steps is -1.")
    batch_size: int = option(8, "Examples per device per forward pass.")
    gradient_accumulation_steps: int = option(1, "Forward passes accumulated into one optimizer step.")
    learning_rate: float = option(1e-5, "Peak learning rate of AdamW.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = option(
        "linear", "Learning-rate schedule after warmup."
    )
    warmup_steps: int = option(0, "Linear warmup steps from 0 to learning_rate.")
    weight_decay: float = option(0.0, "AdamW decoupled weight decay.")
    max_grad_norm: float = option(1.0, "Gradient clipping by global norm (0 to disable).")
    max_length: int = option(1024, "Longest tokenized sequence (prompt plus completion).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = option(
        "auto", "Arithmetic precision: auto is bf16 on a GPU that supports it, else fp16 on a GPU, and fp32 on CPU."
    )
    lora: LoraSettings | None = option(None, "LoRA adapters ({r, alpha, dropout, target_modules}); null trains all weights.")
    merge_lora: bool = option(True, "Merge the adapters into the weights when saving the final model.")
    activation_checkpointing: bool = option(False, "Recompute activations in the backward pass to save memory.")
    deepspeed: str | None = option(
        None, "DeepSpeed JSON config (e.g. platform/deepspeed_zero2.json) for multi-GPU runs; its 'auto' values are "
        "filled from this config. Not for ppo."
    )
    save_steps: int = option(100, "Write a checkpoint every this many optimizer steps (and at the end).")
    save_total_limit: int | None = option(2, "Keep at most this many checkpoints (null keeps all).")
    resume: Literal["auto", "never"] = option(
        "auto", "auto: continue from the last complete checkpoint in output_dir; never: start over."
    )
    logging_steps: int = option(1, "Write metrics every this many optimizer steps.")
    metrics_file: str | None = option(None, "Metrics JSON-lines file; output_dir/metrics.jsonl when null.")
    metrics_stdout: bool = option(True, "Also write each metrics line to standard output.")
    num_threads: int | None = option(None, "Torch CPU threads (1 is fastest for tiny models); torch's default when null.")
    string_rows: Literal["auto", "chat", "join"] = option(
        "auto",
        "Rows whose prompt and completion are plain strings: chat wraps them as a user and an assistant turn, join "
        "concatenates them with join_separator, auto is chat when the tokenizer has a chat template.",
    )
    join_separator: str = option("\n", "Put between a string prompt and its completion when string_rows is join.")

    def problems(self) -> list[str]:
        """Every problem with the values (not the types, which loading checks); empty when the config is usable."""
        out = []
        for name in ("model", "data", "output_dir"):
            if not getattr(self, name):
                out.append(f"{name}: must not be empty")
        if self.max_steps == 0 or self.max_steps < -1:
            out.append("max_steps: must be positive, or -1 to use num_epochs")
        if self.max_steps == -1 and self.num_epochs <= 0:
            out.append("num_epochs: must be positive when max_steps is -1")
        for name in ("batch_size", "gradient_accumulation_steps", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                out.append(f"{name}: must be at least 1")
        if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            out.append("learning_rate: must be a positive number")
        for name in ("warmup_steps", "weight_decay", "max_grad_norm"):
            if getattr(self, name) < 0:
                out.append(f"{name}: must not be negative")
        if self.max_length < 8:
            out.append("max_length: must be at least 8")
        if not 0 <= self.eval_fraction < 1:
            out.append("eval_fraction: must be in [0, 1)")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            out.append("save_total_limit: must be at least 1, or null")
        if self.num_threads is not None and self.num_threads < 1:
            out.append("num_threads: must be at least 1, or null")
        if self.lora is not None:
            out.extend(self.lora.problems())
        return out


class _Mismatch(Exception):
    pass


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _describe_type(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if hint is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in args)
    if origin is list:
        return f"a list of ({_describe_type(args[0])})"
    if origin is dict:
        return "an object"
    if dataclasses.is_dataclass(hint):
        return "an object with " + ", ".join(f.name for f in dataclasses.fields(hint))
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, path: str, problems: list[str]) -> Any:
    """`value` checked against the type `hint` (and converted where JSON is looser, e.g. 3 for a float)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path, problems)
            except _Mismatch:
                continue
        raise _Mismatch(f"{path}: expected {_describe_type(hint)}, got {_shown(value)}")
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        suggestion = difflib.get_close_matches(str(value), [str(a) for a in args], n=1) if isinstance(value, str) else []
        hint_text = f"; did you mean {json.dumps(suggestion[0])}?" if suggestion else ""
        raise _Mismatch(f"{path}: expected {_describe_type(hint)}, got {_shown(value)}{hint_text}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        if isinstance(value, list):
            return [_coerce(v, args[0], f"{path}[{i}]", problems) for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {k: _coerce(v, args[1], f"{path}.{k}", problems) if args else v for k, v in value.items()}
    elif dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return _build(hint, value, f"{path}.", problems)
    raise _Mismatch(f"{path}: expected {_describe_type(hint)}, got {_shown(value)}")


def _build(cls: type, data: dict, prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            problems.append(
                f"{prefix}{key}: unknown field" + (f"; did you mean {close[0]!r}?" if close else "")
            )
            continue
        try:
            values[key] = _coerce(value, hints[key], f"{prefix}{key}", problems)
        except _Mismatch as mismatch:
            problems.append(str(mismatch))
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in data:
            problems.append(f"{prefix}{name}: required field is missing")
    if problems:
        return None
    return cls(**values)


def load_config(cls: type, source: str | os.PathLike | dict | Any) -> Any:
    """A `cls` config from a JSON file path, a dict, or an instance (validated again); raises `ConfigError` listing
    every unknown field, ill-typed value, missing required field and out-of-range value at once.

    A `"method"` key is allowed and must name `cls.method`, so a run spec meant for another trainer is refused.
    """
    source_name = None
    if isinstance(source, cls):
        data = dataclasses.asdict(source)
    elif isinstance(source, dict):
        data = dict(source)
    else:
        source_name = str(source)
        try:
            text = Path(source).read_text()
        except OSError as error:
            raise ConfigError([f"cannot read the config file: {error.strerror or error}"], method=cls.method, source=source_name) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(
                [f"not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"],
                method=cls.method,
                source=source_name,
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(["the top level must be a JSON object"], method=cls.method, source=source_name)
    problems: list[str] = []
    method = data.pop("method", cls.method)
    if method != cls.method:
        problems.append(f"method: this trainer is {cls.method!r}, the config says {method!r}")
    config = _build(cls, data, "", problems)
    if config is not None:
        problems.extend(config.problems())
    if problems:
        raise ConfigError(problems, method=cls.method, source=source_name)
    return config


def describe_config(cls: type) -> list[dict]:
    """Every field of `cls`: name, type (in words), default and help; nested configs flattened as `lora.r`."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        out.append({"name": f.name, "type": _describe_type(hints[f.name]), "default": default, "help": f.metadata["help"]})
        nested = [a for a in typing.get_args(hints[f.name]) if dataclasses.is_dataclass(a)]
        for sub in nested:
            out.extend({**entry, "name": f"{f.name}.{entry['name']}"} for entry in describe_config(sub))
    return out


def config_to_dict(config: Any) -> dict:
    return {"method": type(config).method, **dataclasses.asdict(config)}


# --- Metrics -------------------------------------------------------------------------------------------------------

_echo_stream: IO[str] | None = None  # set by `main`: the real stdout, once fd 1 has been pointed at stderr


class MetricsWriter:
    """Metrics as JSON lines, one scalar per line: `{"step": 12, "name": "loss", "value": 0.41}`.

    `step` is the optimizer step the value belongs to (0 before training); names are the trainer's own ("loss",
    "grad_norm", "learning_rate", TRL's "rewards/chosen", PPO's "reward/mean", ...), prefixed by a stage
    ("member1/loss", "orm/loss") when a run trains several models. Non-finite values are written as null.
    """

    def __init__(self, path: Path, echo: bool, enabled: bool = True):
        self.path = path
        self.echo = echo
        self.enabled = enabled
        self._lock = threading.Lock()
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        else:
            self._file = None

    def write(self, step: int, metrics: dict[str, float], prefix: str = "") -> None:
        if not self.enabled or not metrics:
            return
        lines = []
        for name, value in metrics.items():
            value = float(value)
            lines.append(json.dumps({"step": int(step), "name": prefix + name, "value": value if math.isfinite(value) else None}))
        text = "\n".join(lines) + "\n"
        with self._lock:
            self._file.write(text)
            self._file.flush()
            if self.echo:
                stream = _echo_stream or sys.stdout
                stream.write(text)
                stream.flush()

    def rewind(self, step: int, prefix: str = "") -> None:
        """Forget lines after `step` whose name starts with `prefix`: a resumed run logs those steps again."""
        if not self.enabled:
            return
        with self._lock:
            self._file.close()
            kept = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
                if record.get("step", 0) > step and str(record.get("name", "")).startswith(prefix):
                    continue
                kept.append(line)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            os.replace(tmp, self.path)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# --- Cancellation --------------------------------------------------------------------------------------------------


class Cancellation:
    """SIGTERM (and SIGINT) ask the run to stop: the trainer finishes its current step, writes a checkpoint and
    returns with status "cancelled". A second signal of the same kind ends the process at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread; cancellation then comes via request()
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        if self.requested:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested = True
        log.warning("received %s: stopping after the current step with a checkpoint", signal.Signals(signum).name)

    def request(self) -> None:
        """Ask for cancellation from code (a test, or a watchdog thread)."""
        self.requested = True

    def agreed(self) -> bool:
        """Whether any process of a distributed run was asked to stop, so that all of them stop at the same step."""
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            from accelerate import PartialState

            flag = torch.tensor([1.0 if self.requested else 0.0], device=PartialState().device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            self.requested = bool(flag.item() > 0)
        return self.requested


# --- Checkpoints ---------------------------------------------------------------------------------------------------

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int:
    match = _CHECKPOINT.match(Path(path).name)
    if not match:
        raise ValueError(f"{path} is not a checkpoint directory")
    return int(match.group(1))


def last_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step in `directory` (one holding trainer_state.json), or None."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    complete = [p for p in directory.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name) and (p / STATE_FILE).is_file()]
    return max(complete, key=checkpoint_step, default=None)


def drop_checkpoints_after(directory: Path, keep: Path | None) -> None:
    """Remove incomplete checkpoints and any newer than `keep` (a kill can leave half-written ones behind)."""
    if not directory.is_dir():
        return
    limit = checkpoint_step(keep) if keep is not None else -1
    for p in directory.iterdir():
        if p.is_dir() and _CHECKPOINT.match(p.name):
            if not (p / STATE_FILE).is_file() or checkpoint_step(p) > limit:
                shutil.rmtree(p, ignore_errors=True)


# --- Devices, precision, models ------------------------------------------------------------------------------------


def resolve_precision(requested: str) -> str:
    """"fp32", "bf16" or "fp16". auto: bf16 on a GPU that supports it, fp16 on another GPU, fp32 on CPU."""
    cuda = torch.cuda.is_available()
    if requested == "auto":
        if not cuda:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested == "fp16" and not cuda:
        raise ConfigError(["precision: fp16 needs a GPU; use fp32 (or bf16) on CPU"])
    return requested


def lora_config(settings: LoraSettings, task_type: str):
    """A peft `LoraConfig` for `settings`; `task_type` is peft's ("CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS")."""
    from peft import LoraConfig

    # A classifier's head is trained in full (peft's modules_to_save for these task types), so no adapter goes on it.
    heads = ["score", "classifier"] if task_type in ("SEQ_CLS", "TOKEN_CLS") else None
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        exclude_modules=heads,
        task_type=task_type,
    )


# --- Data ----------------------------------------------------------------------------------------------------------

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


def _is_messages(value: Any) -> bool:
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
            elif _is_messages(value):
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


# --- Runs ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainResult:
    """What `train()` returns and what result.json holds."""

    status: Literal["succeeded", "cancelled", "failed"]
    method: str
    steps: int  # optimizer steps done, summed over the run's stages
    final_metrics: dict[str, float]  # the last value of every metric written
    evaluation: dict  # the method's held-out evaluation (empty when there is none)
    output_dir: str
    checkpoint: str | None = None  # the last checkpoint written (where a relaunch resumes)
    error: str | None = None  # set when status is "failed"
    runtime_s: float = 0.0
    config: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class StageOutcome:
    steps: int
    cancelled: bool
    metrics: dict[str, float]
    checkpoint: str | None = None


class Run:
    """One training run: its output directory, metrics, cancellation, precision and the stages it trains.

    A stage is one model trained to completion (the run's model; each ensemble member; the PRM's comparison ORM).
    Stage "" keeps its checkpoints in output_dir/checkpoints; a named stage in output_dir/checkpoints/<name>, and
    its metrics are prefixed "<name>/". A finished stage leaves completed.json so that a resumed run skips it.
    """

    def __init__(self, config: TrainConfig):
        from accelerate import PartialState

        self.config = config
        self.method = type(config).method
        self.output_dir = Path(config.output_dir)
        # cpu=True where there is no GPU, so that a multi-process CPU launch (torchrun) is recognised as one.
        self.state = PartialState(cpu=not torch.cuda.is_available())
        self.is_main = self.state.is_main_process
        self.device = self.state.device
        self.precision = resolve_precision(config.precision)
        self.cancel = Cancellation()
        metrics_path = Path(config.metrics_file) if config.metrics_file else self.output_dir / METRICS_FILE
        self.metrics = MetricsWriter(metrics_path, echo=config.metrics_stdout, enabled=self.is_main)
        self.final_metrics: dict[str, float] = {}
        self.last_checkpoint: str | None = None

    # Stages

    def stage_dir(self, stage: str = "") -> Path:
        base = self.output_dir / CHECKPOINTS_DIR
        return base / stage if stage else base

    @staticmethod
    def prefix(stage: str) -> str:
        return f"{stage}/" if stage else ""

    def completed(self, stage: str = "") -> StageOutcome | None:
        path = self.stage_dir(stage) / COMPLETED_FILE
        if self.config.resume == "never" or not path.is_file():
            return None
        data = json.loads(path.read_text())
        outcome = StageOutcome(**data)
        self.final_metrics.update({self.prefix(stage) + k: v for k, v in outcome.metrics.items()})
        return outcome

    def mark_completed(self, outcome: StageOutcome, stage: str = "") -> None:
        if self.is_main:
            directory = self.stage_dir(stage)
            directory.mkdir(parents=True, exist_ok=True)
            _write_json_atomic(directory / COMPLETED_FILE, dataclasses.asdict(outcome))

    def resume_point(self, stage: str = "") -> Path | None:
        """The checkpoint a stage continues from (None to start fresh); drops newer, incomplete ones and rewinds the
        metrics file to it."""
        directory = self.stage_dir(stage)
        if self.config.resume == "never":
            if self.is_main:
                drop_checkpoints_after(directory, None)
                self.metrics.rewind(0, self.prefix(stage))
            self.state.wait_for_everyone()
            return None
        checkpoint = last_checkpoint(directory)
        if self.is_main:
            drop_checkpoints_after(directory, checkpoint)
            self.metrics.rewind(checkpoint_step(checkpoint) if checkpoint else 0, self.prefix(stage))
        self.state.wait_for_everyone()
        if checkpoint is not None:
            log.info("resuming %s from %s", stage or self.method, checkpoint)
        return checkpoint

    def log_metrics(self, step: int, metrics: dict[str, float], stage: str = "") -> None:
        prefix = self.prefix(stage)
        self.metrics.write(step, metrics, prefix)
        self.final_metrics.update({prefix + k: float(v) for k, v in metrics.items()})

    # Transformers/TRL trainers

    def hf_arguments(self, args_cls: type, stage: str = "", **fields: Any) -> Any:
        """`args_cls` (TrainingArguments or a TRL config) filled from the run config; `fields` add or override."""
        c = self.config
        values: dict[str, Any] = dict(
            output_dir=str(self.stage_dir(stage)),
            use_cpu=self.device.type == "cpu",
            bf16=self.precision == "bf16",
            fp16=self.precision == "fp16",
            activation_checkpointing=c.activation_checkpointing,
            max_steps=c.max_steps,
            num_train_epochs=c.num_epochs,
            per_device_train_batch_size=c.batch_size,
            per_device_eval_batch_size=c.batch_size,
            gradient_accumulation_steps=c.gradient_accumulation_steps,
            learning_rate=c.learning_rate,
            lr_scheduler_type=c.lr_scheduler,
            warmup_steps=c.warmup_steps,
            weight_decay=c.weight_decay,
            max_grad_norm=c.max_grad_norm,
            logging_steps=c.logging_steps,
            save_strategy="steps",
            save_steps=c.save_steps,
            save_total_limit=c.save_total_limit,
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            log_level="warning",
            dataloader_num_workers=0,
            dataloader_pin_memory=self.device.type == "cuda",
            seed=c.seed,
            data_seed=c.seed,
        )
        if c.deepspeed:
            values["deepspeed"] = c.deepspeed
        values.update(fields)
        return args_cls(**values)

    def fit(self, trainer: Any, stage: str = "") -> StageOutcome:
        """Train a transformers/TRL `trainer` for one stage, resuming from the stage's last checkpoint; SIGTERM
        stops it after the current step with a checkpoint."""
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        checkpoint = self.resume_point(stage)
        start = checkpoint_step(checkpoint) if checkpoint else 0
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        metrics_cb = _MetricsCallback(self, stage)
        cancel_cb = _CancelCallback(self)
        trainer.add_callback(metrics_cb)
        trainer.add_callback(cancel_cb)
        if self.cancel.agreed():
            self.last_checkpoint = str(checkpoint) if checkpoint else None
            return StageOutcome(steps=start, cancelled=True, metrics={}, checkpoint=self.last_checkpoint)
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        last = last_checkpoint(self.stage_dir(stage))
        self.last_checkpoint = str(last) if last else None
        return StageOutcome(
            steps=int(trainer.state.global_step),
            cancelled=cancel_cb.cancelled,
            metrics=dict(metrics_cb.last),
            checkpoint=self.last_checkpoint,
        )

    def fit_evaluate_save(self, trainer: Any, tokenizer: Any, eval_set: Any, evaluation: dict | None = None
                          ) -> tuple[str, int, dict]:
        """The ending of a single-model method: `fit`, then (unless cancelled) `trainer.evaluate()` on the held-out
        set merged into `evaluation`, and the final model saved to output_dir. Returns what `execute` expects."""
        outcome = self.fit(trainer)
        if outcome.cancelled:
            return "cancelled", outcome.steps, {}
        evaluation = dict(evaluation or {})
        if eval_set is not None:
            evaluation.update(trainer.evaluate())
        self.save_model(trainer.model, tokenizer, self.output_dir)
        return "succeeded", outcome.steps, evaluation

    def save_model(self, model: Any, tokenizer: Any, directory: Path) -> None:
        """Write the final model and tokenizer with save_pretrained (LoRA merged in unless `merge_lora` is off)."""
        if not self.is_main:
            return
        model = _unwrap(model)
        if _is_peft(model) and self.config.merge_lora:
            model = model.merge_and_unload()
        directory.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(directory)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)

    # Models

    def load_tokenizer(self, path: str | None = None) -> Any:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path or self.config.tokenizer or self.config.model)
        if tokenizer.eos_token is None and tokenizer.sep_token is not None:
            # Encoders (BERT, MiniLM) end a sequence with [SEP] and name no EOS; TRL appends the EOS.
            tokenizer.eos_token = tokenizer.sep_token
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def weights_dtype(self, frozen: bool = False) -> torch.dtype:
        """fp32 master weights, except frozen weights (a LoRA base, a reference model) on a GPU in bf16/fp16 runs."""
        if frozen and self.device.type == "cuda" and self.precision in ("bf16", "fp16"):
            return torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.float32

    def load_model(self, auto_cls: Any, path: str | None = None, *, frozen: bool = False, **kwargs: Any) -> Any:
        """`auto_cls.from_pretrained(path or config.model)`: trained weights in fp32 (mixed precision autocasts),
        frozen ones (`frozen=True`) in bf16/fp16 on a GPU run in those precisions."""
        dtype = self.weights_dtype(frozen=frozen)
        model = auto_cls.from_pretrained(path or self.config.model, dtype=dtype, **kwargs)
        if frozen:
            model.requires_grad_(False)
            model.eval()
        return model

    def peft_config(self, task_type: str) -> Any:
        return lora_config(self.config.lora, task_type) if self.config.lora is not None else None

    # Result

    def write_result(self, result: TrainResult) -> None:
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            _write_json_atomic(self.output_dir / RESULT_FILE, result.to_dict())

    def previous_result(self) -> TrainResult | None:
        """The result of an earlier run of exactly this config that succeeded (a relaunch then has nothing to do)."""
        path = self.output_dir / RESULT_FILE
        if self.config.resume == "never" or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if data.get("status") != "succeeded" or data.get("config") != config_to_dict(self.config):
            return None
        return TrainResult(**data)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _unwrap(model: Any) -> Any:
    while hasattr(model, "module") and isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    return model


def _is_peft(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def _trainer_callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


class _MetricsCallback(_trainer_callback_base()):
    """Turns the trainer's log dicts into metrics lines."""

    def __init__(self, run: Run, stage: str):
        self.run = run
        self.stage = stage
        self.last: dict[str, float] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ARG002
        if not logs or not state.is_world_process_zero:
            return
        numeric = {
            k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "total_flos"
        }
        self.run.log_metrics(state.global_step, numeric, self.stage)
        self.last.update(numeric)


class _CancelCallback(_trainer_callback_base()):
    """After every optimizer step: when cancellation was asked for, save a checkpoint and stop."""

    def __init__(self, run: Run):
        self.run = run
        self.cancelled = False

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ARG002
        if self.run.cancel.agreed():
            control.should_save = True
            control.should_training_stop = True
            self.cancelled = True
        return control


def execute(config: TrainConfig, body: Callable[[Run], tuple[str, int, dict]]) -> TrainResult:
    """Run `body` (a method's training) under the shared setup, and write result.json.

    `body(run)` returns (status, steps, evaluation); metrics it logged become `final_metrics`. A run whose
    result.json already records a success for exactly this config returns that result without training again.
    """
    from transformers import set_seed
    from transformers.utils import logging as hf_logging

    run = Run(config)
    previous = run.previous_result()
    if previous is not None:
        log.info("%s already succeeded with this config; nothing to do", run.output_dir)
        return previous
    threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    hf_verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    set_seed(config.seed)
    run.output_dir.mkdir(parents=True, exist_ok=True)
    run.cancel.install()
    started = time.monotonic()
    try:
        status, steps, evaluation = body(run)
        result = TrainResult(
            status=status,
            method=run.method,
            steps=steps,
            final_metrics=run.final_metrics,
            evaluation=evaluation,
            output_dir=str(run.output_dir),
            checkpoint=run.last_checkpoint,
            runtime_s=time.monotonic() - started,
            config=config_to_dict(config),
        )
        run.write_result(result)
        return result
    except BaseException as error:
        run.write_result(
            TrainResult(
                status="failed",
                method=run.method,
                steps=0,
                final_metrics=run.final_metrics,
                evaluation={},
                output_dir=str(run.output_dir),
                checkpoint=run.last_checkpoint,
                error=f"{type(error).__name__}: {error}",
                runtime_s=time.monotonic() - started,
                config=config_to_dict(config),
            )
        )
        raise
    finally:
        run.cancel.restore()
        run.metrics.close()
        torch.set_num_threads(threads)
        hf_logging.set_verbosity(hf_verbosity)


def _quiet_progress_bars() -> None:
    """Progress bars are for terminals; a launched trainer reports progress through its metrics."""
    import datasets
    import huggingface_hub.utils
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


# --- Command line --------------------------------------------------------------------------------------------------


def main(config_cls: type, train: Callable[[Any], TrainResult], argv: list[str] | None = None) -> int:
    """`python -m training.trainers.<method> --config run.json`; see the package docstring for the contract."""
    parser = argparse.ArgumentParser(
        prog=f"python -m training.trainers.{config_cls.method}",
        description=f"Train with {config_cls.method}. Metrics go to stdout as JSON lines; logs go to stderr.",
    )
    parser.add_argument("--config", help="run spec: a JSON object with this method's fields")
    parser.add_argument("--describe", action="store_true", help="print the config fields as JSON and exit")
    args = parser.parse_args(argv)
    if args.describe:
        print(json.dumps(describe_config(config_cls), indent=2, default=str))
        return EXIT_SUCCEEDED
    if not args.config:
        parser.error("--config is required")

    # Keep stdout for metrics alone: the real stdout is kept aside and fd 1 (print, C extensions) goes to stderr.
    global _echo_stream
    sys.stdout.flush()
    _echo_stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    _quiet_progress_bars()

    try:
        config = load_config(config_cls, args.config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_INVALID_CONFIG
    try:
        result = train(config)
    except (ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID_CONFIG if isinstance(error, ConfigError) else EXIT_FAILED
    except Exception:
        traceback.print_exc()
        return EXIT_FAILED
    finally:
        _echo_stream.flush()
    log.info("%s %s after %d steps: %s", config_cls.method, result.status, result.steps, result.output_dir)
    return EXIT_CANCELLED if result.status == "cancelled" else EXIT_SUCCEEDED
