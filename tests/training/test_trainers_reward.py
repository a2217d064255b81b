"""Reward models learn a separable preference, and ensembles report their members' mean, spread and disagreement."""

import json
import os
import shutil
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers/datasets are imported

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

from tests.support.snapshots import separable_preference_rows, write_jsonl  # noqa: E402
from training.trainers import reward  # noqa: E402
from training.trainers.scoring import RewardScorer, is_ensemble, member_dirs  # noqa: E402


# peft reads `model.is_gradient_checkpointing`, which transformers 5.23 deprecates; not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
    pytest.mark.usefixtures("offline_single_thread"),
]


def _config(model, data, out, **extra):
    return {
        "model": str(model),
        "data": str(data),
        "output_dir": str(out),
        "batch_size": 8,
        "learning_rate": 3e-3,
        "max_length": 128,
        "num_threads": 1,
        "metrics_stdout": False,
        "eval_fraction": 0.25,
        **extra,
    }


def test_reward_model_learns_a_separable_preference_well_above_chance(tiny_model, tmp_path):
    # The chosen response names "Paris" where the rejected one names another city; nothing else differs.
    data = write_jsonl(tmp_path / "preference.jsonl", separable_preference_rows(64))
    result = reward.train(_config(tiny_model, data, tmp_path / "run", max_steps=20, save_steps=20))
    evaluation = result.evaluation
    assert evaluation["pairs"] == 16
    assert evaluation["accuracy"] >= 0.9, evaluation
    assert evaluation["accuracy_ci95"][0] > 0.6  # the Wilson interval excludes chance
    assert evaluation["mean_margin"] > 0
    assert evaluation["scores"]["chosen"]["mean"] > evaluation["scores"]["rejected"]["mean"]
    # The filler is shared, so length tells nothing here.
    assert evaluation["length"]["chosen_is_longer"] == pytest.approx(0.0, abs=0.2)
    assert result.final_metrics["eval/accuracy"] == evaluation["accuracy"]


def test_ensemble_gives_every_members_scores_and_disagreement_per_pair(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "preference.jsonl", separable_preference_rows(24))
    out = tmp_path / "run"
    result = reward.train(_config(tiny_model, data, out, max_steps=2, save_steps=2, ensemble_size=2))
    assert result.status == "succeeded" and result.steps == 4
    assert is_ensemble(out)
    assert [d.name for d in member_dirs(out)] == ["member-0", "member-1"]
    for directory in member_dirs(out):
        assert AutoModelForSequenceClassification.from_pretrained(directory).config.num_labels == 1
    ensemble = result.evaluation["ensemble"]
    assert ensemble["members"] == 2 and len(ensemble["member_accuracy"]) == 2
    assert len(ensemble["per_pair"]) == result.evaluation["pairs"] == 6
    assert all({"margin_mean", "margin_std", "agreement"} <= set(p) for p in ensemble["per_pair"])
    # Different seeds give different members.
    scorer = RewardScorer(out)
    scores = scorer.score([[{"role": "user", "content": "Hi?"}]], ["Paris is nice."])
    assert scores.shape == (2, 1) and scores[0, 0] != scores[1, 0]
    assert RewardScorer.reduce(scores, "min") == scores.min(0).values
    assert RewardScorer.reduce(scores, "mean", uncertainty_penalty=1.0) == pytest.approx(
        float(scores.mean() - scores.std())
    )
    names = Counter(line["name"] for line in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()))
    assert names["member0/loss"] == 2 and names["member1/loss"] == 2


def test_relaunched_ensemble_skips_the_members_it_finished(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "preference.jsonl", separable_preference_rows(16))
    out = tmp_path / "run"
    config = _config(tiny_model, data, out, max_steps=2, save_steps=1, ensemble_size=2, ensemble_mode="folds")
    reward.train(config)
    member0 = (out / "member-0" / "model.safetensors").stat().st_mtime_ns
    # As if the run had been killed while saving the second member.
    (out / "result.json").unlink()
    (out / "checkpoints" / "member1" / "completed.json").unlink()
    shutil.rmtree(out / "member-1")
    shutil.rmtree(out / "checkpoints" / "member1" / "checkpoint-2")

    result = reward.train(config)
    assert result.status == "succeeded" and result.steps == 4
    assert (out / "member-0" / "model.safetensors").stat().st_mtime_ns == member0  # not trained again
    assert (out / "member-1" / "model.safetensors").exists()
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["name"] == "member0/loss"] == [1, 2]
    assert [x["step"] for x in lines if x["name"] == "member1/loss"] == [1, 2]  # step 2 rerun, not duplicated


def test_reward_model_with_lora_trains_its_head_and_saves_a_merged_model(tiny_model, tmp_path):
    from transformers import set_seed

    data = write_jsonl(tmp_path / "preference.jsonl", separable_preference_rows(8))
    out = tmp_path / "run"
    result = reward.train(_config(tiny_model, data, out, max_steps=2, lora={"r": 4, "alpha": 8}, eval_fraction=0.0))
    assert result.status == "succeeded" and result.evaluation == {"data": result.evaluation["data"]}
    assert not (out / "adapter_config.json").exists()
    set_seed(0)  # the head the run started from
    initial = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    trained = AutoModelForSequenceClassification.from_pretrained(out)
    assert not torch.equal(initial.score.weight, trained.score.weight)  # the head is trained in full
    assert not torch.equal(initial.model.layers[0].self_attn.q_proj.weight, trained.model.layers[0].self_attn.q_proj.weight)
    assert torch.equal(initial.model.embed_tokens.weight, trained.model.embed_tokens.weight)  # no adapter there


def test_an_encoder_without_an_eos_token_trains_as_a_reward_model(tmp_path):
    # The packaged all-MiniLM-L6-v2 names [SEP] but no EOS token, which TRL appends to every text.
    from training.packaged import minilm_dir

    data = write_jsonl(tmp_path / "preference.jsonl", separable_preference_rows(16))
    result = reward.train(_config(minilm_dir(), data, tmp_path / "run", max_steps=2, save_steps=2, batch_size=4))
    assert result.evaluation["pairs"] == 4
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run")
    assert model.config.num_labels == 1
