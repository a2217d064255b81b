"""PRM800K (openai/prm800k) imports as it ships: one steps task per labelled solution, the step ratings as a
human annotation, and every field of the record back from a raw export."""

import copy
import io
import json

import pytest

from common.errors import Invalid
from annotation.models import Annotation, Prompt, Task
from annotation.quality.selectors import Raters, steps_tables
from annotation.services.exports import snapshot_create
from annotation.services.imports import data_import, prm800k_record
from annotation.services.task_actions import tasks_requeue

pytestmark = pytest.mark.django_db

# Shaped like the example in PRM800K's README (phase 2: a pre-generated solution labelled up to its first error).
PROBLEM = (
    "What is the greatest common factor of $20 !$ and $200,\\!000$?  (Reminder: If $n$ is a positive integer, "
    "then $n!$ stands for the product $1\\cdot 2\\cdot 3\\cdot \\cdots \\cdot (n-1)\\cdot n$.)"
)
STEPS = [
    "I want to find the largest positive integer that divides both $20 !$ and $200,\\!000$ evenly.",
    "One way to do this is to factor both numbers into prime factors and look for the common ones.",
    "I know that $200,\\!000 = 2^5\\cdot 10^4 = 2^9\\cdot 5^4$.",
]
RECORD = {
    "labeler": "340d89bc-f5b7-45e9-b272-909ba68ee363",
    "timestamp": "2023-01-22T04:34:27.052924",
    "generation": 9,
    "is_quality_control_question": False,
    "is_initial_screening_question": False,
    "question": {
        "problem": PROBLEM,
        "ground_truth_solution": "The prime factorization of $200,000$ is $2^6 \\cdot 5^5$. Then count the number "
        "of factors of $2$ and $5$ in $20!$. Since there are $10$ even numbers, there are more than $6$ factors of "
        "$2$. There are $4$ factors of $5$. So the greatest common factor is $2^6 \\cdot 5^4=\\boxed{40,\\!000}$.",
        "ground_truth_answer": "40,\\!000",
        "pre_generated_steps": STEPS + ["So the greatest common factor is $2^9\\cdot 5^4 = 320$.", "# Answer\n\n320"],
        "pre_generated_answer": "320",
        "pre_generated_verifier_score": 0.010779580529581414,
    },
    "label": {
        "steps": [
            {"completions": [{"text": STEPS[0], "rating": 1, "flagged": False}], "human_completion": None, "chosen_completion": 0},
            {
                "completions": [
                    {"text": STEPS[1], "rating": 0, "flagged": False},
                    {"text": "Or list the divisors of both numbers.", "rating": -1, "flagged": True},
                ],
                "human_completion": None,
                "chosen_completion": 0,
            },
            # Labelling stopped at the first error: nothing chosen, the rated step is where it went wrong.
            {"completions": [{"text": STEPS[2], "rating": -1, "flagged": None}], "human_completion": None, "chosen_completion": None},
        ],
        "total_time": 278270,
        "finish_reason": "found_error",
    },
}


def _import(project, records):
    data = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)
    return data_import(project=project, stream=io.BytesIO(data), filename="phase2_train.jsonl")


