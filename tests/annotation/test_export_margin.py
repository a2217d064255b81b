"""Preference exports carry a margin only from stated strengths: TRL's RewardTrainer subtracts the margin
in its loss, so a constant one (1.0 for every unstated vote) would silently change what the model learns."""

import io
import json

import pytest

from annotation.models import Annotation
from annotation.services.cards import card_path
from annotation.services.exports import snapshot_create
from annotation.services.imports import data_import
from tests.support.records import HH

pytestmark = pytest.mark.django_db


def _import(project, rows):
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    return data_import(project=project, stream=io.BytesIO(data), filename="train.jsonl")


def _export(project, tmp_path, name="prefs.jsonl", **kwargs):
    snapshot = snapshot_create(project=project, format="preference", out_path=tmp_path / name, style="standard", **kwargs)
    with open(snapshot.path, encoding="utf-8") as f:
        return snapshot, [json.loads(line) for line in f]


def _label(task, author, payload):
    return Annotation.objects.create(task=task, kind=task.kind, author=author, payload=payload, shown_order=[0, 1])


@pytest.mark.parametrize("aggregation", ["majority", "dawid_skene"])
def test_hh_rlhf_pairs_without_a_strength_export_without_a_margin_column(project, tmp_path, aggregation):
    _import(project, HH)
    assert {a.payload["strength"] for a in Annotation.objects.all()} == {None}
    snapshot, rows = _export(project, tmp_path, aggregation=aggregation)
    assert len(rows) == 2 and all(set(r) == {"prompt", "chosen", "rejected"} for r in rows)
    assert snapshot.spec["columns"] == ["prompt", "chosen", "rejected"]
    assert "no row has a margin" in snapshot.spec["aggregation"]
    assert "| `margin` |" not in card_path(snapshot).read_text()


def test_stated_margins_are_kept(project, tmp_path):
    _import(project, [{**HH[0], "margin": 2.0}, {**HH[1], "margin": 0.5}])
    snapshot, rows = _export(project, tmp_path)
    assert sorted(r["margin"] for r in rows) == [0.5, 2.0] and "margin" in snapshot.spec["columns"]


def test_one_vote_without_a_strength_leaves_the_margin_out_of_every_row(project, member, make_task, tmp_path):
    stated, unstated = make_task(required=1), make_task(required=1)
    _label(stated, member(), {"choice": "A", "strength": 3})
    _label(unstated, member(), {"choice": "B", "strength": None})
    _, rows = _export(project, tmp_path)
    assert len(rows) == 2 and not any("margin" in r for r in rows)

    _label(unstated, member(), {"choice": "B", "strength": 2})
    Annotation.objects.filter(task=unstated, payload__strength=None).delete()
    _, rows = _export(project, tmp_path, name="stated.jsonl")
    assert sorted(r["margin"] for r in rows) == [2.0, 3.0]


def test_a_submission_without_a_strength_stores_none(project, member, make_task):
    from annotation import services
    import uuid

    task = make_task(required=1)
    user = member()
    lease = services.task_next_for(annotator=user, project=project)
    annotation = services.annotation_submit(assignment=lease, annotator=user, payload={"choice": "A"}, client_id=uuid.uuid4())
    assert annotation.task_id == task.pk and annotation.payload["strength"] is None


def test_reimporting_a_file_imported_when_strengths_defaulted_to_one_adds_nothing(project):
    _import(project, HH)
    Annotation.objects.update(payload={"choice": "A", "strength": 1})  # as stored before
    report = _import(project, HH)
    assert report.annotations_created == 0 and report.annotations_existing == 2
