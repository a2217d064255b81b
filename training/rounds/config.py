"""A round's settings: the defaults, then the project's `settings["rounds"]`, then what the launch overrides.

`RoundConfig.from_dict` validates them (Invalid naming each bad field as `config.<field>`); `as_dict` is what the
Round row stores in its `config` column, and `RoundConfig.stored` reads a row's column back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

from annotation.models import Project
from common.errors import Invalid

from ..backends import Sampling
from ..models import TrainingMethod
from .selection import SelectionPolicy


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"an integer from {low} to {high}")
        return value

    return check


def _instance(kind: type, message: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, kind):
            raise ValueError(message)
        return value

    return check


_flag = _instance(bool, "true or false")
_object = _instance(dict, "must be an object")


def _sampling(value: Any) -> dict:
    return Sampling.from_dict(value).as_dict()


def _selection(value: Any) -> dict:
    return SelectionPolicy.from_settings(value).as_dict()


def _method(value: Any) -> str:
    if value not in (TrainingMethod.DPO, TrainingMethod.ORPO):
        raise ValueError("dpo or orpo (a preference method that yields a policy)")
    return value


def _trainer_hyperparameters(value: Any) -> dict:
    """A null hyperparameter means "the trainer's default": it is left out."""
    return {k: v for k, v in _object(value).items() if v is not None}


def _model_name(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("a registered model name, or null")
    return value


def _probe_limit(value: Any) -> int | None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ValueError("a positive integer, or null")
    return value


def _setting(default: Any, check: Callable[[Any], Any]):
    """A field with its default (copied for each config when it is a dict) and the check that validates it."""
    if isinstance(default, dict):
        return field(default_factory=lambda: {**default}, metadata={"check": check})
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class RoundConfig:
    prompts_per_round: int = _setting(8, _integer(1, 10_000))
    n: int = _setting(2, _integer(2, 16))  # candidates per prompt
    sampling: dict = _setting({"max_new_tokens": 128, "temperature": 1.0}, _sampling)
    eval_prompts: int = _setting(8, _integer(0, 10_000))
    eval_sampling: dict = _setting({"max_new_tokens": 128, "temperature": 0.0}, _sampling)
    method: str = _setting("dpo", _method)
    hyperparameters: dict = _setting({
        "max_steps": 8, "batch_size": 2, "learning_rate": 5e-5, "max_length": 384, "beta": 0.1,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0}, "save_steps": 1000, "num_threads": None,
    }, _trainer_hyperparameters)
    reward_base: str | None = _setting(None, _model_name)  # train a reward model on each round's snapshot too
    reward_hyperparameters: dict = _setting({"max_steps": 8, "batch_size": 4, "learning_rate": 1e-4, "max_length": 384},
                                            _object)
    selection: dict = _setting(SelectionPolicy().as_dict(), _selection)
    queue_eval_for_humans: bool = _setting(False, _flag)
    probes: bool = _setting(True, _flag)
    probe_limit: int | None = _setting(None, _probe_limit)
    judge_batch: int = _setting(8, _integer(1, 256))
    seed: int = _setting(0, _integer(0, 2**31 - 1))

    @classmethod
    def from_dict(cls, project: Project, overrides: dict | None = None) -> "RoundConfig":
        """Defaults, then the project's `settings["rounds"]`, then `overrides` (an object setting merges key by key
        into the one before); validated, raising Invalid with one message per field."""
        if overrides is not None and not isinstance(overrides, dict):
            raise Invalid("config must be an object", fields={"config": ["must be an object"]})
        from_project = (project.settings or {}).get("rounds") or {}
        if not isinstance(from_project, dict):
            raise Invalid("the project's rounds setting must be an object",
                          fields={"settings": ["rounds must be an object"]})
        merged = cls().as_dict()
        problems: dict[str, list[str]] = {}
        for source in (from_project, overrides or {}):
            for key, value in source.items():
                if key not in merged:
                    problems.setdefault(key, []).append("unknown setting")
                elif isinstance(merged[key], dict) and isinstance(value, dict):
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
        values = {}
        for f in fields(cls):
            try:
                values[f.name] = f.metadata["check"](merged[f.name])
            except (TypeError, ValueError) as exc:
                problems.setdefault(f.name, []).append(str(exc))
        if problems:
            raise Invalid("invalid round settings: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in problems.items()),
                          fields={f"config.{k}": v for k, v in problems.items()})
        return cls(**values)

    @classmethod
    def stored(cls, data: dict) -> "RoundConfig":
        """A round's `config` column as it was validated at launch (a setting it lacks takes today's default)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def as_dict(self) -> dict:
        return asdict(self)
