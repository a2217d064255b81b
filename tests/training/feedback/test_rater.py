"""The AI rater: labels through the queue or beside people, never twice per task, with full provenance;
exports that include, exclude or weigh AI labels."""

import json
import uuid
from pathlib import Path

import pytest

from annotation import services
from annotation.models import Annotation, Assignment, Membership, Task
from annotation.services.exports import snapshot_create
from tests.support.backends import FirstPositionBackend
from training.feedback.jobs import feedback_job_create
from training.feedback.rater import ai_rater_ensure

from .conftest import run_to_end


def human_label(task, user, choice):
    assignment = services.task_next_for(annotator=user, project=task.project)
    assert assignment.task_id == task.pk
    shown = "AB"[assignment.shown_order.index("AB".index(choice))]
    return services.annotation_submit(assignment=assignment, annotator=user, payload={"choice": shown},
                                      client_id=uuid.uuid4())


def test_labels_beside_people_take_no_slot_and_carry_provenance(project, make_task, tiny, constitution):
    tasks = [make_task("pairwise") for _ in range(3)]
    before = {t.pk: (t.open_slots, t.submitted_count, t.status) for t in Task.objects.all()}
    job = feedback_job_create(project=project, kind="judge", model=tiny)
    assert run_to_end(job.pk) == "succeeded"
    job.refresh_from_db()
    assert job.result["labels"] == 3
    labels = Annotation.objects.filter(source="ai")
    assert labels.count() == 3 and not labels.filter(assignment__isnull=False).exists()
    assert {t.pk: (t.open_slots, t.submitted_count, t.status) for t in Task.objects.all()} == before
    assert not Assignment.objects.exists()
    membership = Membership.objects.get(user=job.rater, project=project)
    assert membership.is_ai and not membership.counts_toward_overlap and membership.role == "annotator"
    assert not job.rater.has_usable_password()
    for a in labels:
        d = a.details
        assert d["judge_model"] == "tiny-judge" and d["principle"] in ("harmless", "honest")
        assert d["constitution_version"] == 1 and a.constitution_version_id == constitution.pk
        assert sum(d["order_ab"]) == pytest.approx(1) and sum(d["order_ba"]) == pytest.approx(1)
        assert "Options:" in d["prompt_ab"][0]["content"]
        assert a.payload["choice"] == ("A" if d["p_first"] > 0.5 else "B")
    assert {t.pk for t in tasks} == set(labels.values_list("task_id", flat=True))


def test_the_rater_never_labels_a_task_twice(project, make_task, tiny, constitution):
    make_task("pairwise")
    make_task("pairwise")
    first = feedback_job_create(project=project, kind="judge", model=tiny)
    run_to_end(first.pk)
    second = feedback_job_create(project=project, kind="judge", model=tiny)
    assert run_to_end(second.pk) == "succeeded"
    second.refresh_from_db()
    assert second.result["labels"] == 0 and second.result["already_labelled"] == 2
    assert Annotation.objects.filter(source="ai").count() == 2
    # The database refuses a second current label by the same rater on a task.
    a = Annotation.objects.filter(source="ai").first()
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Annotation.objects.create(task=a.task, kind=a.kind, author=a.author, source="ai", payload=a.payload)


def test_a_new_constitution_version_supersedes_the_old_label(project, make_task, tiny, constitution):
    from .conftest import PRINCIPLES

    task = make_task("pairwise")
    run_to_end(feedback_job_create(project=project, kind="judge", model=tiny).pk)
    services.constitution_version_create(project=project, principles=PRINCIPLES[:1], note="v2")
    run_to_end(feedback_job_create(project=project, kind="judge", model=tiny).pk)
    labels = list(Annotation.objects.filter(task=task, source="ai").order_by("id"))
    assert [a.details["constitution_version"] for a in labels] == [1, 2]
    assert [a.is_current for a in labels] == [False, True] and labels[1].supersedes_id == labels[0].pk


def test_a_rater_counting_toward_overlap_takes_slots_through_the_queue(project, make_task, member, tiny, constitution):
    tasks = [make_task("pairwise", required=1) for _ in range(2)] + [make_task("pairwise", required=2)]
    job = feedback_job_create(project=project, kind="judge", model=tiny, counts_toward_overlap=True)
    assert run_to_end(job.pk) == "succeeded"
    rater = job.rater
    assert Membership.objects.get(user=rater, project=project).counts_toward_overlap
    assignments = Assignment.objects.filter(annotator=rater)
    assert assignments.count() == 3 and set(assignments.values_list("state", flat=True)) == {"submitted"}
    for t in Task.objects.filter(pk__in=[t.pk for t in tasks]):
        assert t.submitted_count == 1
        assert t.open_slots == t.required - 1
    ai = Annotation.objects.filter(source="ai")
    assert ai.count() == 3 and not ai.filter(assignment__isnull=True).exists()
    # Full tasks are done; a person still gets the one with a slot left, and the rater never gets a task twice.
    person = member("annotator")
    assert services.task_next_for(annotator=person, project=project).task_id == tasks[2].pk
    again = feedback_job_create(project=project, kind="judge", model=tiny, counts_toward_overlap=True,
                                scope={"limit": 5}) if Task.objects.filter(open_slots__gt=0).exists() else None
    if again is not None:
        run_to_end(again.pk)
    assert Annotation.objects.filter(source="ai").count() == 3


