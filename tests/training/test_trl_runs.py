"""Files in each Quorum export format train for two steps with the stock TRL 1.16 trainers, unchanged."""

import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers/datasets are imported

import pytest  # noqa: E402

from tests.support import snapshots  # noqa: E402
from tests.training.trl_runs import (  # noqa: E402
    DataRejected,
    dpo_two_steps,
    kto_two_steps,
    load_stepwise,
    reward_two_steps,
    sft_two_steps,
)

# TRL's DPO and KTO read `model.is_gradient_checkpointing`, which transformers 5.23 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

QUESTIONS = snapshots.QUESTIONS[:6]


def _user(text):
    return [{"role": "user", "content": text}]


def _assistant(text):
    return [{"role": "assistant", "content": text}]


def _conversational(question, chosen, rejected, **extra):
    return {"prompt": _user(question), "chosen": _assistant(chosen), "rejected": _assistant(rejected), **extra}


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # The hub libraries read these at import; patch the live values too, in case another test imported them first.
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


def _ran_two_finite_steps(run):
    assert run.global_step == 2
    assert len(run.losses) == 2
    assert all(math.isfinite(loss) for loss in run.losses), run.losses


def test_dpo_trains_on_conversational_preferences_with_margin(tmp_path):
    path = _write(
        tmp_path / "preference.jsonl",
        [_conversational(q, c, r, margin=2.0) for q, c, r in QUESTIONS],
    )
    run = dpo_two_steps(path, tmp_path)
    _ran_two_finite_steps(run)
    assert run.rows == len(QUESTIONS)


def test_dpo_trains_on_standard_preferences(tmp_path):
    path = _write(tmp_path / "preference.jsonl", [{"prompt": q, "chosen": c, "rejected": r} for q, c, r in QUESTIONS])
    _ran_two_finite_steps(dpo_two_steps(path, tmp_path))


def test_reward_model_uses_the_margin_column(tmp_path):
    with_margin = _write(
        tmp_path / "with_margin.jsonl",
        [_conversational(q, c, r, margin=2.0) for q, c, r in QUESTIONS],
    )
    without_margin = _write(
        tmp_path / "without_margin.jsonl",
        [_conversational(q, c, r) for q, c, r in QUESTIONS],
    )

    run = reward_two_steps(with_margin, tmp_path / "a")
    baseline = reward_two_steps(without_margin, tmp_path / "b")

    _ran_two_finite_steps(run)
    _ran_two_finite_steps(baseline)
    assert "margin" in run.batch_keys
    assert "margin" not in baseline.batch_keys
    # An untrained scorer gives r_chosen ≈ r_rejected, so the loss starts near -log σ(−m): ~2.13 with m = 2 and
    # ~0.69 (log 2) without a margin.
    assert run.losses[0] == pytest.approx(-math.log(1 / (1 + math.exp(2.0))), abs=0.1)
    assert baseline.losses[0] == pytest.approx(math.log(2), abs=0.1)


def test_reward_model_trains_on_standard_preferences(tmp_path):
    path = _write(
        tmp_path / "preference.jsonl",
        [{"prompt": q, "chosen": c, "rejected": r, "margin": 1.0} for q, c, r in QUESTIONS],
    )
    run = reward_two_steps(path, tmp_path)
    _ran_two_finite_steps(run)
    assert "margin" in run.batch_keys


def test_reward_model_refuses_a_file_where_some_margins_are_null(tmp_path):
    rows = [{"prompt": q, "chosen": c, "rejected": r, "margin": 1.0} for q, c, r in QUESTIONS]
    rows[4]["margin"] = None
    with pytest.raises(DataRejected, match="margin"):
        reward_two_steps(_write(tmp_path / "preference.jsonl", rows), tmp_path)


def test_kto_trains_on_conversational_unpaired_feedback(tmp_path):
    rows = []
    for q, c, r in QUESTIONS:
        rows.append({"prompt": _user(q), "completion": _assistant(c), "label": True})
        rows.append({"prompt": _user(q), "completion": _assistant(r), "label": False})
    _ran_two_finite_steps(kto_two_steps(_write(tmp_path / "unpaired.jsonl", rows), tmp_path))


def test_kto_trains_on_standard_unpaired_feedback(tmp_path):
    rows = [
        {"prompt": q, "completion": c if i % 2 else r, "label": bool(i % 2)} for i, (q, c, r) in enumerate(QUESTIONS)
    ]
    _ran_two_finite_steps(kto_two_steps(_write(tmp_path / "unpaired.jsonl", rows), tmp_path))


def test_kto_rejects_labels_that_are_not_booleans(tmp_path):
    rows = [{"prompt": q, "completion": c, "label": 1} for q, c, _ in QUESTIONS]
    with pytest.raises(DataRejected, match="label"):
        kto_two_steps(_write(tmp_path / "unpaired.jsonl", rows), tmp_path)


def test_sft_trains_on_messages(tmp_path):
    rows = [{"messages": _user(q) + _assistant(c)} for q, c, _ in QUESTIONS]
    rows[0]["messages"] = [{"role": "system", "content": "You are a helpful assistant."}] + rows[0]["messages"]
    _ran_two_finite_steps(sft_two_steps(_write(tmp_path / "sft.jsonl", rows), tmp_path))


def test_sft_refuses_a_conversation_without_an_assistant_turn(tmp_path):
    rows = [{"messages": _user(q) + _assistant(c)} for q, c, _ in QUESTIONS]
    rows[3] = {"messages": _user("Hello?")}
    with pytest.raises(RuntimeError, match="no assistant tokens"):
        sft_two_steps(_write(tmp_path / "sft.jsonl", rows), tmp_path)


def test_runners_refuse_a_file_in_the_wrong_format(tmp_path):
    sft_file = _write(tmp_path / "sft.jsonl", [{"messages": _user(q) + _assistant(c)} for q, c, _ in QUESTIONS])
    with pytest.raises(DataRejected, match="chosen"):
        dpo_two_steps(sft_file, tmp_path)


def test_stepwise_file_loads_with_matching_labels(tmp_path):
    rows = [
        {"prompt": q, "completions": ["Step 1. Read the question.", f"Step 2. {c}"], "labels": [True, i % 2 == 0]}
        for i, (q, c, _) in enumerate(QUESTIONS)
    ]
    dataset = load_stepwise(_write(tmp_path / "stepwise.jsonl", rows), cache_dir=tmp_path / "cache")
    assert len(dataset) == len(QUESTIONS)
    assert dataset[1]["labels"] == [True, False]
    assert dataset[0]["completions"] == ["Step 1. Read the question.", "Step 2. Two plus two is four."]


def test_stepwise_file_with_a_label_missing_is_refused(tmp_path):
    rows = [{"prompt": q, "completions": ["Step 1.", "Step 2."], "labels": [True, False]} for q, _, _ in QUESTIONS]
    rows[2]["labels"] = [True]
    with pytest.raises(DataRejected, match="2 completions but 1 labels"):
        load_stepwise(_write(tmp_path / "stepwise.jsonl", rows), cache_dir=tmp_path / "cache")
