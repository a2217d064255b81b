"""Reward functions PPO may score with, by name: registered in code (`register`) or by an installed package
through the `quorum.reward_functions` entry-point group. A run config names one of these; nothing else is ever
imported for it, so a config cannot make the trainer import and call an arbitrary `module:function`.

A reward function takes keyword arguments like TRL's GRPO reward functions and returns one float per
completion: `fn(prompts=[...], completions=[...], completion_ids=[[...]], **kwargs)`. A package registers one
in its pyproject.toml:

    [project.entry-points."quorum.reward_functions"]
    helpfulness = "mypackage.rewards:helpfulness"
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

RewardFunction = Callable[..., Sequence[float]]
ENTRY_POINT_GROUP = "quorum.reward_functions"

_registered: dict[str, RewardFunction] = {}


def register(name: str, fn: RewardFunction | None = None):
    """Register `fn` under `name` (or use as a decorator: `@register("name")`)."""

    def add(fn: RewardFunction) -> RewardFunction:
        if not callable(fn):
            raise TypeError(f"reward function {name!r} is not callable")
        _registered[name] = fn
        return fn

    return add(fn) if fn is not None else add


def _entry_points(name: str | None = None):
    return entry_points(group=ENTRY_POINT_GROUP, **({"name": name} if name is not None else {}))


def names() -> list[str]:
    """Every registered name, built in or installed (nothing is imported to list them)."""
    return sorted(set(_registered) | {ep.name for ep in _entry_points()})


def is_registered(name: str) -> bool:
    return name in _registered or bool(_entry_points(name))


def load(name: str) -> RewardFunction:
    """The reward function registered as `name`; LookupError for any other name (which is not imported)."""
    if name in _registered:
        return _registered[name]
    for ep in _entry_points(name):
        fn = ep.load()
        if not callable(fn):
            raise LookupError(f"the entry point {ep.value!r} registered as {name!r} is not callable")
        return fn
    raise LookupError(f"{name!r} is not a registered reward function")


def unregistered_problem(name: str) -> str:
    """The config problem line for a name that is not registered."""
    known = ", ".join(names()) or "none"
    return (
        f"reward_function: {name!r} is not a registered reward function (registered: {known}); "
        f"a package adds one through the {ENTRY_POINT_GROUP!r} entry-point group"
    )


# --- built in -------------------------------------------------------------------------------------------------------


@register("repetition_penalty")
def repetition_penalty(completion_ids: Sequence[Sequence[int]] = (), **kwargs) -> list[float]:
    """TRL's repeated-trigram penalty (Yeo et al. 2025, app. C.2): −(1 − unique/total trigrams), in [−1, 0]."""
    from trl.rewards import get_repetition_penalty_reward

    return get_repetition_penalty_reward(ngram_size=3, max_penalty=-1.0)(completion_ids=[list(c) for c in completion_ids])
