"""Importing `datasets` data: a snapshot exported as Parquet, or saved with `Dataset.save_to_disk`, imported into a
new project exports again as the same rows; imports stay all or nothing and idempotent; the API takes uploads."""

import io
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Annotation, Prompt, Role, Task
from annotation.services.dataset_imports import dataset_import
from annotation.services.exports import snapshot_create
from annotation.services.imports import data_import
from common.errors import Invalid

SOURCES = {
    "preference": [
        {"prompt": [{"role": "user", "content": f"Question {i}?"}],
         "chosen": [{"role": "assistant", "content": f"Good answer {i}."}],
         "rejected": [{"role": "assistant", "content": f"Bad answer {i}."}], "margin": float(i % 3 + 1)}
        for i in range(7)
    ],
    "unpaired": [
        {"prompt": f"Tell me about {i}.", "completion": f"{i} is a number.", "label": bool(i % 2)} for i in range(5)
    ],
    "stepwise": [
        {"prompt": f"Add {i} and 2.", "completions": [f"Take {i}.", "Add 2.", f"So {i + 2}."],
         "labels": [True, i % 2 == 0, True]}
        for i in range(4)
    ],
    "sft": [
        {"messages": [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": f"{i}."}]}
        for i in range(4)
    ],
}  # fmt: skip


def _jsonl(rows) -> io.BytesIO:
    stream = io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode())
    stream.name = "source.jsonl"
    return stream


def _rows(snapshot) -> list:
    with open(snapshot.path, encoding="utf-8") as f:
        return sorted((json.loads(line) for line in f), key=lambda r: json.dumps(r, sort_keys=True))


def _project(make_user, slug):
    return services.project_create(name=slug, slug=slug, created_by=make_user(f"owner-{slug}"))


@pytest.fixture
def snapshots(settings, tmp_path):
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"


@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_a_parquet_snapshot_and_its_save_to_disk_copy_import_as_the_same_content(db, snapshots, make_user, fmt, tmp_path):
    import datasets

    source = _project(make_user, "source")
    data_import(project=source, stream=_jsonl(SOURCES[fmt]), format=fmt)
    parquet = snapshot_create(project=source, format=fmt, file_format="parquet", style="standard" if fmt != "preference" else "conversational")
    expected = _rows(snapshot_create(project=source, format=fmt, style="standard" if fmt != "preference" else "conversational"))
    assert len(expected) == len(SOURCES[fmt])

    from_parquet = _project(make_user, "from-parquet")
    report = dataset_import(project=from_parquet, path=parquet.path)
    assert report.records == len(expected) and report.annotations_created == len(expected)
    style = "standard" if fmt != "preference" else "conversational"
    assert _rows(snapshot_create(project=from_parquet, format=fmt, style=style)) == expected

    on_disk = tmp_path / f"{fmt}-on-disk"
    datasets.Dataset.from_parquet(parquet.path, cache_dir=str(tmp_path / "hf-cache")).save_to_disk(str(on_disk))
    from_disk = _project(make_user, "from-disk")
    dataset_import(project=from_disk, path=on_disk)
    assert _rows(snapshot_create(project=from_disk, format=fmt, style=style)) == expected


def test_importing_the_same_dataset_again_creates_nothing(db, snapshots, make_user, tmp_path):
    source = _project(make_user, "source")
    data_import(project=source, stream=_jsonl(SOURCES["preference"]))
    parquet = snapshot_create(project=source, format="preference", file_format="parquet")
    target = _project(make_user, "target")
    first = dataset_import(project=target, path=parquet.path)
    counts = (Prompt.objects.filter(project=target).count(), Task.objects.filter(project=target).count(),
              Annotation.objects.filter(task__project=target).count())  # fmt: skip
    second = dataset_import(project=target, path=parquet.path)
    assert first.annotations_created == 7 and second.annotations_created == 0 and second.annotations_existing == 7
    assert counts == (Prompt.objects.filter(project=target).count(), Task.objects.filter(project=target).count(),
                      Annotation.objects.filter(task__project=target).count())  # fmt: skip


def test_one_bad_row_imports_nothing_and_names_the_row(db, make_user, tmp_path):
    rows = [{"prompt": "Q1?", "chosen": "Yes.", "rejected": "No."}, {"prompt": "Q2?", "chosen": "Yes.", "rejected": "No."},
            {"prompt": "Q3?", "chosen": "Yes.", "rejected": None}, {"prompt": "Q4?", "chosen": 4, "rejected": "No."}]
    path = tmp_path / "bad.parquet"
    # Every value as text, so that the table has one type per column; row 4's chosen is text "4", which is fine.
    pq.write_table(pa.Table.from_pylist([{k: (None if v is None else str(v)) for k, v in r.items()} for r in rows]), path)
    target = _project(make_user, "target")
    with pytest.raises(Invalid) as caught:
        dataset_import(project=target, path=path)
    assert caught.value.fields["file"] == ['line 3: "rejected" is missing']
    assert not Prompt.objects.filter(project=target).exists()


def test_a_dataset_dict_imports_the_split_asked_for(db, make_user, tmp_path):
    import datasets

    folder = tmp_path / "dict"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list([{"prompt": f"Train {i}?"} for i in range(3)]),
        "test": datasets.Dataset.from_list([{"prompt": f"Test {i}?"} for i in range(2)]),
    }).save_to_disk(str(folder))  # fmt: skip
    target = _project(make_user, "target")
    assert dataset_import(project=target, path=folder).prompts_created == 3
    assert dataset_import(project=target, path=folder, split="test").prompts_created == 2
    with pytest.raises(Invalid) as caught:
        dataset_import(project=target, path=folder, split="validation")
    assert "train" in caught.value.fields["split"][0] and "test" in caught.value.fields["split"][0]


