"""Dataset cards: every snapshot gets a README.md beside its data file that states what the snapshot holds (rows,
annotations by guideline and constitution version, sha256, aggregation rule), and `datasets` loads the snapshot's
directory as it is."""

import hashlib
import io
import uuid
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Annotation, AnnotationSource, Role
from annotation.services.cards import card_path, snapshot_card
from annotation.services.exports import snapshot_create

PRINCIPLE = {
    "key": "harmless",
    "name": "Harmless",
    "critique_request": "Is it harmful?",
    "revision_request": "Make it harmless.",
    "comparison_question": "Which response is less harmful?",
}


def _header(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def _load(directory: Path, tmp_path: Path):
    import datasets

    return datasets.load_dataset(str(directory), split="train", cache_dir=str(tmp_path / "hf-cache"))


def _answer(project, annotator, choice):
    assignment = services.task_next_for(annotator=annotator, project=project)
    return services.annotation_submit(
        assignment=assignment, annotator=annotator, payload={"choice": choice, "strength": 2}, client_id=uuid.uuid4()
    )


@pytest.fixture
def labelled(project, member, make_task, settings, tmp_path):
    """Six pairwise tasks, two annotators each: three under guideline 1, three under guideline 2 (constitution 1
    throughout), plus one AI annotation."""
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    admin = member(Role.ADMIN)
    services.guideline_version_create(project=project, body="# Prefer the correct answer", created_by=admin)
    services.constitution_version_create(project=project, principles=[PRINCIPLE], created_by=admin)
    first, second = member(Role.ANNOTATOR), member(Role.ANNOTATOR)
    tasks = [make_task("pairwise") for _ in range(6)]
    for i in range(3):
        _answer(project, first, "A")
        _answer(project, second, "A" if i else "B")
    services.guideline_version_create(project=project, body="# Prefer the correct, kind answer", created_by=admin)
    project.refresh_from_db()
    for _ in range(3):
        _answer(project, first, "B")
        _answer(project, second, "B")
    Annotation.objects.create(
        task=tasks[5], kind="pairwise", source=AnnotationSource.AI, payload={"choice": "B", "strength": 1},
        details={"judge": "tiny"},
    )  # fmt: skip
    return project


def test_the_card_states_the_rows_versions_and_hash_the_snapshot_holds(labelled, tmp_path):
    snapshot = snapshot_create(project=labelled, format="preference", file_format="parquet", sources=("human", "ai"))
    data = Path(snapshot.path)
    assert data.name == "data.parquet"
    card = card_path(snapshot)
    assert card == data.parent / "README.md" and card.is_file()
    text = card.read_text()
    facts = _header(text)["quorum"]

    # What the snapshot holds, counted independently of the card code.
    import pyarrow.parquet as pq

    rows = pq.read_table(data).num_rows
    assert snapshot.row_count == rows > 0
    assert facts["row_count"] == rows and f"| rows | {rows} |" in text
    assert facts["sha256"] == snapshot.sha256 == hashlib.sha256(data.read_bytes()).hexdigest()
    assert snapshot.sha256 in text
    assert facts["annotations"] == 13 and facts["annotations_by_source"] == {"ai": 1, "human": 12}
    assert facts["tasks"] == 6
    assert facts["guideline_versions"] == {0: 1, 1: 6, 2: 6}  # the AI annotation was made under no guideline
    assert facts["constitution_versions"] == {0: 1, 1: 12}
    assert "guidelines: no guideline version: 1, version 1: 6, version 2: 6" in text
    assert "1 of the annotations read came from AI raters" in text
    assert snapshot.spec["aggregation"] in text
    for column in snapshot.spec["columns"]:
        assert f"| `{column}` |" in text
    header = _header(text)
    assert header["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data.parquet"}]}]
    assert header["license"] == "other" and "dpo" in header["tags"]

    # `datasets` loads the snapshot's directory as it is, through the card's configs.
    loaded = _load(data.parent, tmp_path)
    assert loaded.num_rows == rows and loaded.column_names == snapshot.spec["columns"]


