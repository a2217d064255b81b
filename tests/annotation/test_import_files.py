"""What reaches an import as bytes: compressed files (gzip read as it is, others named), duplicate record
ids inside one file, and the per-field size limit."""

import bz2
import gzip
import io
import json
import lzma
import zipfile

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from annotation.models import Annotation, Prompt, Role, Task
from annotation.services.imports import data_import
from common.errors import Invalid
from tests.support.records import HH

pytestmark = pytest.mark.django_db


def _jsonl(rows) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


def _import(project, data: bytes, **kwargs):
    return data_import(project=project, stream=io.BytesIO(data), filename="sample.jsonl", **kwargs)


def _problems(project, data: bytes, **kwargs) -> list[str]:
    with pytest.raises(Invalid) as caught:
        _import(project, data, **kwargs)
    return caught.value.fields["file"]


def _zipped(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("train.jsonl", data)
    return buffer.getvalue()


# --- compressed files --------------------------------------------------------------------------


def test_import_command_reads_a_jsonl_gz_file(project, tmp_path):
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(gzip.compress(_jsonl(HH)))
    out = io.StringIO()
    call_command("import_data", str(path), project=project.slug, stdout=out)
    assert "preference" in out.getvalue() and "tasks: 2 created" in out.getvalue()
    assert Annotation.objects.filter(task__project=project).count() == 2


def test_gzip_is_told_by_its_first_bytes_not_its_name(project):
    report = _import(project, gzip.compress(_jsonl(HH)))
    assert report.format == "preference" and report.records == 2


def test_api_import_takes_a_jsonl_gz_upload(project, member):
    client = APIClient()
    client.force_authenticate(member(Role.ENGINEER))
    upload = io.BytesIO(gzip.compress(_jsonl(HH)))
    upload.name = "train.jsonl.gz"
    response = client.post(f"/api/v1/projects/{project.slug}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.data["records"] == 2 and response.data["tasks_created"] == 2


@pytest.mark.parametrize(
    "name, compress",
    [
        ("gzip", lambda d: gzip.compress(gzip.compress(d))),  # compressed twice: the inside reaches the text path
        ("zip", _zipped),
        ("bz2", bz2.compress),
        ("xz", lzma.compress),
        ("zstd", lambda d: b"\x28\xb5\x2f\xfd" + d),
    ],
)
def test_compressed_bytes_on_the_text_path_are_named(project, name, compress):
    problems = _problems(project, compress(_jsonl(HH)))
    assert problems[0].startswith(f"line 1: this file is {name}-compressed; decompress it first")
    assert Prompt.objects.count() == 0


def test_api_names_the_compression_of_a_bz2_upload(project, member):
    client = APIClient()
    client.force_authenticate(member(Role.ENGINEER))
    upload = io.BytesIO(bz2.compress(_jsonl(HH)))
    upload.name = "train.jsonl.bz2"
    response = client.post(f"/api/v1/projects/{project.slug}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 400
    assert "bz2-compressed" in response.data["fields"]["file"][0]


def test_a_cut_short_gzip_file_imports_nothing_and_says_so(project, tmp_path):
    data = gzip.compress(_jsonl(HH * 50))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CommandError) as caught:
        call_command("import_data", str(path), project=project.slug)
    assert "gzip data is damaged or cut short" in str(caught.value)
    assert Task.objects.count() == 0


# --- record ids ----------------------------------------------------------------------------------


def test_a_record_id_used_twice_in_one_file_is_refused_naming_both_lines(project):
    rows = [{**HH[0], "id": "pair-1"}, {**HH[1], "id": "pair-2"}, {**HH[1], "id": "pair-1"}]
    problems = _problems(project, _jsonl(rows))
    assert problems == ["line 3: id 'pair-1' is also the id of line 1; ids must be unique in a file"]
    assert Prompt.objects.count() == 0


def test_the_api_answers_a_duplicate_id_with_a_400_naming_both_lines(project, member):
    client = APIClient()
    client.force_authenticate(member(Role.ENGINEER))
    upload = io.BytesIO(_jsonl([{"prompt": "One?", "external_id": 7}, {"prompt": "Two?", "external_id": "7"}]))
    upload.name = "prompts.jsonl"
    response = client.post(f"/api/v1/projects/{project.slug}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 400
    assert response.data["fields"]["file"] == ["line 2: id '7' is also the id of line 1; ids must be unique in a file"]


def test_records_may_share_the_id_of_their_prompt(project):
    # MT-Bench style judgments: several answers to one question_id are several records.
    rows = [
        {"prompt": "2+2?", "completion": "4", "label": True, "question_id": 81},
        {"prompt": "2+2?", "completion": "5", "label": False, "question_id": 81},
    ]
    assert _import(project, _jsonl(rows)).records == 2


# --- size of one field ---------------------------------------------------------------------------


def test_a_field_over_one_mebibyte_of_text_is_refused_naming_line_and_field(project):
    big = "x" * (1024 * 1024 + 1)
    rows = [HH[0], {"prompt": "Say it.", "chosen": "fine", "rejected": big}]
    problems = _problems(project, _jsonl(rows))
    assert problems == [
        "line 2: field 'rejected' has 1,048,577 characters of text, more than the limit of 1,048,576 per field "
        "(QUORUM_IMPORT_MAX_FIELD_CHARS)"
    ]
    assert Prompt.objects.count() == 0
    assert _import(project, _jsonl([{**rows[1], "rejected": big[:-1]}])).records == 1  # exactly the limit is fine


def test_the_field_limit_is_a_setting_and_counts_all_the_text_of_a_message_list(project, settings):
    settings.IMPORT_MAX_FIELD_CHARS = 100
    # 60 + 60 characters of content and 13 of roles.
    messages = [{"role": "user", "content": "a" * 60}, {"role": "assistant", "content": "b" * 60}]
    problems = _problems(project, _jsonl([{"messages": messages}]))
    assert problems[0].startswith("line 1: field 'messages' has 133 characters of text, more than the limit of 100")


# --- export_dataset --out ------------------------------------------------------------------------


def test_export_command_refuses_to_overwrite_a_file_unless_forced(project, tmp_path):
    data_import(project=project, stream=io.BytesIO(_jsonl(HH)), filename="hh.jsonl")
    target = tmp_path / "prefs.jsonl"
    target.write_text("my own notes\n")
    with pytest.raises(CommandError) as caught:
        call_command("export_dataset", project=project.slug, format="preference", out=str(target))
    assert str(caught.value) == f"{target} exists; pass --force to overwrite it"
    assert target.read_text() == "my own notes\n"

    out = io.StringIO()
    call_command("export_dataset", project=project.slug, format="preference", out=str(target), force=True, stdout=out)
    assert "rows: 2" in out.getvalue() and len(target.read_text().splitlines()) == 2
