"""What Quorum exports, TRL trains on as it is: labels made through the queue, exported as
snapshots, then two optimizer steps of the matching TRL trainer on a tiny random model."""

import json
import uuid

import pytest

from annotation import services
from annotation.services.exports import snapshot_create
from tests.training import trl_runs


def _label_everything(project, annotator, answer):
    while (lease := services.task_next_for(annotator=annotator, project=project)) is not None:
        services.annotation_submit(
            assignment=lease, annotator=annotator, payload=answer(lease.task), client_id=uuid.uuid4()
        )


def _answer(task):
    return {
        "pairwise": {"choice": "A", "strength": 2},
        "ranking": {"order": [0, [1, 2]]},
        "rating": {"thumb": "up" if task.pk % 2 else "down"},
        "steps": {"labels": [1, -1, 0], "first_error": 1},
        "demonstration": {"text": f"A short demonstration answer number {task.pk}."},
    }[task.kind]


@pytest.fixture
def labelled(project, member, make_task):
    services.project_update(project=project, required_annotations=1)
    for kind in ("pairwise", "ranking", "rating", "steps", "demonstration"):
        for _ in range(4):
            make_task(kind, required=1)
    _label_everything(project, member(), _answer)
    return project


def _rows(snapshot):
    with open(snapshot.path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.mark.django_db
@pytest.mark.parametrize("style", ["conversational", "standard"])
def test_preference_export_trains_dpo_and_a_reward_model(labelled, tmp_path, style):
    snapshot = snapshot_create(project=labelled, format="preference", style=style)
    rows = _rows(snapshot)
    # 4 pairwise tasks + 4 rankings with 2 implied pairs each (the tie between 1 and 2 is no pair).
    assert snapshot.row_count == len(rows) == 12
    assert all(isinstance(r["margin"], float) for r in rows)
    assert trl_runs.dpo_two_steps(snapshot.path, tmp_path / "dpo").global_step == 2
    run = trl_runs.reward_two_steps(snapshot.path, tmp_path / "rm")
    assert run.global_step == 2 and "margin" in run.batch_keys and trl_runs.losses_are_finite(run)


@pytest.mark.django_db
def test_unpaired_export_trains_kto(labelled, tmp_path):
    snapshot = snapshot_create(project=labelled, format="unpaired")
    labels = [r["label"] for r in _rows(snapshot)]
    assert sorted(labels) == [False, False, True, True]
    assert trl_runs.kto_two_steps(snapshot.path, tmp_path / "kto").global_step == 2


@pytest.mark.django_db
def test_sft_export_trains_sft(labelled, tmp_path):
    snapshot = snapshot_create(project=labelled, format="sft")
    assert snapshot.row_count == 4
    assert trl_runs.sft_two_steps(snapshot.path, tmp_path / "sft").global_step == 2


@pytest.mark.django_db
def test_stepwise_export_loads_as_stepwise_supervision(labelled, tmp_path):
    snapshot = snapshot_create(project=labelled, format="stepwise", style="standard")
    dataset = trl_runs.load_stepwise(snapshot.path, cache_dir=tmp_path / "cache")
    assert len(dataset) == 4
    # +1 -> true, -1 -> false, 0 -> true (a neutral step is not an error).
    assert dataset[0]["labels"] == [True, False, True]


@pytest.mark.django_db
def test_pairs_without_stated_strengths_train_a_reward_model_without_a_margin(project, member, make_task, tmp_path):
    # No strength given: no margin column, so RewardTrainer's loss is plain -log σ(r_c − r_r), not shifted by 1.
    services.project_update(project=project, required_annotations=1)
    for _ in range(4):
        make_task("pairwise", required=1)
    _label_everything(project, member(), lambda task: {"choice": "A"})
    snapshot = snapshot_create(project=project, format="preference", style="standard")
    rows = _rows(snapshot)
    assert len(rows) == 4 and not any("margin" in r for r in rows)
    run = trl_runs.reward_two_steps(snapshot.path, tmp_path / "rm")
    assert run.global_step == 2 and "margin" not in run.batch_keys and trl_runs.losses_are_finite(run)
