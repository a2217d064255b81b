"""Run configs load from JSON into typed dataclasses, and every mistake in them is reported clearly, all at once."""

import dataclasses
import json
import typing

import pytest

from training.trainers import METHODS
from training.trainers.config import ConfigError, LoraSettings, TrainConfig, describe_config, load_config
from training.trainers.configs import CONFIGS, DPOConfig, KTOConfig, PPOConfig, PRMConfig, RewardConfig, SFTConfig
BASE = {"model": "m", "data": "d.jsonl", "output_dir": "out"}


def _problems(cls, data):
    with pytest.raises(ConfigError) as caught:
        load_config(cls, data)
    return caught.value.problems, str(caught.value)


def test_every_method_has_a_config_with_every_field_typed_defaulted_and_documented():
    assert sorted(CONFIGS) == sorted(METHODS)
    for method, cls in CONFIGS.items():
        assert cls.method == method
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
            assert f.name in hints
            if f.name not in ("model", "data", "output_dir"):
                assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING, f.name
        described = {entry["name"] for entry in describe_config(cls)}
        assert {"learning_rate", "lora", "lora.r", "save_steps"} <= described


def test_a_valid_file_loads_with_json_numbers_converted(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({**BASE, "method": "dpo", "beta": 1, "max_steps": 10.0, "lora": {"r": 4}}))
    config = load_config(DPOConfig, path)
    assert config.beta == 1.0 and isinstance(config.beta, float)
    assert config.max_steps == 10 and isinstance(config.max_steps, int)
    assert config.lora == LoraSettings(r=4)
    assert config.loss_type == "sigmoid"


def test_unknown_fields_are_named_with_a_suggestion():
    problems, message = _problems(DPOConfig, {**BASE, "lerning_rate": 1e-5, "lora": {"rank": 8}})
    assert "lerning_rate: unknown field; did you mean 'learning_rate'?" in problems
    assert any(p.startswith("lora.rank: unknown field") for p in problems)
    assert message.startswith("invalid dpo config:")


def test_ill_typed_values_say_what_was_expected_and_what_came():
    problems, _ = _problems(
        RewardConfig,
        {**BASE, "learning_rate": "fast", "batch_size": 2.5, "use_margin": "yes", "precision": "bf61", "lora": 3},
    )
    assert 'learning_rate: expected a number, got "fast"' in problems
    assert "batch_size: expected an integer, got 2.5" in problems
    assert 'use_margin: expected true or false, got "yes"' in problems
    assert any(p.startswith("precision: expected one of") and 'did you mean "bf16"?' in p for p in problems)
    assert any(p.startswith("lora: expected an object with r, alpha, dropout, target_modules or null") for p in problems)


def test_booleans_are_not_accepted_as_numbers():
    problems, _ = _problems(SFTConfig, {**BASE, "batch_size": True})
    assert problems == ["batch_size: expected an integer, got true"]


def test_missing_required_fields_and_out_of_range_values_are_reported():
    problems, _ = _problems(SFTConfig, {"model": "m"})
    assert problems == ["data: required field is missing", "output_dir: required field is missing"]
    problems, _ = _problems(KTOConfig, {**BASE, "batch_size": 1, "learning_rate": -1.0, "eval_fraction": 1.5})
    assert any(p.startswith("batch_size: KTO needs at least 2") for p in problems)
    assert "learning_rate: must be a positive number" in problems
    assert "eval_fraction: must be in [0, 1)" in problems


def test_method_specific_rules():
    problems, _ = _problems(PPOConfig, {**BASE, "batch_size": 6, "mini_batch_size": 4})
    assert any(p.startswith("reward_model / reward_function: give exactly one") for p in problems)
    assert "mini_batch_size: must divide batch_size" in problems
    problems, _ = _problems(RewardConfig, {**BASE, "ensemble_size": 1, "ensemble_mode": "folds"})
    assert problems == ["ensemble_mode: folds needs ensemble_size of at least 2"]
    problems, _ = _problems(PRMConfig, {**BASE, "step_separator": ""})
    assert problems == ["step_separator: must not be empty"]


def test_a_config_for_another_method_is_refused():
    problems, _ = _problems(DPOConfig, {**BASE, "method": "kto"})
    assert problems == ["method: this trainer is 'dpo', the config says 'kto'"]


def test_unreadable_or_malformed_files_are_reported(tmp_path):
    bad = tmp_path / "run.json"
    bad.write_text('{"model": "m",, }')
    _, message = _problems(SFTConfig, bad)
    assert "not valid JSON" in message and "line 1" in message and str(bad) in message
    bad.write_text("[1, 2]")
    problems, _ = _problems(SFTConfig, bad)
    assert problems == ["the top level must be a JSON object"]
    problems, _ = _problems(SFTConfig, tmp_path / "missing.json")
    assert problems[0].startswith("cannot read the config file")


def test_the_base_config_is_not_a_method():
    assert TrainConfig.method == ""
