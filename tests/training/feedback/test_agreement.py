"""Agreement with people: accuracy, kappa, Brier, reliability bins and position bias, per principle/version/judge."""


import pytest

from annotation import services
from tests.support.backends import FirstPositionBackend
from training.feedback.agreement import agreement_report
from training.feedback.jobs import feedback_job_create

from .conftest import run_to_end
from .test_rater import PrefersMarked, human_label


@pytest.fixture
def labelled_tasks(project, make_task, member):
    """Six pairwise tasks; people prefer the response marked GOOD (position alternates)."""
    person = member("annotator")
    tasks = []
    for i in range(6):
        task = make_task("pairwise", required=1)
        good = i % 2
        response = task.task_responses.get(position=good).response
        response.content = "GOOD " + response.content
        response.save(update_fields=["content"])
        human_label(task, person, "AB"[good])
        tasks.append(task)
    return tasks


def test_a_judge_that_follows_people_scores_full_agreement(project, labelled_tasks, tiny, constitution):
    run_to_end(feedback_job_create(project=project, kind="judge", model=tiny).pk, backend=PrefersMarked())
    report = agreement_report(project=project)
    overall = report["overall"]
    assert report["tasks_with_both"] == 6
    assert overall["accuracy"] == 1.0 and overall["kappa"] == pytest.approx(1.0)
    assert overall["position_flip_rate"] == 0.0
    assert overall["brier"] < 0.01  # confident and right
    assert set(report["by_principle"]) <= {"harmless", "honest"}
    assert list(report["by_version"]) == ["v1"] and list(report["by_judge"]) == ["tiny-judge"]
    assert sum(b["n"] for b in overall["reliability"]) == 6


def test_a_position_biased_judge_is_detected(project, labelled_tasks, tiny, constitution):
    run_to_end(feedback_job_create(project=project, kind="judge", model=tiny).pk, backend=FirstPositionBackend())
    overall = agreement_report(project=project)["overall"]
    # It always answers (A): every verdict flips with the order, and the first position gets the mass.
    assert overall["position_flip_rate"] == 1.0
    assert overall["first_position_preference"] > 0.8
    # Averaged over both orders it says nothing about the responses: a coin flip, Brier 0.25.
    assert overall["brier"] == pytest.approx(0.25)
    assert overall["accuracy"] is None  # every label is an exact tie


def test_versions_are_compared_side_by_side(project, labelled_tasks, tiny, constitution):
    from .conftest import PRINCIPLES

    run_to_end(feedback_job_create(project=project, kind="judge", model=tiny).pk, backend=FirstPositionBackend())
    services.constitution_version_create(project=project, principles=PRINCIPLES[1:], note="v2")
    run_to_end(feedback_job_create(project=project, kind="judge", model=tiny).pk, backend=PrefersMarked())
    report = agreement_report(project=project)
    assert report["by_version"]["v1"]["position_flip_rate"] == 1.0
    assert report["by_version"]["v2"]["accuracy"] == 1.0
    assert report["overall"]["ai_labels"] == 6  # current labels only: the v2 ones
    assert report["by_version_principle"]["v2 · honest"]["with_human_majority"] == 6


def test_tasks_without_a_human_majority_do_not_count(project, make_task, member, tiny, constitution):
    task = make_task("pairwise", required=2)
    human_label(task, member("annotator"), "A")
    human_label(task, member("annotator"), "B")
    run_to_end(feedback_job_create(project=project, kind="judge", model=tiny).pk, backend=FirstPositionBackend())
    report = agreement_report(project=project)
    assert report["tasks_with_human_majority"] == 0 and report["overall"]["with_human_majority"] == 0
    assert report["overall"]["ai_labels"] == 1