class PrefersMarked(FirstPositionBackend):
    """Prefers whichever option's text holds `GOOD`, in any order it is shown."""

    def logprobs(self, conversations, candidates, *, prefix=""):
        out = []
        for c in conversations:
            text = c[-1]["content"]
            good_first = text.index("GOOD") < text.index("(B) ")
            out.append({candidates[0]: 0.0 if good_first else -3.0, candidates[1]: -3.0 if good_first else 0.0})
        return out


def test_queue_labels_map_the_shown_order_back_to_canonical_positions(project, make_task, tiny, constitution):
    good_positions = {}
    for i in range(6):
        task = make_task("pairwise", required=1)
        good = i % 2
        response = task.task_responses.get(position=good).response
        response.content = "GOOD " + response.content
        response.save(update_fields=["content"])
        good_positions[task.pk] = "AB"[good]
    job = feedback_job_create(project=project, kind="judge", model=tiny, counts_toward_overlap=True)
    assert run_to_end(job.pk, backend=PrefersMarked()) == "succeeded"
    labels = Annotation.objects.filter(source="ai").select_related("assignment")
    assert labels.count() == 6
    # Whatever order the queue showed, the stored (canonical) choice is the marked response.
    assert {a.task_id: a.payload["choice"] for a in labels} == good_positions
    assert len({tuple(a.assignment.shown_order) for a in labels}) >= 1


def test_a_purely_position_biased_judge_gives_ties(project, make_task, tiny, constitution):
    make_task("pairwise")
    job = feedback_job_create(project=project, kind="judge", model=tiny)
    run_to_end(job.pk, backend=FirstPositionBackend())
    a = Annotation.objects.get(source="ai")
    assert a.details["flipped"] is True and a.payload == {"choice": "tie", "strength": None}


def test_an_exported_preference_snapshot_excludes_ai_labels_when_asked(
    project, make_task, member, tiny, constitution, settings, tmp_path
):
    settings.SNAPSHOT_DIR = tmp_path
    human_task = make_task("pairwise")
    human_label(human_task, member("annotator"), "A")
    ai_only = make_task("pairwise")
    rater = ai_rater_ensure(project=project, model_name="tiny-judge")
    from training.feedback.labels import Label
    from training.feedback.rater import write_direct

    write_direct(rater=rater, labels=[Label(ai_only.pk, {"choice": "B", "strength": 2}, "harmless"),
                                      Label(human_task.pk, {"choice": "B", "strength": 2}, "harmless")],
                 model_name="tiny-judge", constitution=constitution)

    def rows(snapshot):
        return [json.loads(line) for line in Path(snapshot.path).read_text().splitlines()]

    both = snapshot_create(project=project, format="preference", sources=["human", "ai"])
    humans = snapshot_create(project=project, format="preference", sources=["human"])
    weighted = snapshot_create(project=project, format="preference", sources=["human", "ai"], ai_weight=0.5)
    assert humans.spec["sources"] == ["human"] and "ai_weight" not in humans.spec
    assert both.spec["sources"] == ["ai", "human"] and both.spec["ai_weight"] == 1.0
    assert weighted.spec["ai_weight"] == 0.5
    human_prompt = human_task.prompt.messages
    assert [r["prompt"] for r in rows(humans)] == [human_prompt]  # the AI-only task is left out
    # Counted as a person, the AI's B ties the person's A on the shared task: no row for it.
    assert [r["prompt"] for r in rows(both)] == [ai_only.prompt.messages]
    # At half weight the person's A wins the shared task; the AI alone still decides the AI-only task.
    assert len(rows(weighted)) == 2
    shared = [row for row in rows(weighted) if row["prompt"][0]["content"] == human_task.prompt.messages[0]["content"]][0]
    first = human_task.task_responses.order_by("position").first().response.content
    assert shared["chosen"][0]["content"] == first


def test_ai_weight_out_of_range_is_a_field_error(project):
    from common.errors import Invalid

    with pytest.raises(Invalid) as exc:
        snapshot_create(project=project, format="preference", ai_weight=2)
    assert "ai_weight" in exc.value.fields


@pytest.mark.parametrize("subset", ["all", "network"])
def test_rankings_ratings_and_steps_get_valid_labels(project, make_task, tiny, constitution, subset):
    ranking = make_task("ranking", n=5)
    rating = make_task("rating")
    steps = make_task("steps")
    job = feedback_job_create(project=project, kind="judge", model=tiny, ranking_subset=subset)
    assert run_to_end(job.pk) == "succeeded"
    labels = {a.task_id: a for a in Annotation.objects.filter(source="ai")}
    r = labels[ranking.pk]
    assert sorted(sum(r.payload["order"], [])) == list(range(5)) and sorted(r.payload["ranks"]) == [1, 2, 3, 4, 5]
    judged = {(p["i"], p["j"]) for p in r.details["pairs"]}
    from training.feedback.judge import ranking_pairs

    assert judged == set(ranking_pairs(5, subset=subset))
    assert len(judged) == (10 if subset == "all" else 8)  # Batcher's network sorts 5 with 8 distinct comparisons
    assert all(sum(p["order_ab"]) == pytest.approx(1) for p in r.details["pairs"])
    likert = labels[rating.pk].payload["likert"]
    assert set(likert) == {"helpful", "honest", "harmless"} and all(1 <= v <= 7 for v in likert.values())
    assert len(labels[steps.pk].payload["labels"]) == steps.n_steps == 3
    assert all(v in (-1, 0, 1) for v in labels[steps.pk].payload["labels"])