def test_import_command_takes_a_save_to_disk_directory(db, make_user, tmp_path):
    import datasets

    folder = tmp_path / "prompts"
    datasets.Dataset.from_list([{"prompt": f"Hello {i}?"} for i in range(4)]).save_to_disk(str(folder))
    target = _project(make_user, "target")
    out = io.StringIO()
    call_command("import_data", str(folder), project=target.slug, stdout=out)
    assert Prompt.objects.filter(project=target).count() == 4
    (folder / "state.json").unlink()
    with pytest.raises(CommandError, match="save_to_disk"):
        call_command("import_data", str(folder), project=target.slug)


def test_api_takes_parquet_and_zipped_save_to_disk_uploads(db, project, member, tmp_path):
    import datasets

    client = APIClient()
    client.force_authenticate(member(Role.ENGINEER))
    url = f"/api/v1/projects/{project.slug}/imports/datasets/"

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(SOURCES["sft"]), buffer)
    buffer.seek(0)
    buffer.name = "demos.parquet"
    response = client.post(url, {"file": buffer}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.data["format"] == "sft" and response.data["annotations_created"] == 4

    folder = tmp_path / "pairs"
    datasets.Dataset.from_list(SOURCES["preference"]).save_to_disk(str(folder))
    archive = shutil.make_archive(str(tmp_path / "pairs"), "zip", root_dir=tmp_path, base_dir="pairs")
    with open(archive, "rb") as f:
        response = client.post(url, {"file": f, "format": "preference"}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.data["annotations_created"] == 7

    not_a_dataset = io.BytesIO(b'{"prompt": "x"}\n')
    not_a_dataset.name = "prompts.jsonl"
    response = client.post(url, {"file": not_a_dataset}, format="multipart")
    assert response.status_code == 400 and "file" in response.data["fields"]
    broken = io.BytesIO(b"PAR1 this is not parquet")
    broken.name = "broken.parquet"
    response = client.post(url, {"file": broken}, format="multipart")
    assert response.status_code == 400 and "Parquet" in response.data["fields"]["file"][0]
