import hashlib
import io
import json
import os
import stat
import uuid
from datetime import datetime

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
from django.core.management import CommandError, call_command

from annotation import services
from annotation.models import Annotation, DatasetSnapshot, Prompt, Response, Task, TaskResponse
from annotation.payloads import to_shown
from annotation.services.exports import snapshot_create
from annotation.services.imports import data_import
from common.errors import Conflict, Invalid

pytestmark = pytest.mark.django_db


# --- helpers ----------------------------------------------------------------------------------


def _jsonl(rows) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


def _import(project, rows, **kwargs):
    data = rows if isinstance(rows, bytes) else _jsonl(rows)
    return data_import(project=project, stream=io.BytesIO(data), filename="sample.jsonl", **kwargs)


def _read(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _export(project, fmt, tmp_path, name=None, **kwargs):
    ext = kwargs.get("file_format", "jsonl")
    snapshot = snapshot_create(project=project, format=fmt, out_path=tmp_path / (name or f"{fmt}.{ext}"), **kwargs)
    rows = _read(snapshot.path) if ext == "jsonl" else None
    return snapshot, rows


def _same_rows(a, b):
    key = lambda r: json.dumps(r, sort_keys=True, ensure_ascii=False)  # noqa: E731
    return sorted(map(key, a)) == sorted(map(key, b))


def _counts():
    return tuple(m.objects.count() for m in (Prompt, Response, Task, TaskResponse, Annotation))


def _vote(project, member, task, canonical_payloads):
    """Each payload (in canonical positions) is submitted by a new annotator through the queue."""
    made = []
    for payload in canonical_payloads:
        user = member()
        assignment = services.task_next_for(annotator=user, project=project)
        assert assignment.task_id == task.pk
        shown = to_shown(task.kind, payload, assignment.shown_order)
        shown.pop("ranks", None)
        made.append(
            services.annotation_submit(
                assignment=assignment, annotator=user, payload=shown, client_id=uuid.uuid4(), seconds_spent=7.5
            )
        )
    return made


def _load_dataset(kind, path, tmp_path):
    import datasets

    return datasets.load_dataset(kind, data_files=str(path), split="train", cache_dir=str(tmp_path / "hf-cache"))


HH = [
    {
        "chosen": "\n\nHuman: What is the capital of France?\n\nAssistant: The capital of France is Paris.",
        "rejected": "\n\nHuman: What is the capital of France?\n\nAssistant: I think it is Lyon.",
    },
    {
        # Multi-turn; both answers start with the same words.
        "chosen": "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke about cats."
        "\n\nAssistant: I know one: why did the cat sit on the computer? To keep an eye on the mouse.",
        "rejected": "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke about cats."
        "\n\nAssistant: I know one, but I will not tell it.",
    },
    {
        # Unusual spacing must survive as it is.
        "chosen": "\n\nHuman:  two  spaces \n\nAssistant: yes\n\nHuman: and ünïcödé ✓\n\nAssistant:  fine",
        "rejected": "\n\nHuman:  two  spaces \n\nAssistant: yes\n\nHuman: and ünïcödé ✓\n\nAssistant: no",
    },
]

CONVERSATIONAL = [
    {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
        "margin": 2.0,
    },
    {
        "prompt": [{"role": "user", "content": "Name a colour."}],
        "chosen": [{"role": "assistant", "content": "Blue."}],
        "rejected": [{"role": "assistant", "content": "Seven."}],
        "margin": 0.5,
    },
]

STANDARD = [
    {"prompt": "The sky is", "chosen": " blue.", "rejected": " green.", "margin": 3.0, "score_chosen": 9.0, "score_rejected": 2.5},
    {"prompt": "Water boils at", "chosen": " 100 °C.", "rejected": " 50 °C.", "margin": 1.0, "score_chosen": 8.0, "score_rejected": 6.0},
]

UNPAIRED = [
    {"prompt": "The sky is", "completion": " blue.", "label": True},
    {"prompt": "The sky is", "completion": " green.", "label": False},
    {"prompt": "Grass is", "completion": " green.", "label": True},
]

STEPWISE = [
    {
        "prompt": "Which number is larger, 9.11 or 9.9?",
        "completions": ["Compare the tenths: 1 < 9.", "So 9.9 is larger."],
        "labels": [True, True],
    },
    {
        "prompt": "What is 3 * 4 + 2?",
        "completions": ["3 * 4 = 12", "12 + 2 = 15", "The answer is 15."],
        "labels": [True, False, False],
    },
]

PRM = [
    {
        "prompt": "What is 2 + 2 * 2?",
        "completions": ["Multiplication first.", "2 * 2 = 4, so we need 2 + 4.", "2 + 4 = 8."],
        "labels": [1, 0, -1],
    }
]

SFT = [
    {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}]},
    {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Capital of Japan?"},
            {"role": "assistant", "content": "Tokyo."},
            {"role": "user", "content": "And of Italy?"},
            {"role": "assistant", "content": "Rome."},
        ]
    },
]