def test_human_only_card_and_a_jsonl_directory_load_too(labelled, tmp_path):
    labelled.settings = {**labelled.settings, "license": "cc-by-4.0"}
    labelled.save()
    snapshot = snapshot_create(project=labelled, format="raw", file_format="jsonl", sources=("human",))
    header = _header(card_path(snapshot).read_text())
    assert header["license"] == "cc-by-4.0"
    assert header["quorum"]["annotations_by_source"] == {"human": 12}
    assert header["quorum"]["guideline_versions"] == {1: 6, 2: 6}
    loaded = _load(Path(snapshot.path).parent, tmp_path)
    assert loaded.num_rows == snapshot.row_count == 12


def test_a_card_written_again_later_says_the_same(labelled, make_user):
    snapshot = snapshot_create(project=labelled, format="preference")
    before = card_path(snapshot).read_text()
    # Later revisions and new annotations do not change what the snapshot held.
    annotation = Annotation.objects.filter(source="human").order_by("id").first()
    services.annotation_revise(annotation=annotation, author=annotation.author, payload={"choice": "tie"})
    card_path(snapshot).chmod(0o644)
    card_path(snapshot).unlink()
    assert snapshot_card(snapshot=snapshot) == before
    assert card_path(snapshot).read_text() == before  # written back beside the data


def test_card_download_endpoint(labelled, member):
    snapshot = snapshot_create(project=labelled, format="preference")
    client = APIClient()
    client.force_authenticate(member(Role.ENGINEER))
    response = client.get(f"/api/v1/projects/{labelled.slug}/snapshots/{snapshot.pk}/card/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    assert response.content.decode() == card_path(snapshot).read_text()
    missing = client.get(f"/api/v1/projects/{labelled.slug}/snapshots/{snapshot.pk + 999}/card/")
    assert missing.status_code == 404


def test_export_command_writes_a_dataset_directory(labelled, tmp_path):
    out = tmp_path / "export" / "prefs"
    stdout = io.StringIO()
    call_command("export_dataset", project=labelled.slug, format="preference", file_format="parquet", out=f"{out}/",
                 stdout=stdout)  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "data.parquet"]
    assert f"card: {out / 'README.md'}" in stdout.getvalue()
    loaded = _load(out, tmp_path)
    import pyarrow.parquet as pq

    rows = pq.read_table(out / "data.parquet").num_rows
    assert loaded.num_rows == _header((out / "README.md").read_text())["quorum"]["row_count"] == rows > 0
    with pytest.raises(Exception, match="not empty"):
        call_command("export_dataset", project=labelled.slug, format="preference", out=f"{out}/")


def test_the_card_never_replaces_a_readme_that_is_not_its_own(labelled, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.md").write_text("# my notes\n")
    snapshot = snapshot_create(project=labelled, format="sft", out_path=folder / "data.jsonl")
    assert (folder / "README.md").read_text() == "# my notes\n"
    assert card_path(snapshot) == folder / "data.jsonl.README.md"
    assert _header(card_path(snapshot).read_text())["quorum"]["row_count"] == snapshot.row_count == 0


def test_cards_state_the_ai_vote_weight_and_rows_written_by_a_feedback_job(labelled):
    from annotation.services.exports import snapshot_from_rows

    weighted = snapshot_create(project=labelled, format="preference", sources=("human", "ai"), ai_weight=0.5)
    assert "an AI label's vote weighs 0.5 against a person's 1" in card_path(weighted).read_text()

    rows = [{"messages": [{"role": "user", "content": f"Q{i}"}, {"role": "assistant", "content": f"Revised {i}"}]}
            for i in range(3)]  # fmt: skip
    spec = {"source": "critique-revision", "feedback_job": 7, "model": "tiny", "constitution_version": 1,
            "labels": "the final revision as the assistant turn"}  # fmt: skip
    recorded = snapshot_from_rows(project=labelled, format="sft", rows=rows, spec=spec)
    text = card_path(recorded).read_text()
    facts = _header(text)["quorum"]
    assert facts["row_count"] == 3 and facts["annotations"] == 0
    assert facts["constitution_versions"] == {1: 3} and facts["guideline_versions"] == {}
    assert "not aggregated from annotations" in text and "feedback job 7" in text
