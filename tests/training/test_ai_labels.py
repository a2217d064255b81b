"""One path for AI labels: a judge's probability becomes the same stored label, with the same provenance, whether
a feedback job or a round asked for it."""

import math

import pytest

from annotation import services
from annotation.models import Annotation
from training.feedback.labels import STRENGTH_2_FROM, STRENGTH_3_FROM, TIE_BAND, label_tasks, pairwise_payload
from training.feedback.rater import ai_rater_ensure, task_views, write_direct
from training.models import Model
from training.rounds import judging
from training.rounds.models import Round

PROBABILITIES = [0.5, 0.55, 0.6, 0.62, 0.7, 0.76, 0.9, 0.45, 0.38, 0.3, 0.1]


class LeaningJudge:
    """A judge backend that gives the response it is told about probability `p` of being better, wherever it is
    shown (so both orders agree and P(first) is exactly `p`)."""

    def __init__(self, favoured: str, other: str, p: float):
        self.favoured, self.other, self.p = favoured, other, p

    def logprobs(self, conversations, candidates, *, prefix=""):
        out = []
        for conversation in conversations:
            text = "\n".join(m["content"] for m in conversation)
            q = self.p if text.index(self.favoured) < text.index(self.other) else 1 - self.p
            out.append({"A": math.log(q), "B": math.log(1 - q)})
        return out


def test_the_label_thresholds_are_named_and_applied():
    assert pairwise_payload(0.5) == {"choice": "tie", "strength": None}
    assert pairwise_payload(0.5 + TIE_BAND / 2)["choice"] == "tie"
    assert pairwise_payload(0.5 + STRENGTH_2_FROM * 0.99) == {"choice": "A", "strength": 1}
    assert pairwise_payload(0.5 + STRENGTH_2_FROM + 1e-6) == {"choice": "A", "strength": 2}
    assert pairwise_payload(0.5 - STRENGTH_3_FROM - 1e-6) == {"choice": "B", "strength": 3}


@pytest.fixture
def judge(db):
    return Model.objects.create(name="leaning-judge", backend="transformers", path="/nowhere", roles=["judge", "policy"])


@pytest.mark.parametrize("p", PROBABILITIES)
def test_the_same_probability_gives_the_same_label_from_a_round_and_a_feedback_job(project, make_task, judge, p):
    constitution = services.constitution_version_create(project=project, principles=[{
        "key": "kind", "name": "Kind", "critique_request": "Unkind?", "revision_request": "Be kind.",
        "comparison_question": "Which is kinder?"}])
    by_feedback, by_round = make_task("pairwise"), make_task("pairwise")
    first, second = [tr.response.content for tr in by_feedback.task_responses.order_by("position")]
    backend = LeaningJudge(first, second, p)

    # A feedback job's judge labels (training.feedback: label_tasks, then the rater writes them).
    rater = ai_rater_ensure(project=project, model_name=judge.name)
    labels = label_tasks(backend, task_views([by_feedback.pk]), list(constitution.principles.all()))
    write_direct(rater=rater, labels=labels, model_name=judge.name, constitution=constitution, job_id=7)
    # A round's judge labels (no principles: the round's own comparison question).
    rnd = Round.objects.create(project=project, number=1, policy=judge, judge=judge)
    messages = by_round.prompt.messages
    judged = judging.compare_pairs(backend, [(messages, first, second)])
    judging.write_judgments(rnd, project, zip([by_round], judged))

    from_feedback = Annotation.objects.get(task=by_feedback, source="ai")
    from_round = Annotation.objects.get(task=by_round, source="ai")
    assert from_round.payload == from_feedback.payload == pairwise_payload(p)
    # The same provenance: the judge's rater, the judge model, the guideline version, both orders' probabilities.
    assert from_round.author == from_feedback.author == rater
    assert from_round.guideline_version_id == from_feedback.guideline_version_id
    shared = {"judge_model", "principle", "constitution_version", "feedback_job", "round", "order_ab", "order_ba",
              "p_first"}
    assert shared <= set(from_round.details) and shared <= set(from_feedback.details)
    assert (from_round.details["round"], from_feedback.details["feedback_job"]) == (rnd.pk, 7)
    assert from_round.details["p_first"] == pytest.approx(p) == from_feedback.details["p_first"]
