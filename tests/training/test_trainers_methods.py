"""Every TRL-backed method trains a few steps on a small file in Quorum's export format, and leaves a final model
and checkpoints that load back, metrics as JSON lines and a result.json."""

import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers/datasets are imported

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from tests.support.snapshots import preference_rows, sft_rows, unpaired_rows, write_jsonl  # noqa: E402
from training.trainers import dpo, kto, orpo, reward, sft  # noqa: E402

# TRL's DPO and KTO read `model.is_gradient_checkpointing`, which transformers 5.23 deprecates; not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
    pytest.mark.usefixtures("offline_single_thread"),
]

STEPS = 2


def _config(model, data, out, **extra):
    return {
        "model": str(model),
        "data": str(data),
        "output_dir": str(out),
        "max_steps": STEPS,
        "batch_size": 2,
        "save_steps": 1,
        "learning_rate": 1e-3,
        "max_length": 128,
        "num_threads": 1,
        "metrics_stdout": False,
        **extra,
    }


def _check_run(result, out, auto_cls, method):
    assert result.status == "succeeded", result
    assert result.steps == STEPS
    saved = json.loads((out / "result.json").read_text())
    assert {"status", "method", "steps", "final_metrics", "evaluation", "output_dir"} <= set(saved)
    assert (saved["status"], saved["method"], saved["steps"]) == ("succeeded", method, STEPS)
    assert saved["final_metrics"]["loss"] == pytest.approx(result.final_metrics["loss"])

    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines and all(set(line) == {"step", "name", "value"} for line in lines)
    losses = [line for line in lines if line["name"] == "loss"]
    assert [line["step"] for line in losses] == list(range(1, STEPS + 1))
    assert all(math.isfinite(line["value"]) for line in losses)

    final = auto_cls.from_pretrained(out)
    assert AutoTokenizer.from_pretrained(out).pad_token is not None
    checkpoint = out / "checkpoints" / f"checkpoint-{STEPS}"
    assert result.checkpoint == str(checkpoint)
    restored = auto_cls.from_pretrained(checkpoint)
    for (name, a), (_, b) in zip(final.state_dict().items(), restored.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    return saved


def test_sft_trains_on_messages_and_learns_only_assistant_turns(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows())
    out = tmp_path / "run"
    result = sft.train(_config(tiny_model, data, out))
    saved = _check_run(result, out, AutoModelForCausalLM, "sft")
    assert saved["evaluation"]["loss_on"] == "assistant"  # the tiny template marks assistant turns


def test_sft_without_template_markers_learns_the_last_turn(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows())
    out = tmp_path / "run"
    result = sft.train(_config(tiny_model, data, out, loss_on="last_turn", eval_fraction=0.25))
    saved = _check_run(result, out, AutoModelForCausalLM, "sft")
    assert math.isfinite(saved["evaluation"]["eval_loss"])


def test_reward_model_trains_on_standard_preferences_with_null_margins(tiny_model, tmp_path):
    rows = preference_rows(conversational=False, margin=2.0)
    rows[1]["margin"] = None  # TRL's collator would crash on this
    data = write_jsonl(tmp_path / "preference.jsonl", rows)
    out = tmp_path / "run"
    result = reward.train(_config(tiny_model, data, out, eval_fraction=0.25))
    saved = _check_run(result, out, AutoModelForSequenceClassification, "reward")
    evaluation = saved["evaluation"]
    assert evaluation["data"]["margin"] == "used" and evaluation["data"]["null_margins_as_zero"] == 1
    assert evaluation["pairs"] == 2
    assert 0 <= evaluation["accuracy_ci95"][0] <= evaluation["accuracy"] <= evaluation["accuracy_ci95"][1] <= 1
    assert set(evaluation["length"]) >= {"pearson", "spearman", "longer_scores_higher"}
    assert sum(evaluation["scores"]["histogram_chosen"]["counts"]) == 2
    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_labels == 1


def test_dpo_trains_on_conversational_preferences(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "preference.jsonl", preference_rows(conversational=True))
    out = tmp_path / "run"
    result = dpo.train(_config(tiny_model, data, out, beta=0.1))
    _check_run(result, out, AutoModelForCausalLM, "dpo")
    assert "rewards/accuracies" in result.final_metrics


def test_dpo_with_lora_saves_a_merged_model(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "preference.jsonl", preference_rows(conversational=False))
    out = tmp_path / "run"
    result = dpo.train(_config(tiny_model, data, out, lora={"r": 4, "alpha": 8, "dropout": 0.0}))
    assert result.status == "succeeded" and result.steps == STEPS
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    changed = [n for (n, a), (_, b) in zip(merged.state_dict().items(), base.state_dict().items()) if not torch.equal(a, b)]
    assert changed and all("proj" in n for n in changed)  # only the adapted linear layers moved
    assert (out / "checkpoints" / f"checkpoint-{STEPS}" / "adapter_config.json").exists()


def test_kto_trains_on_imbalanced_thumbs_with_balancing_weights(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "unpaired.jsonl", unpaired_rows(conversational=False))
    out = tmp_path / "run"
    result = kto.train(_config(tiny_model, data, out))
    saved = _check_run(result, out, AutoModelForCausalLM, "kto")
    weights = saved["evaluation"]["data"]
    assert (weights["desirable"], weights["undesirable"]) == (8, 4)
    assert weights["desirable_weight"] * 8 == pytest.approx(weights["undesirable_weight"] * 4)


def test_orpo_trains_on_conversational_preferences(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "preference.jsonl", preference_rows(conversational=True))
    out = tmp_path / "run"
    result = orpo.train(_config(tiny_model, data, out, beta=0.1))
    _check_run(result, out, AutoModelForCausalLM, "orpo")


def test_a_snapshot_in_the_wrong_format_is_refused_before_training(tiny_model, tmp_path):
    from training.trainers.data import DataError

    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows())
    with pytest.raises(DataError, match="not a preference snapshot: missing column"):
        dpo.train(_config(tiny_model, data, tmp_path / "run"))
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["status"] == "failed" and "DataError" in saved["error"]


def test_a_relaunch_of_a_finished_run_returns_its_result(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows())
    config = _config(tiny_model, data, tmp_path / "run")
    first = sft.train(config)
    again = sft.train(config)
    assert again.status == "succeeded" and again.runtime_s == first.runtime_s
