"""The quality report end to end: tasks labelled through the services, read back as figures,
served over the API to those who may read data and by `manage.py quality`."""

import io
import json
import uuid

import krippendorff
import numpy as np
import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Annotation, AnnotationSource, Role, Task
from annotation.payloads import to_shown
from annotation.quality.aggregation import pairwise_soft_labels, review_candidates
from annotation.quality.report import leaderboard_report, quality_report

CHOICES = ["A", "B", "tie", "both_bad"]
# Canonical answers per pairwise task: the first two annotators agree, the third often does not.
PAIRWISE = [("A", "A", "B"), ("A", "A", "A"), ("B", "B", "A"), ("A", "A", "tie"), ("tie", "tie", "tie"), ("A", "A", "B")]
RANKING = [([[0], [1], [2]], [[0], [1], [2]], [[2], [1], [0]]), ([[0], [1, 2]], [[0], [2], [1]], [[0], [1], [2]])]
RATING = [("up", 6, 6, 2), ("down", 2, 3, 3), ("up", 7, 6, 7)]
STEPS = [([1, -1, 0], [1, -1, 1], [-1, 0, 0]), ([1, 1, 1], [1, 1, 1], [1, 1, -1])]


def _task(project, kind, models, i):
    prompt = services.prompt_create(project=project, messages=[{"role": "user", "content": f"{kind} question {i}?"}])
    responses = [
        services.response_create(
            prompt=prompt, content=f"1. Step one of {m}.\n2. Step two.\n3. Answer {i}.", model_name=m, dedupe_key=f"{m}-{i}"
        )
        for m in models
    ]
    return services.task_create(project=project, kind=kind, prompt=prompt, responses=responses, required=3)


def _payload(kind, answer, rater):
    if kind == "pairwise":
        return {"choice": answer[rater], "strength": 2 if answer[rater] in ("A", "B") else None}
    if kind == "ranking":
        order = answer[rater]
        ranks = [0] * sum(len(g) for g in order)
        for rank, group in enumerate(order, start=1):
            for p in group:
                ranks[p] = rank
        return {"order": order, "ranks": ranks}
    if kind == "rating":
        return {"thumb": answer[0], "likert": {"helpful": answer[1 + rater]}}
    labels = answer[rater]
    return {"labels": labels, "first_error": next((i for i, x in enumerate(labels) if x == -1), None)}


@pytest.fixture
def labelled(project, member):
    """A project whose tasks three annotators labelled through the queue, plus one AI judgment."""
    annotators = [member(Role.ANNOTATOR, f"ann{i}") for i in range(3)]
    services.guideline_version_create(project=project, body="Prefer the more helpful answer.")
    answers: dict[int, tuple] = {}
    for i, answer in enumerate(PAIRWISE):
        models = ("alpha", "beta") if i % 2 == 0 else ("beta", "alpha")
        flipped = tuple({"A": "B", "B": "A"}.get(c, c) for c in answer) if i % 2 else answer
        answers[_task(project, "pairwise", models, i).pk] = flipped
    for i, answer in enumerate(RANKING):
        answers[_task(project, "ranking", ("alpha", "beta", "gamma"), i).pk] = answer
    for i, answer in enumerate(RATING):
        answers[_task(project, "rating", ("alpha",), i).pk] = answer
    for i, answer in enumerate(STEPS):
        answers[_task(project, "steps", ("gamma",), i).pk] = answer
    gold_task = Task.objects.filter(kind="pairwise").order_by("id").first()
    Task.objects.filter(pk=gold_task.pk).update(gold={"choice": answers[gold_task.pk][0]})

    for rater, user in enumerate(annotators):
        if rater == 2:  # a later guideline version for the third annotator's labels
            services.guideline_version_create(project=project, body="Prefer the more honest answer.")
        while (assignment := services.task_next_for(annotator=user, project=project)) is not None:
            task = Task.objects.get(pk=assignment.task_id)
            canonical = _payload(task.kind, answers[task.pk], rater)
            shown = to_shown(task.kind, canonical, assignment.shown_order)
            if task.kind == "ranking":
                shown = {"order": shown["order"]}
            services.annotation_submit(assignment=assignment, annotator=user, payload=shown, client_id=uuid.uuid4())
    # An AI judge's vote on the first pairwise task, told apart by its model name.
    Annotation.objects.create(
        task=gold_task,
        kind="pairwise",
        source=AnnotationSource.AI,
        payload={"choice": "A", "strength": 1},
        details={"judge_model": "judge-7b"},
    )
    return annotators, answers


