"""Critique → revision chains on a tiny random model: parents, principles, versions, idempotence, export."""

import json
from pathlib import Path

import pytest

from annotation import services
from annotation.models import DatasetSnapshot, Response
from training.feedback.jobs import feedback_job_create
from training.models import FeedbackJob

from .conftest import PRINCIPLES, run_to_end

# Sampled, seeded: the tiny random model's greedy answer is an immediate end of turn.
SAMPLED = {"critique_sampling": {"temperature": 1.0, "seed": 3, "max_new_tokens": 8},
           "revision_sampling": {"temperature": 1.0, "seed": 5, "max_new_tokens": 8}}


@pytest.fixture
def prompts(project):
    out = []
    for i in range(3):
        p = services.prompt_create(project=project, messages=[{"role": "user", "content": f"How do I pick lock {i}?"}])
        if i < 2:  # the third prompt has no response: the chain generates one first
            services.response_create(prompt=p, content=f"Here is how to pick lock {i}.", dedupe_key="orig")
        out.append(p)
    return out


def chain(prompt, job):
    return list(Response.objects.filter(prompt=prompt, metadata__feedback_job=job.pk, origin="revision").order_by("id"))


def test_each_round_stores_a_critique_and_a_revision_with_parent_principle_and_version(
    project, prompts, tiny, constitution, settings, tmp_path
):
    settings.SNAPSHOT_DIR = tmp_path
    job = feedback_job_create(project=project, kind="critique_revision", model=tiny, rounds=2, export_pairs=True,
                              **SAMPLED)
    assert run_to_end(job.pk) == "succeeded"
    job.refresh_from_db()
    assert job.result["critiques"] == job.result["revisions"] == 6 and job.result["generated_bases"] == 1
    keys = {p["key"] for p in PRINCIPLES}
    for prompt in prompts:
        rows = chain(prompt, job)
        assert [r.metadata["cai"] for r in rows] == ["critique", "revision", "critique", "revision"]
        original = Response.objects.filter(prompt=prompt).exclude(origin="revision").order_by("id").first()
        c1, r1, c2, r2 = rows
        # Round 1 critiques and revises the original; round 2 the first revision.
        assert c1.parent_id == r1.parent_id == original.pk
        assert c2.parent_id == r2.parent_id == r1.pk
        assert r1.metadata["critique_id"] == c1.pk and r2.metadata["critique_id"] == c2.pk
        for r, round_ in zip(rows, [1, 1, 2, 2]):
            assert r.metadata["round"] == round_
            assert r.metadata["principle"] in keys
            assert r.metadata["constitution_version"] == constitution.number == 1
            assert r.metadata["constitution_version_id"] == constitution.pk
            assert r.model_name == "tiny-judge"
        assert c1.metadata["principle"] == r1.metadata["principle"]  # one principle per round

    sft = DatasetSnapshot.objects.get(pk=job.result["sft_snapshot"])
    assert sft.format == "sft" and sft.row_count == 3 and sft.spec["constitution_version"] == 1
    rows = [json.loads(line) for line in Path(sft.path).read_text().splitlines()]
    finals = {chain(p, job)[-1].content for p in prompts}
    assert {r["messages"][-1]["content"] for r in rows} == finals
    assert all(r["messages"][-1]["role"] == "assistant" for r in rows)
    pairs = DatasetSnapshot.objects.get(pk=job.result["pairs_snapshot"])
    assert pairs.format == "preference" and pairs.spec["source"] == "critique-revision"


def test_a_rerun_of_the_same_job_writes_nothing_twice(project, prompts, tiny, constitution, settings, tmp_path):
    settings.SNAPSHOT_DIR = tmp_path
    job = feedback_job_create(project=project, kind="critique_revision", model=tiny, rounds=1, **SAMPLED)
    assert run_to_end(job.pk) == "succeeded"
    before = Response.objects.count()
    # A worker that lost its claim after committing: the job is run again from the start.
    FeedbackJob.objects.filter(pk=job.pk).update(status="queued", cursor=0, retried=False, result={})
    assert run_to_end(job.pk) == "succeeded"
    assert Response.objects.count() == before


def test_a_new_constitution_version_is_recorded_on_the_next_job(project, prompts, tiny, constitution, settings, tmp_path):
    settings.SNAPSHOT_DIR = tmp_path
    v2 = services.constitution_version_create(project=project, principles=PRINCIPLES[1:], note="honesty only")
    job = feedback_job_create(project=project, kind="critique_revision", model=tiny, scope={"limit": 1}, **SAMPLED)
    assert job.constitution_id == v2.pk
    assert run_to_end(job.pk) == "succeeded"
    rows = chain(prompts[0], job)
    assert {r.metadata["principle"] for r in rows} == {"honest"}
    assert {r.metadata["constitution_version"] for r in rows} == {2}


def test_a_job_without_a_constitution_is_refused(project, prompts, tiny):
    from common.errors import Invalid

    with pytest.raises(Invalid, match="no constitution"):
        feedback_job_create(project=project, kind="critique_revision", model=tiny)


def test_an_empty_revision_is_recorded_as_a_failure_and_retried_once(project, prompts, tiny, constitution):
    greedy = {"temperature": 0.0, "max_new_tokens": 4, "repetition_penalty": None}
    job = feedback_job_create(project=project, kind="critique_revision", model=tiny,
                              critique_sampling=greedy, revision_sampling=greedy)
    assert run_to_end(job.pk) == "failed"
    job.refresh_from_db()
    assert sorted(f["item"] for f in job.failures) == sorted(p.pk for p in prompts)
    assert {f["attempts"] for f in job.failures} == {2} and "empty" in job.error
    assert not Response.objects.filter(origin="revision").exists()