# --- round trips ------------------------------------------------------------------------------


def test_standard_preference_round_trip_is_lossless(project, tmp_path):
    report = _import(project, STANDARD)
    assert report.format == "preference" and report.tasks_created == 2 and report.annotations_created == 2
    _, rows = _export(project, "preference", tmp_path, style="standard")
    assert _same_rows(rows, STANDARD)


def test_conversational_preference_round_trip_is_lossless(project, tmp_path):
    _import(project, CONVERSATIONAL)
    _, rows = _export(project, "preference", tmp_path)
    assert _same_rows(rows, CONVERSATIONAL)


def test_hh_rlhf_transcripts_come_back_byte_for_byte(project, tmp_path):
    _import(project, HH)
    _, rows = _export(project, "preference", tmp_path, style="standard")
    assert len(rows) == len(HH)
    originals = {r["chosen"]: r["rejected"] for r in HH}
    for row in rows:
        assert row["prompt"].endswith("\n\nAssistant:")
        assert originals[row["prompt"] + row["chosen"]] == row["prompt"] + row["rejected"]
    multi = next(r for r in rows if "cats" in r["prompt"])
    assert multi["chosen"] == " I know one: why did the cat sit on the computer? To keep an eye on the mouse."


def test_hh_rlhf_prompts_become_conversations(project, tmp_path):
    _import(project, HH)
    _, rows = _export(project, "preference", tmp_path)
    multi = next(r for r in rows if len(r["prompt"]) > 1)
    assert multi["prompt"] == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke about cats."},
    ]
    assert multi["chosen"][0]["role"] == "assistant"
    assert multi["rejected"] == [{"role": "assistant", "content": " I know one, but I will not tell it."}]
    prompt = Prompt.objects.get(messages=multi["prompt"])
    assert prompt.metadata["text"] == HH[1]["chosen"][: len(prompt.metadata["text"])]


def test_unpaired_round_trip_is_lossless_in_both_styles(project, tmp_path):
    _import(project, UNPAIRED)
    _, rows = _export(project, "unpaired", tmp_path, style="standard")
    assert _same_rows(rows, UNPAIRED)
    _, rows = _export(project, "unpaired", tmp_path, name="conv.jsonl")
    assert _same_rows(
        rows,
        [
            {
                "prompt": [{"role": "user", "content": r["prompt"]}],
                "completion": [{"role": "assistant", "content": r["completion"]}],
                "label": r["label"],
            }
            for r in UNPAIRED
        ],
    )


def test_stepwise_round_trip_is_lossless(project, tmp_path):
    report = _import(project, STEPWISE)
    assert report.format == "stepwise"
    task = Task.objects.get(prompt__messages__0__content="What is 3 * 4 + 2?")
    response = task.responses.get()
    assert response.steps == STEPWISE[1]["completions"] and response.content == "3 * 4 = 12\n12 + 2 = 15\nThe answer is 15."
    assert task.annotations.get().payload == {"labels": [1, -1, -1], "first_error": 1}
    _, rows = _export(project, "stepwise", tmp_path, style="standard")
    assert _same_rows(rows, STEPWISE)


