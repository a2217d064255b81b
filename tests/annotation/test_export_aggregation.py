"""Exports: reviewer adjudication wins, and reliability-weighted (Dawid-Skene) aggregation."""

import io
import json
import random

import pytest
from django.core.management import call_command

from annotation import services
from annotation.models import Annotation
from annotation.payloads import to_shown
from annotation.services.exports import snapshot_create
from common.errors import Invalid

pytestmark = pytest.mark.django_db


def _export(project, fmt, tmp_path, name, **kwargs):
    snapshot = snapshot_create(project=project, format=fmt, out_path=tmp_path / name, **kwargs)
    with open(snapshot.path, encoding="utf-8") as f:
        return snapshot, [json.loads(line) for line in f]


def _texts(task):
    return [tr.response.content for tr in task.task_responses.all()]


def _label(task, author, payload, **extra):
    return Annotation.objects.create(
        task=task, kind=task.kind, author=author, payload=payload, shown_order=list(range(task.n_responses)), **extra
    )


def test_a_reviewer_correction_decides_the_task_alone(project, member, make_task, tmp_path):
    reviewer = member("reviewer")
    task = make_task(required=3)
    untouched = make_task(required=2)
    votes = [_label(task, member(), {"choice": c, "strength": 2}) for c in ("A", "A", "B")]
    _label(untouched, member(), {"choice": "A", "strength": 1})
    _label(untouched, member(), {"choice": "A", "strength": 3})
    texts = _texts(task)

    _, rows = _export(project, "preference", tmp_path, "before.jsonl", style="standard")
    assert {r["chosen"] for r in rows if r["prompt"] == task.prompt.messages[0]["content"]} == {texts[0]}

    services.annotation_revise(
        annotation=votes[0], author=reviewer, payload=to_shown("pairwise", {"choice": "B", "strength": 3}, votes[0].shown_order), as_reviewer=True
    )
    # Two of the three current votes still say A; the reviewer's B wins.
    for aggregation in ("majority", "dawid_skene"):
        snapshot, rows = _export(project, "preference", tmp_path, f"after-{aggregation}.jsonl", style="standard", aggregation=aggregation)
        mine = [r for r in rows if r["prompt"] == task.prompt.messages[0]["content"]]
        assert [(r["chosen"], r["rejected"], r["margin"]) for r in mine] == [(texts[1], texts[0], 3.0)]
        assert len(rows) == 2  # the untouched task keeps its own majority
        assert "Reviewer adjudication wins" in snapshot.spec["aggregation"]

    snapshot, rows = _export(project, "unpaired", tmp_path, "unpaired.jsonl", style="standard", pairwise_as_unpaired=True)
    assert {(r["completion"], r["label"]) for r in rows} >= {(texts[1], True), (texts[0], False)}
    assert "Reviewer adjudication wins" in snapshot.spec["aggregation"]


def test_a_reviewer_correction_decides_stepwise_and_thumbs(project, member, make_task, tmp_path):
    steps = make_task("steps", required=3)
    votes = [_label(steps, member(), {"labels": [1, 1, 1]}) for _ in range(2)]
    services.annotation_revise(
        annotation=votes[0], author=member("reviewer"), payload={"labels": [1, -1, -1]}, as_reviewer=True
    )
    snapshot, rows = _export(project, "stepwise", tmp_path, "steps.jsonl")
    assert [r["labels"] for r in rows] == [[True, False, False]]
    assert "Reviewer adjudication wins" in snapshot.spec["aggregation"]

    rating = make_task("rating", required=3)
    thumbs = [_label(rating, member(), {"thumb": "up"}) for _ in range(3)]
    services.annotation_revise(annotation=thumbs[0], author=member("reviewer"), payload={"thumb": "down"}, as_reviewer=True)
    _, rows = _export(project, "unpaired", tmp_path, "thumbs.jsonl")
    assert [r["label"] for r in rows] == [False]


def _simulated(project, member, make_task, n_tasks=60, seed=3):
    """Four raters: three right 80% of the time, one answering A or B at random. -> (task, truth) list."""
    rng = random.Random(seed)
    good = [member() for _ in range(3)]
    noisy = member()
    truth = []
    for _ in range(n_tasks):
        task = make_task(required=4)
        answer = rng.choice("AB")
        other = "B" if answer == "A" else "A"
        for rater in good:
            _label(task, rater, {"choice": answer if rng.random() < 0.8 else other, "strength": 2})
        _label(task, noisy, {"choice": rng.choice("AB"), "strength": rng.choice([1, 2, 3])})
        truth.append((task, answer))
    return truth


def _correct(rows, truth):
    chosen = {r["prompt"]: r["chosen"] for r in rows}
    hits = 0
    for task, answer in truth:
        texts = _texts(task)
        if chosen.get(task.prompt.messages[0]["content"]) == texts[0 if answer == "A" else 1]:
            hits += 1
    return hits


def test_dawid_skene_matches_the_truth_at_least_as_well_as_majority(project, member, make_task, tmp_path):
    truth = _simulated(project, member, make_task)
    majority, m_rows = _export(project, "preference", tmp_path, "majority.jsonl", style="standard")
    weighted, d_rows = _export(project, "preference", tmp_path, "ds.jsonl", style="standard", aggregation="dawid_skene")
    assert _correct(d_rows, truth) >= _correct(m_rows, truth)
    assert _correct(d_rows, truth) >= 0.75 * len(truth)
    assert all(0.0 <= r["margin"] <= 3.0 for r in d_rows)
    assert majority.spec["aggregation_method"] == "majority" and "majority" in majority.spec["aggregation"]
    assert weighted.spec["aggregation_method"] == "dawid_skene" and "Dawid-Skene" in weighted.spec["aggregation"]
    assert "Dawid-Skene" in weighted.spec["labels"]


def test_unknown_aggregation_is_refused(project, tmp_path):
    with pytest.raises(Invalid):
        snapshot_create(project=project, format="preference", out_path=tmp_path / "x.jsonl", aggregation="mean")


def test_export_command_and_api_take_the_aggregation(project, member, make_task, tmp_path, client):
    truth = _simulated(project, member, make_task, n_tasks=10)
    out = io.StringIO()
    call_command(
        "export_dataset", "--project", project.slug, "--format", "preference", "--aggregation", "dawid_skene",
        "--out", str(tmp_path / "cmd.jsonl"), stdout=out,
    )  # fmt: skip
    from annotation.models import DatasetSnapshot

    snapshot = DatasetSnapshot.objects.get(path=str((tmp_path / "cmd.jsonl").resolve()))
    assert snapshot.spec["aggregation_method"] == "dawid_skene"
    assert truth

    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="owner"))
    response = client.post(
        f"/api/v1/projects/{project.slug}/snapshots/",
        {"format": "preference", "aggregation": "dawid_skene"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    assert DatasetSnapshot.objects.latest("id").spec["aggregation_method"] == "dawid_skene"
    bad = client.post(
        f"/api/v1/projects/{project.slug}/snapshots/", {"format": "preference", "aggregation": "mean"}, content_type="application/json"
    )
    assert bad.status_code == 400

