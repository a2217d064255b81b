"""Run configs: typed dataclasses read from JSON, with every problem in a config reported at once.

`option` declares a documented field, `TrainConfig` holds the fields every method shares, `load_config` builds and
validates a config, `describe_config` lists its fields. Plain Python: no torch, no transformers, no Django, so the
web process validates a run without loading a training library (each method's config is in `configs`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

__all__ = [
    "ConfigError",
    "LoraSettings",
    "TrainConfig",
    "config_to_dict",
    "describe_config",
    "load_config",
    "option",
]


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
