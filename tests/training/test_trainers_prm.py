"""Process reward models train on stepwise snapshots (true/false or −1/0/+1 labels) and are compared with an outcome
reward model by best-of-N selection on held-out problems."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers/datasets are imported

import pytest  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification  # noqa: E402

from tests.support.snapshots import stepwise_rows, write_jsonl  # noqa: E402
from tests.support.tiny import tiny_tokenizer  # noqa: E402
from training.trainers import prm  # noqa: E402
from training.trainers.data import DataError  # noqa: E402

pytestmark = pytest.mark.usefixtures("offline_single_thread")


def _config(model, data, out, **extra):
    return {
        "model": str(model),
        "data": str(data),
        "output_dir": str(out),
        "batch_size": 4,
        "learning_rate": 3e-3,
        "max_length": 128,
        "num_threads": 1,
        "metrics_stdout": False,
        "eval_fraction": 0.34,
        **extra,
    }


def test_prm_learns_step_labels_and_is_compared_with_an_orm_by_best_of_n(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "stepwise.jsonl", stepwise_rows(problems=12, candidates=3))
    out = tmp_path / "run"
    result = prm.train(_config(tiny_model, data, out, max_steps=25, save_steps=25))
    assert result.status == "succeeded" and result.steps == 50  # 25 for the PRM, 25 for the ORM

    model = AutoModelForTokenClassification.from_pretrained(out)
    assert model.config.id2label == {0: "incorrect", 1: "correct"}
    assert AutoModelForTokenClassification.from_pretrained(out / "checkpoints" / "checkpoint-25").config.num_labels == 2
    assert AutoModelForSequenceClassification.from_pretrained(out / "orm").config.num_labels == 1

    evaluation = result.evaluation
    assert evaluation["data"]["label_mode"] == "binary"
    assert evaluation["step"]["accuracy"] >= 0.8, evaluation["step"]
    best = evaluation["best_of_n"]
    assert best["problems"] == 4 and best["candidates_mean"] == 3
    assert 0 <= best["random"] <= best["oracle"] <= 1
    for name in ("prm", "orm"):
        assert 0 <= best[name]["accuracy"] <= 1 and len(best[name]["accuracy_ci95"]) == 2
    assert best["prm"]["accuracy"] >= best["random"]
    assert evaluation["scores"]["prm_correct"]["mean"] > evaluation["scores"]["prm_incorrect"]["mean"]
    assert "orm/loss" in result.final_metrics and "eval/best_of_n_prm" in result.final_metrics


def test_integer_labels_keep_their_three_values(tiny_model, tmp_path):
    rows = stepwise_rows(problems=4, candidates=2, ints=True)
    assert any(0 in row["labels"] for row in rows)
    data = write_jsonl(tmp_path / "stepwise.jsonl", rows)
    out = tmp_path / "run"
    result = prm.train(_config(tiny_model, data, out, max_steps=2, save_steps=2, compare_with_orm=False))
    assert result.status == "succeeded" and result.steps == 2
    assert AutoModelForTokenClassification.from_pretrained(out).config.id2label == {0: "bad", 1: "neutral", 2: "good"}
    assert result.evaluation["data"]["label_mode"] == "ternary"
    assert result.evaluation["best_of_n"]["orm"] is None

    binary = prm.train(
        _config(tiny_model, data, tmp_path / "binary", max_steps=1, label_mode="binary", compare_with_orm=False)
    )
    assert AutoModelForTokenClassification.from_pretrained(tmp_path / "binary").config.num_labels == 2
    assert binary.evaluation["data"]["label_mode"] == "binary"


def test_labels_are_placed_on_the_last_token_of_each_step_and_overflowing_steps_are_left_out():
    tokenizer = tiny_tokenizer()
    steps = ["Step 1. Read the question.", "Step 2. Four."]
    ids, positions = prm.encode_steps(
        tokenizer, "What is two plus two?", steps, separator="\n", max_length=512, mode="chat", join_separator="\n"
    )
    assert len(positions) == 2
    assert tokenizer.decode(ids[: positions[0] + 1]).endswith("Step 1. Read the question.\n")
    assert tokenizer.decode(ids[positions[0] + 1 : positions[1] + 1]) == "Step 2. Four.\n"
    short, cut = prm.encode_steps(
        tokenizer, "What is two plus two?", steps, separator="\n", max_length=positions[0] + 2, mode="chat",
        join_separator="\n",
    )
    assert cut == positions[:1] and len(short) == positions[0] + 1
    assert prm.aggregate([0.9, 0.2, 0.8], "min") == 0.2
    assert prm.aggregate([0.5, 0.5], "prod") == 0.25


def test_malformed_step_labels_are_refused(tiny_model, tmp_path):
    rows = stepwise_rows(problems=2, candidates=2)
    rows[1]["labels"] = rows[1]["labels"][:1]
    data = write_jsonl(tmp_path / "stepwise.jsonl", rows)
    with pytest.raises(DataError, match="row 1: .* steps but 1 labels"):
        prm.train(_config(tiny_model, data, tmp_path / "run", max_steps=1))
    rows = stepwise_rows(problems=2, candidates=2)
    rows[0]["labels"] = [2] * len(rows[0]["labels"])
    data = write_jsonl(tmp_path / "ints.jsonl", rows[:1])
    with pytest.raises(DataError, match="true/false or -1, 0, 1"):
        prm.train(_config(tiny_model, data, tmp_path / "run2", max_steps=1))