@pytest.mark.django_db
def test_report_figures_match_the_labels_given_through_the_queue(project, labelled):
    annotators, answers = labelled
    report = quality_report(project=project, n_resamples=50, seed=1)
    pairwise = report["kinds"]["pairwise"]["choice"]
    assert pairwise["ratings"] == 3 * len(PAIRWISE) + 1
    assert pairwise["items_with_overlap"] == len(PAIRWISE)

    # Alpha from the stored rows equals the reference on the matrix of the answers we gave.
    tasks = sorted(t for t, a in answers.items() if len(a) == 3 and isinstance(a[0], str) and a[0] in CHOICES)
    matrix = np.array([[CHOICES.index(c) for c in answers[t]] for t in tasks], dtype=float)
    ai = np.full((len(tasks), 1), np.nan)
    ai[0, 0] = 0.0  # the AI judge said A on the first pairwise task
    reference = krippendorff.alpha(reliability_data=np.hstack([matrix, ai]).T, level_of_measurement="nominal")
    assert pairwise["alpha"]["nominal"]["estimate"] == pytest.approx(reference, abs=1e-9)
    nominal = pairwise["alpha"]["nominal"]
    assert nominal["low"] <= nominal["estimate"] <= nominal["high"]

    by_name = {row["annotator"]: row for row in pairwise["annotators"]}
    assert set(by_name) == {"ann0", "ann1", "ann2", "judge-7b"}
    assert by_name["judge-7b"]["source"] == "ai"
    assert by_name["ann0"]["majority_agreement"] == 1.0
    assert by_name["ann2"]["pair_agreement"] < by_name["ann0"]["pair_agreement"]
    assert by_name["ann2"]["reliability"] < by_name["ann0"]["reliability"]
    assert by_name["ann0"]["gold_accuracy"] == 1.0 and by_name["ann0"]["gold_items"] == 1
    kappa_pairs = {(p["a"], p["b"]): p for p in pairwise["cohen_kappa"]["pairs"]}
    assert kappa_pairs[("ann0", "ann1")]["kappa"]["estimate"] == pytest.approx(1.0)
    assert set(pairwise["by_guideline_version"]) == {"1", "2", "none"}  # the AI vote has no version
    assert set(pairwise["by_source"]) == {"human", "ai"}

    ranking = report["kinds"]["ranking"]
    assert ranking["tasks_with_overlap"] == len(RANKING)
    assert -1 <= ranking["kendall_tau_b"]["estimate"] <= 1 and 0 <= ranking["kendall_w"]["estimate"] <= 1
    rating = report["kinds"]["rating"]
    assert rating["thumb"]["percent_agreement"]["estimate"] == 1.0
    assert rating["aspects"]["helpful"]["ratings"] == 3 * len(RATING)
    steps = report["kinds"]["steps"]
    # First bad step: task 1 -> (1, 1, 0): one agreeing pair of three; task 2 -> (none, none, 2): one of three.
    assert steps["first_error"]["agreement"]["estimate"] == pytest.approx(1 / 3)
    assert steps["labels"]["items_with_overlap"] == 6

    board = report["leaderboard"]
    assert board["votes_from_pairwise"] == 3 * len(PAIRWISE) + 1
    assert board["votes_from_ranking"] == 3 * 3 * len(RANKING)
    assert board["models"][0]["model"] == "alpha"
    json.dumps(report)  # JSON-ready: no NaN, no numpy types


@pytest.mark.django_db
def test_leaderboard_counts_only_the_chosen_sources_and_honours_the_anchor(project, labelled):
    human = leaderboard_report(project=project, sources=["human"], anchor="beta", n_resamples=30)
    assert human["votes_from_pairwise"] == 3 * len(PAIRWISE)
    beta = next(m for m in human["models"] if m["model"] == "beta")
    assert beta["rating"] == pytest.approx(1000.0)
    ai_only = leaderboard_report(project=project, sources=["ai"], n_resamples=30)
    assert ai_only["votes"] == 1 and [m["model"] for m in ai_only["models"]] == ["alpha", "beta"]
    assert ai_only["regularized"] is True


@pytest.mark.django_db
def test_soft_labels_and_review_candidates(project, labelled):
    _, answers = labelled
    soft = pairwise_soft_labels(project=project, sources=["human"])
    assert len(soft) == len(PAIRWISE)
    for task_id, label in soft.items():
        assert sum(label.probabilities.values()) == pytest.approx(1.0)
        assert label.label == answers[task_id][0]  # the two agreeing annotators win
        if label.label in ("A", "B"):
            assert 0 < label.margin <= 2.0 and label.strength == 2.0
    unsure = review_candidates(project=project, sources=["human"], max_confidence=1.0, limit=3)
    assert len(unsure) == 3
    assert unsure[0]["confidence"] <= unsure[-1]["confidence"]


@pytest.mark.django_db
def test_quality_endpoints_are_for_admins_engineers_and_reviewers(project, labelled, member):
    annotators, _ = labelled
    client = APIClient()
    client.force_authenticate(member(Role.REVIEWER))
    response = client.get("/api/v1/projects/demo/quality/?resamples=20&sources=human")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["sources"] == ["human"] and body["kinds"]["pairwise"]["choice"]["ratings"] == 3 * len(PAIRWISE)
    board = client.get("/api/v1/projects/demo/leaderboard/?resamples=20&anchor=alpha")
    assert board.status_code == 200
    assert board.json()["models"][0]["rating"] == pytest.approx(1000.0)
    assert client.get("/api/v1/projects/demo/quality/?sources=robots").status_code == 400

    client.force_authenticate(annotators[0])
    assert client.get("/api/v1/projects/demo/quality/").status_code == 403
    assert client.get("/api/v1/projects/demo/leaderboard/").status_code == 403
    for role in (Role.ADMIN, Role.ENGINEER):
        client.force_authenticate(member(role))
        assert client.get("/api/v1/projects/demo/leaderboard/?resamples=0").status_code == 200


@pytest.mark.django_db
def test_quality_command_prints_the_report_as_json(project, labelled):
    out = io.StringIO()
    call_command("quality", "--project", "demo", "--json", "--resamples", "20", stdout=out)
    report = json.loads(out.getvalue())
    assert report["project"] == "demo" and report["leaderboard"]["models"]
    text = io.StringIO()
    call_command("quality", "--project", "demo", "--resamples", "0", stdout=text)
    assert "pairwise choice" in text.getvalue() and "leaderboard" in text.getvalue()