def _raw(project, tmp_path, file_format="jsonl"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    snapshot = snapshot_create(project=project, format="raw", file_format=file_format, out_path=tmp_path / f"raw.{file_format}")
    if file_format == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(snapshot.path).to_pylist()
    with open(snapshot.path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_a_prm800k_solution_is_one_steps_task_with_its_ratings_as_labels(project):
    report = _import(project, [RECORD])
    assert report.format == "prm800k" and report.tasks_created == 1 and report.annotations_created == 1
    task = Task.objects.get()
    assert task.kind == "steps" and task.n_steps == 3
    assert task.prompt.messages == [{"role": "user", "content": PROBLEM}]
    assert task.prompt.metadata == {"ground_truth_answer": "40,\\!000"}
    assert task.responses.get().steps == STEPS
    annotation = Annotation.objects.get()
    assert annotation.source == "human" and annotation.payload == {"labels": [1, 0, -1], "first_error": 2}


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_prm800k_round_trip_gives_back_every_field(project, tmp_path, file_format):
    _import(project, [RECORD])
    (row,) = _raw(project, tmp_path, file_format)
    assert json.loads(row["response_steps"]) == [STEPS]  # a list, never joined with newlines
    back = prm800k_record(row)
    assert sorted(back) == sorted(RECORD)
    for field in RECORD:
        assert json.dumps(back[field], sort_keys=True) == json.dumps(RECORD[field], sort_keys=True), field


def test_two_labelers_on_one_solution_give_two_annotations_and_reimport_adds_nothing(project):
    other = copy.deepcopy(RECORD)
    other["labeler"] = "9a0a7b5e-0000-4000-8000-000000000000"
    other["label"]["steps"][1]["completions"][0]["rating"] = 1
    _import(project, [RECORD, other])
    assert Task.objects.count() == 1 and Annotation.objects.count() == 2
    assert sorted(a.payload["labels"] for a in Annotation.objects.all()) == [[1, 0, -1], [1, 1, -1]]
    report = _import(project, [RECORD, other])
    assert report.annotations_created == 0 and report.annotations_existing == 2


def test_human_completions_and_null_ratings_are_good_steps(project):
    record = copy.deepcopy(RECORD)
    record["label"]["steps"][2] = {
        "completions": [{"text": STEPS[2], "rating": -1, "flagged": False}],
        "human_completion": "The prime factorization of $200,\\!000$ is $2^6\\cdot 5^5$.",
        "chosen_completion": None,
    }
    record["label"]["steps"][0]["completions"][0]["rating"] = None  # a step the labeler wrote in place
    record["label"]["finish_reason"] = "solution"
    _import(project, [record])
    assert Annotation.objects.get().payload == {"labels": [1, 0, 1], "first_error": None}
    assert Task.objects.get().responses.get().steps[2] == "The prime factorization of $200,\\!000$ is $2^6\\cdot 5^5$."


def test_a_bad_prm800k_record_names_the_step(project):
    record = copy.deepcopy(RECORD)
    record["label"]["steps"][1]["completions"][0]["rating"] = 2
    with pytest.raises(Invalid) as caught:
        _import(project, [record])
    assert caught.value.fields["file"] == ["line 1: label.steps[1].completions[0].rating must be -1, 0, 1 or null"]
    assert Prompt.objects.count() == 0


def test_stepwise_export_of_prm800k_labels(project, tmp_path):
    _import(project, [RECORD])
    snapshot = snapshot_create(project=project, format="stepwise", style="standard", out_path=tmp_path / "s.jsonl")
    with open(snapshot.path, encoding="utf-8") as f:
        assert [json.loads(line) for line in f] == [{"prompt": PROBLEM, "completions": STEPS, "labels": [True, True, False]}]


def test_raw_export_keeps_external_ids_metadata_and_steps_as_lists(project, tmp_path):
    record = {
        "id": "prm-7", "metadata": {"source": "math", "level": 5}, "prompt": "What is 3 * 4 + 2?",
        "completions": ["3 * 4 = 12", "12 + 2 = 14\nso the answer is 14."], "labels": [1, 1],
    }
    _import(project, [record])
    for file_format in ("jsonl", "parquet"):
        (row,) = _raw(project, tmp_path / file_format, file_format)
        assert row["external_id"] == "prm-7" and json.loads(row["metadata"]) == {"source": "math", "level": 5}
        assert json.loads(row["response_steps"]) == [record["completions"]]


def _unlabelled(finish_reason, steps, **label):
    record = copy.deepcopy(RECORD)
    record["label"] = {"steps": steps, "total_time": 31000, "finish_reason": finish_reason, **label}
    return record


def test_a_bad_problem_with_no_steps_keeps_its_prompt_and_record_without_steps_to_label(project, tmp_path):
    record = _unlabelled("bad_problem", [])
    report = _import(project, [record])
    assert report.records == 1 and report.prompts_created == 1
    task = Task.objects.get()
    # Nothing to label: a steps task with no steps, archived so no queue or judge ever serves it.
    assert task.kind == "steps" and task.n_steps == 0 and task.status == "archived"
    assert Annotation.objects.get().payload == {"labels": [], "first_error": None}
    (row,) = _raw(project, tmp_path)
    back = prm800k_record(row)
    assert json.dumps(back, sort_keys=True) == json.dumps(record, sort_keys=True)


@pytest.mark.parametrize("label", [None, {}, {"steps": None, "finish_reason": "give_up"}])
def test_a_record_with_no_label_round_trips(project, tmp_path, label):
    record = {**copy.deepcopy(RECORD), "label": label}
    assert _import(project, [record]).format == "prm800k"
    assert Task.objects.get().n_steps == 0
    (row,) = _raw(project, tmp_path)
    assert json.dumps(prm800k_record(row), sort_keys=True) == json.dumps(record, sort_keys=True)


def test_give_up_after_some_steps_labels_the_steps_before_the_empty_one(project, tmp_path):
    record = copy.deepcopy(RECORD)
    record["label"]["steps"] = record["label"]["steps"][:2] + [
        {"completions": [], "human_completion": None, "chosen_completion": None},
    ]
    record["label"]["finish_reason"] = "give_up"
    _import(project, [record])
    task = Task.objects.get()
    assert task.n_steps == 2 and task.status == "complete" and task.responses.get().steps == STEPS[:2]
    assert Annotation.objects.get().payload == {"labels": [1, 0], "first_error": None}
    (row,) = _raw(project, tmp_path)
    assert json.dumps(prm800k_record(row), sort_keys=True) == json.dumps(record, sort_keys=True)


def test_a_prm800k_file_mixing_labelled_and_unlabelled_records_imports_whole(project, tmp_path):
    give_up = copy.deepcopy(RECORD)
    give_up["label"]["steps"] = give_up["label"]["steps"][:1] + [{"completions": None, "human_completion": None, "chosen_completion": None}]
    give_up["label"]["finish_reason"] = "give_up"
    bad = _unlabelled("bad_problem", [])
    bad_other = {**_unlabelled("bad_problem", []), "labeler": "9a0a7b5e-0000-4000-8000-000000000000"}
    empty_give_up = _unlabelled("give_up", [])
    records = [RECORD, bad, give_up, bad_other, empty_give_up]
    report = _import(project, records)
    assert (report.records, report.prompts_created, report.tasks_created, report.annotations_created) == (5, 1, 3, 5)
    assert sorted(Task.objects.values_list("n_steps", flat=True)) == [0, 1, 3]
    back = sorted(json.dumps(prm800k_record(r), sort_keys=True) for r in _raw(project, tmp_path))
    assert back == sorted(json.dumps(r, sort_keys=True) for r in records)
    # The unlabelled records add no row to a stepwise export and no item to step agreement.
    snapshot = snapshot_create(project=project, format="stepwise", style="standard", out_path=tmp_path / "s.jsonl")
    with open(snapshot.path, encoding="utf-8") as f:
        assert sorted(len(json.loads(line)["completions"]) for line in f) == [1, 3]
    step_table, first_table = steps_tables(project=project, sources=["human"], raters=Raters())
    assert len(step_table.item_tasks) == 4 and len(first_table.item_tasks) == 2
    again = _import(project, records)
    assert again.annotations_created == 0 and again.annotations_existing == 5 and again.tasks_existing == 3


@pytest.mark.parametrize(
    "label, message",
    [
        ({"steps": "none"}, "label.steps must be a list or null, not text"),
        ({"steps": {"0": {}}}, "label.steps must be a list or null, not an object"),
        ("bad_problem", "label must be an object or null, not text"),
        ({"steps": [{"completions": [], "human_completion": None, "chosen_completion": None}, RECORD["label"]["steps"][0]]},
         "label.steps[0] has no completion but a later step has one"),
        ({"steps": ["a step"]}, "label.steps[0] must be an object"),
    ],
)
def test_a_malformed_prm800k_label_is_a_line_error(project, label, message):
    with pytest.raises(Invalid) as caught:
        _import(project, [RECORD, {**RECORD, "label": label}])
    assert caught.value.fields["file"] == [f"line 2: {message}"]
    assert Prompt.objects.count() == 0


def test_requeue_leaves_a_task_with_no_steps_archived(project):
    _import(project, [RECORD, _unlabelled("bad_problem", [])])
    tasks_requeue(project=project, actor=None, task_ids=list(Task.objects.values_list("id", flat=True)))
    assert dict(Task.objects.values_list("n_steps", "status")) == {3: "open", 0: "archived"}