def test_prm_labels_round_trip_through_raw_and_map_by_the_stated_rule(project, tmp_path):
    _import(project, PRM)
    _, raw = _export(project, "raw", tmp_path)
    assert json.loads(raw[0]["payload"]) == {"labels": [1, 0, -1], "first_error": 2}
    assert json.loads(raw[0]["details"])["import"]["label_type"] == "int"
    snapshot, rows = _export(project, "stepwise", tmp_path, style="standard")
    assert rows == [{**PRM[0], "labels": [True, True, False]}]
    assert "0 -> true" in snapshot.spec["labels"] and snapshot.spec["neutral_step_correct"] is True
    snapshot, rows = _export(project, "stepwise", tmp_path, name="strict.jsonl", style="standard", neutral_step_correct=False)
    assert rows[0]["labels"] == [True, False, False]
    assert "0 -> false" in snapshot.spec["labels"]


def test_sft_round_trip_is_lossless(project, tmp_path):
    report = _import(project, SFT)
    assert report.format == "sft" and report.tasks_created == 2
    assert Task.objects.filter(kind="demonstration", n_responses=0).count() == 2
    _, rows = _export(project, "sft", tmp_path)
    assert _same_rows(rows, SFT)


def test_prompt_completion_pairs_import_as_demonstrations(project, tmp_path):
    report = _import(project, [{"prompt": "Say hi.", "completion": "Hi!"}, {"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "4"}]}])
    assert report.format == "sft" and report.annotations_created == 2
    _, rows = _export(project, "sft", tmp_path)
    assert _same_rows(rows, [SFT[0], {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}])


def test_prompts_and_mt_bench_questions_import_as_prompts(project):
    rows = [
        {"question_id": 81, "category": "writing", "turns": ["Write a haiku.", "Now make it rhyme."], "reference": ["-"]},
        {"prompt": "Explain tides.", "id": "p-2", "tags": ["science"], "metadata": {"source": "manual"}},
        {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello"}]},
    ]
    report = _import(project, rows)
    assert report.format == "prompts" and report.prompts_created == 3 and report.tasks_created == 0
    mt = Prompt.objects.get(external_id="81")
    assert mt.messages == [{"role": "user", "content": "Write a haiku."}]
    assert mt.metadata == {"category": "writing", "turns": ["Now make it rhyme."], "reference": ["-"]}
    tides = Prompt.objects.get(external_id="p-2")
    assert tides.tags == ["science"] and tides.metadata == {"source": "manual"}
    assert Task.objects.count() == 0


# --- idempotency and task state ---------------------------------------------------------------


def test_importing_the_same_file_twice_creates_nothing_new(project):
    files = [HH, STANDARD, CONVERSATIONAL, UNPAIRED, STEPWISE, PRM, SFT]
    for rows in files:
        _import(project, rows)
    before = _counts()
    for rows in files:
        report = _import(project, rows)
        assert (report.prompts_created, report.responses_created, report.tasks_created, report.annotations_created) == (0, 0, 0, 0)
        assert report.annotations_existing == len(rows) and report.tasks_existing == len(rows)
    assert _counts() == before


def test_import_counts_hold_where_the_database_cannot_return_inserted_rows(project, monkeypatch):
    from django.db import connection

    monkeypatch.setattr(type(connection.features), "can_return_rows_from_bulk_insert", False)
    report = _import(project, HH + STANDARD)
    assert (report.prompts_created, report.responses_created, report.tasks_created, report.annotations_created) == (5, 10, 5, 5)
    assert TaskResponse.objects.count() == 10
    again = _import(project, HH + STANDARD)
    assert (again.prompts_created, again.tasks_created, again.prompts_existing, again.tasks_existing) == (0, 0, 5, 5)


def test_identical_chosen_and_rejected_come_back_as_they_were(project, tmp_path):
    same = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello", "rejected": "\n\nHuman: Hi\n\nAssistant: Hello"}
    _import(project, [same])
    _, rows = _export(project, "preference", tmp_path, style="standard")
    assert [(r["prompt"] + r["chosen"], r["prompt"] + r["rejected"]) for r in rows] == [(same["chosen"], same["rejected"])]


def test_the_same_file_imports_into_two_projects(project, make_user):
    other = services.project_create(name="Other", slug="other", created_by=make_user())
    _import(project, STANDARD)
    report = _import(other, STANDARD)
    assert report.annotations_created == 2
    assert Annotation.objects.filter(task__project=other).count() == 2


def test_imported_labelled_tasks_are_complete_and_never_queued(project, member):
    _import(project, STANDARD + [])
    task = Task.objects.get(prompt__messages__0__content="The sky is")
    assert (task.required, task.open_slots, task.submitted_count, task.status) == (1, 0, 1, "complete")
    assert [tr.position for tr in task.task_responses.all()] == [0, 1]
    assert task.task_responses.get(position=0).response.content == " blue."
    annotation = task.annotations.get()
    assert annotation.author is None and annotation.source == "human"
    assert annotation.payload == {"choice": "A", "strength": 3}
    assert annotation.details["import"] == {
        "file": "sample.jsonl", "line": 1, "format": "preference", "margin": 3.0, "score_chosen": 9.0, "score_rejected": 2.5
    }
    assert services.task_next_for(annotator=member(), project=project) is None


def test_two_labels_for_the_same_item_make_one_task_with_two_annotations(project, tmp_path):
    _import(project, [{"prompt": "Sky?", "completion": "Blue", "label": True}, {"prompt": "Sky?", "completion": "Blue", "label": False}])
    task = Task.objects.get()
    assert (task.required, task.submitted_count, task.open_slots) == (2, 2, 0)
    _, rows = _export(project, "unpaired", tmp_path, style="standard")
    assert rows == []  # one up, one down: no majority


# --- refusing bad files -----------------------------------------------------------------------


def test_a_bad_line_writes_nothing_and_names_the_line(project):
    rows = [_jsonl([r]) for r in STANDARD + STANDARD[:1]]
    data = rows[0] + rows[1] + b'{"prompt": "x", "chosen": 5, "rejected": "y"}\n' + rows[2] + b"[1, 2]\n"
    before = _counts()
    with pytest.raises(Invalid) as caught:
        _import(project, data)
    problems = caught.value.fields["file"]
    assert problems[0].startswith("line 3: chosen must be text")
    assert problems[1].startswith("line 5: expected a JSON object")
    assert _counts() == before


def test_checking_goes_on_after_the_first_bad_line_up_to_fifty_problems(project):
    data = _jsonl(UNPAIRED[:1]) + b"not json\n" * 70 + _jsonl(UNPAIRED[1:])
    with pytest.raises(Invalid) as caught:
        _import(project, data)
    problems = caught.value.fields["file"]
    assert len(problems) == 51 and problems[0].startswith("line 2: ") and problems[49].startswith("line 51: ")
    assert problems[-1] == "stopped reading after 50 problems"
    assert Prompt.objects.count() == 0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"prompt": "x", "chosen": "a", "rejected": "b"', "not valid JSON"),
        (b'"just a string"', "expected a JSON object"),
        (b'{"prompt": "x", "chosen": "a", "rejected": "b", "margin": "big"}', "margin must be a number"),
        (b'{"prompt": "x", "chosen": "a", "rejected": "b", "margin": NaN}', "not valid JSON"),
        (b'{"prompt": "x\\u0000", "chosen": "a", "rejected": "b"}', "NUL character"),
        (b'{"prompt": [{"role": "robot", "content": "hi"}], "chosen": "a", "rejected": "b"}', "prompt[0]"),
        (b'{"chosen": "same start a", "rejected": "b different"}', "share no prompt"),
    ],
)
def test_bad_lines_get_clear_messages(project, line, message):
    data = _jsonl(STANDARD[:1]) + line + b"\n"
    with pytest.raises(Invalid) as caught:
        _import(project, data)
    (problem,) = caught.value.fields["file"]
    assert problem.startswith("line 2: ") and message in problem
    assert Task.objects.count() == 0


def test_wrong_types_per_format_are_named(project):
    data = _jsonl(
        [
            {"prompt": "p", "completion": "c", "label": "yes"},
            {"prompt": "p", "completions": ["a", "b"], "labels": [True]},
            {"prompt": "p", "completions": ["a"], "labels": [2]},
            {"messages": [{"role": "user", "content": "no answer"}]},
        ]
    )
    with pytest.raises(Invalid) as caught:
        _import(project, data, format="unpaired")
    assert caught.value.fields["file"][0] == "line 1: label must be true or false, not text"
    for fmt, expected in (("stepwise", "labels must be a list of 2 labels"), ("sft", "must end with an assistant turn")):
        with pytest.raises(Invalid) as caught:
            _import(project, data, format=fmt)
        assert any(expected in p for p in caught.value.fields["file"])


def test_non_utf8_files_are_refused(project):
    data = _jsonl(UNPAIRED[:1]) + b'{"prompt": "caf\xe9", "completion": "x", "label": true}\n'
    with pytest.raises(Invalid) as caught:
        _import(project, data)
    (problem,) = caught.value.fields["file"]
    assert problem.startswith("line 2: not valid UTF-8 (byte 0xe9")
    assert Prompt.objects.count() == 0


def test_too_large_files_are_refused(project, settings):
    data = _jsonl(UNPAIRED * 50)
    with pytest.raises(Invalid) as caught:
        _import(project, data, max_bytes=len(data) - 1)
    assert caught.value.code == "too_large" and "larger than the import limit" in caught.value.message
    settings.IMPORT_MAX_BYTES = 100
    with pytest.raises(Invalid):
        _import(project, data)
    assert Prompt.objects.count() == 0
    settings.IMPORT_MAX_BYTES = len(data)
    assert _import(project, data).records == 150


def test_unknown_formats_are_refused(project):
    with pytest.raises(Invalid) as caught:
        _import(project, [{"question": "?", "answer": "!"}])
    assert "line 1: cannot tell the format" in caught.value.fields["file"][0]
    with pytest.raises(Invalid) as caught:
        _import(project, STANDARD, format="csv")
    assert "format" in caught.value.fields


def test_blank_lines_are_skipped_and_empty_files_refused(project):
    data = b"\n" + _jsonl(UNPAIRED[:1]) + b"   \n\n" + _jsonl(UNPAIRED[1:2])
    report = _import(project, data)
    assert report.lines == 5 and report.records == 2 and report.annotations_created == 2
    with pytest.raises(Invalid):
        _import(project, b"\n\n")


# --- aggregation ------------------------------------------------------------------------------


def test_preference_majority_drops_ties_and_keeps_the_margin(project, member, make_task, tmp_path):
    wins_a = make_task(required=3)
    _vote(project, member, wins_a, [{"choice": "A", "strength": 3}, {"choice": "A", "strength": 2}, {"choice": "B", "strength": 1}])
    split = make_task(required=2)
    _vote(project, member, split, [{"choice": "A", "strength": 1}, {"choice": "B", "strength": 1}])
    mostly_tie = make_task(required=3)
    _vote(project, member, mostly_tie, [{"choice": "tie"}, {"choice": "tie"}, {"choice": "A", "strength": 3}])
    wins_b = make_task(required=2)
    _vote(project, member, wins_b, [{"choice": "B", "strength": 2}, {"choice": "B", "strength": 3}])
    both_bad = make_task(required=2)
    _vote(project, member, both_bad, [{"choice": "both_bad"}, {"choice": "both_bad"}])

    snapshot, rows = _export(project, "preference", tmp_path, style="standard")
    contents = lambda t: [tr.response.content for tr in t.task_responses.all()]  # noqa: E731
    assert _same_rows(
        rows,
        [
            {"prompt": wins_a.prompt.messages[0]["content"], "chosen": contents(wins_a)[0], "rejected": contents(wins_a)[1], "margin": 2.5},
            {"prompt": wins_b.prompt.messages[0]["content"], "chosen": contents(wins_b)[1], "rejected": contents(wins_b)[0], "margin": 2.5},
        ],
    )
    assert snapshot.row_count == 2 and "majority" in snapshot.spec["aggregation"]


def test_ranking_gives_every_implied_pair_by_majority(project, member, make_task, tmp_path):
    single = make_task("ranking", n=4, required=1)
    _vote(project, member, single, [{"order": [[3], [1], [0], [2]]}])
    snapshot, rows = _export(project, "preference", tmp_path, style="standard")
    texts = [tr.response.content for tr in single.task_responses.all()]
    best_first = [3, 1, 0, 2]
    expected = {(texts[best_first[i]], texts[best_first[j]]) for i in range(4) for j in range(i + 1, 4)}
    assert {(r["chosen"], r["rejected"]) for r in rows} == expected and len(rows) == 6

    voted = make_task("ranking", n=3, required=3)
    _vote(project, member, voted, [{"order": [[0], [1], [2]]}, {"order": [[0], [2], [1]]}, {"order": [[1, 2], [0]]}])
    _, rows = _export(project, "preference", tmp_path, name="second.jsonl", style="standard")
    texts = [tr.response.content for tr in voted.task_responses.all()]
    mine = [r for r in rows if r["chosen"] in texts and r["prompt"] == voted.prompt.messages[0]["content"]]
    # 0 beats 1 and 2 two votes to one; 1 vs 2 is one vote each (the third ranked them equal): dropped.
    assert sorted((r["chosen"], r["rejected"], r["margin"]) for r in mine) == sorted(
        [(texts[0], texts[1], 1.5), (texts[0], texts[2], 1.5)]
    )


def test_stepwise_takes_the_per_step_majority(project, member, make_task, tmp_path):
    task = make_task("steps", required=3)
    _vote(project, member, task, [{"labels": [1, 1, 1]}, {"labels": [1, -1, -1]}, {"labels": [0, 1, -1]}])
    split = make_task("steps", required=2)
    _vote(project, member, split, [{"labels": [1, 1, 1]}, {"labels": [1, 1, -1]}])
    _, rows = _export(project, "stepwise", tmp_path)
    assert len(rows) == 1
    assert rows[0]["labels"] == [True, True, False]
    assert rows[0]["completions"] == task.responses.get().steps
    assert rows[0]["prompt"] == task.prompt.messages


def test_only_current_revisions_and_chosen_sources_are_exported(project, member, make_task, tmp_path):
    task = make_task(required=1)
    (first,) = _vote(project, member, task, [{"choice": "A", "strength": 1}])
    revised = services.annotation_revise(annotation=first, author=first.author, payload=to_shown("pairwise", {"choice": "B", "strength": 2}, first.shown_order))
    Annotation.objects.create(task=task, kind="pairwise", source="ai", payload={"choice": "A", "strength": 3}, shown_order=[0, 1])
    texts = [tr.response.content for tr in task.task_responses.all()]

    _, human = _export(project, "preference", tmp_path, name="human.jsonl", style="standard", sources=("human",))
    assert [(r["chosen"], r["margin"]) for r in human] == [(texts[1], 2.0)]
    _, ai = _export(project, "preference", tmp_path, name="ai.jsonl", style="standard", sources=("ai",))
    assert [(r["chosen"], r["margin"]) for r in ai] == [(texts[0], 3.0)]
    _, both = _export(project, "preference", tmp_path, name="both.jsonl", style="standard")
    assert both == []  # one vote each way

    snapshot, raw = _export(project, "raw", tmp_path, sources=("human",))
    assert snapshot.spec["sources"] == ["human"]
    by_id = {r["annotation_id"]: r for r in raw}
    assert set(by_id) == {first.pk, revised.pk}
    assert by_id[first.pk]["is_current"] is False and by_id[revised.pk]["supersedes_id"] == first.pk
    assert by_id[revised.pk]["author"] == first.author.username and json.loads(by_id[revised.pk]["responses"]) == texts
    assert by_id[revised.pk]["prompt"] == task.prompt.messages
    assert by_id[revised.pk]["client_id"] == str(revised.client_id)
    assert datetime.fromisoformat(by_id[revised.pk]["created_at"]) == revised.created_at
    assert by_id[revised.pk]["seconds_spent"] == -1.0 and by_id[first.pk]["seconds_spent"] == 7.5

    # The same rows through Parquet.
    import pyarrow.parquet as pq

    parquet, _ = _export(project, "raw", tmp_path, file_format="parquet", sources=("human",))
    assert pq.read_table(parquet.path).to_pylist() == raw


def test_unpaired_can_include_pairwise_majorities(project, member, make_task, tmp_path):
    task = make_task(required=1)
    _vote(project, member, task, [{"choice": "B", "strength": 1}])
    _import(project, UNPAIRED[:1])
    _, rows = _export(project, "unpaired", tmp_path, style="standard")
    assert len(rows) == 1
    snapshot, rows = _export(project, "unpaired", tmp_path, name="with-pairs.jsonl", style="standard", pairwise_as_unpaired=True)
    texts = [tr.response.content for tr in task.task_responses.all()]
    assert {(r["completion"], r["label"]) for r in rows} >= {(texts[1], True), (texts[0], False)}
    assert len(rows) == 3 and snapshot.spec["pairwise_as_unpaired"] is True


# --- snapshot files ---------------------------------------------------------------------------


def test_snapshot_records_rows_and_sha256_of_a_read_only_file(project, tmp_path, settings):
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    _import(project, HH)
    snapshot = snapshot_create(project=project, format="preference", style="standard")
    data = open(snapshot.path, "rb").read()
    assert snapshot.path.startswith(str(tmp_path / "snapshots" / "demo"))
    assert snapshot.sha256 == hashlib.sha256(data).hexdigest() and snapshot.size_bytes == len(data)
    assert snapshot.row_count == len(data.splitlines()) == 3
    assert not os.stat(snapshot.path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert snapshot.spec["style"] == "standard" and snapshot.spec["sources"] == ["ai", "human"]
    assert DatasetSnapshot.objects.get(pk=snapshot.pk).sha256 == snapshot.sha256
    with pytest.raises(Conflict):
        snapshot_create(project=project, format="preference", out_path=snapshot.path)
    assert [f for f in os.listdir(os.path.dirname(snapshot.path)) if f.endswith(".part")] == []


def test_parquet_export_loads_with_datasets(project, tmp_path):
    _import(project, CONVERSATIONAL)
    _import(project, PRM)
    jsonl, rows = _export(project, "preference", tmp_path)
    snapshot, _ = _export(project, "preference", tmp_path, file_format="parquet")
    assert snapshot.sha256 == hashlib.sha256(open(snapshot.path, "rb").read()).hexdigest()
    loaded = _load_dataset("parquet", snapshot.path, tmp_path)
    assert loaded.num_rows == snapshot.row_count == 2
    assert _same_rows(loaded.to_list(), rows)
    raw, _ = _export(project, "raw", tmp_path, file_format="parquet")
    assert _load_dataset("parquet", raw.path, tmp_path).num_rows == 3
    steps, _ = _export(project, "stepwise", tmp_path, file_format="parquet", style="standard")
    assert _load_dataset("parquet", steps.path, tmp_path)[0]["labels"] == [True, True, False]


def test_every_format_loads_with_datasets_json(project, member, make_task, tmp_path):
    for rows in (HH, CONVERSATIONAL, UNPAIRED, STEPWISE, PRM, SFT):
        _import(project, rows)
    _vote(project, member, make_task(required=2), [{"choice": "A", "strength": 2}, {"choice": "A", "strength": 1}])
    cases = [
        ("preference", "conversational"),
        ("preference", "standard"),
        ("unpaired", "conversational"),
        ("unpaired", "standard"),
        ("stepwise", "conversational"),
        ("stepwise", "standard"),
        ("sft", "conversational"),
        ("raw", "conversational"),
    ]
    for fmt, style in cases:
        snapshot, _ = _export(project, fmt, tmp_path, name=f"{fmt}-{style}.jsonl", style=style)
        loaded = _load_dataset("json", snapshot.path, tmp_path)
        assert loaded.num_rows == snapshot.row_count > 0, (fmt, style)
        assert set(loaded.column_names) == set(snapshot.spec["columns"])


def test_columns_keep_one_type_when_early_rows_lack_values(project, member, make_task, tmp_path):
    # Imported rows (no author, no time, no responses) fill the first blocks the loader reads;
    # annotated rows with all of them come later. `datasets` takes each column's type from the
    # first block, so a column that is null there and a number later would not load.
    _import(project, [{"messages": [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": f"{i}!"}]} for i in range(40)])
    _import(project, [{**STANDARD[0], "prompt": f"Row {i}:"} for i in range(40)])
    _vote(project, member, make_task(required=1), [{"choice": "A", "strength": 2}])
    raw, _ = _export(project, "raw", tmp_path)
    prefs, rows = _export(project, "preference", tmp_path, style="standard")
    assert "score_chosen" not in rows[0] and "score_chosen" not in prefs.spec["columns"]
    import datasets

    loaded = {
        snapshot.format: datasets.load_dataset(
            "json", data_files=snapshot.path, split="train", chunksize=4096, cache_dir=str(tmp_path / "hf-small-blocks")
        )
        for snapshot in (raw, prefs)
    }
    assert loaded["raw"].num_rows == raw.row_count == 81 and loaded["preference"].num_rows == prefs.row_count == 41
    assert loaded["raw"][-1]["seconds_spent"] == 7.5 and loaded["preference"][-1]["margin"] == 2.0
    raw_rows = _read(raw.path)
    assert raw_rows[0]["author"] == "" and raw_rows[0]["seconds_spent"] == -1.0 and raw_rows[0]["responses"] == "[]"
    assert raw.spec["missing_values"]["seconds_spent"] == -1.0


# --- management commands ----------------------------------------------------------------------


def test_import_and_export_commands(project, tmp_path):
    path = tmp_path / "hh.jsonl"
    path.write_bytes(_jsonl(HH))
    out = io.StringIO()
    call_command("import_data", str(path), project="demo", stdout=out)
    assert "preference" in out.getvalue() and "tasks: 3 created" in out.getvalue()

    out = io.StringIO()
    target = tmp_path / "export" / "prefs.jsonl"
    call_command("export_dataset", project="demo", format="preference", style="standard", out=str(target), stdout=out)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert "rows: 3" in out.getvalue() and digest in out.getvalue()

    out = io.StringIO()
    call_command(
        "export_dataset", project="demo", format="raw", file_format="parquet", sources="human", out=str(tmp_path / "raw.parquet"), stdout=out
    )
    assert "rows: 3" in out.getvalue()

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(_jsonl(HH[:1]) + b"{oops\n")
    with pytest.raises(CommandError) as caught:
        call_command("import_data", str(bad), project="demo", format="preference")
    assert "line 2: not valid JSON" in str(caught.value)
    with pytest.raises(CommandError):
        call_command("export_dataset", project="nope", format="sft", out=str(tmp_path / "x.jsonl"))
