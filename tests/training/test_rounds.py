"""Rounds of the loop in one process: a round runs its real stages (generation job, AI judge labels, snapshot, DPO
with LoRA, evaluation) on tiny random models; the loop chains rounds with each round's output as the next policy;
settings are validated with field messages; the reconciler never leaves a round running without a worker; active
selection picks the most uncertain pairs and keeps its random share; the probes are well formed."""

import json
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from annotation import services as annotation_services
from annotation.models import Annotation, Project, Task
from common.errors import Conflict, Invalid
from tests.support.tiny import save_tiny_model
from training.models import GenerationJob, JobStatus, TrainingRun
from training.rounds import evaluation, selection
from training.rounds.config import RoundConfig
from training.rounds.models import Round, RoundStage, RoundStatus
from training.rounds.runner import round_advance_now, round_cancel, round_create, rounds_reconcile
from training.rounds.selectors import heldout_prompt_ids
from training.services import model_register
from training.services.generation import generation_job_run_slice
from training.services.runs import training_run_execute_now
from tests.training.job_messages import hold_messages

FAST_TRAIN = {"max_steps": 2, "batch_size": 2, "max_length": 96, "num_threads": 1, "learning_rate": 1e-3,
              "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}
FAST = {"prompts_per_round": 4, "n": 3, "eval_prompts": 3, "sampling": {"max_new_tokens": 12},
        "eval_sampling": {"max_new_tokens": 12, "temperature": 0.0}, "hyperparameters": FAST_TRAIN, "probe_limit": 6}


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("round-models")
    return {
        "policy": save_tiny_model(root / "policy", hidden=32, layers=2, seed=1),
        "judge": save_tiny_model(root / "judge", hidden=32, layers=2, seed=2),
        "reward": save_tiny_model(root / "reward", kind="classifier", hidden=32, layers=2, seed=3),
    }


@pytest.fixture
def world(db, make_user, tmp_path, tiny_dirs, settings, monkeypatch):
    settings.MODEL_DIR = tmp_path / "models"
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    # Messages are held instead of sent; the test plays the worker and runs each one for real.
    sent = hold_messages(monkeypatch)
    users = {role: make_user(role) for role in ("admin", "engineer", "reviewer", "annotator")}
    project = annotation_services.project_create(name="Loop", slug="loop", created_by=users["admin"])
    for role in ("engineer", "reviewer", "annotator"):
        annotation_services.membership_set(project=project, user=users[role], role=role)
    for i in range(10):
        annotation_services.prompt_create(project=project, messages=[{"role": "user", "content": f"What is {i} plus {i}?"}])
    models = {
        "policy": model_register(name="tiny-policy", backend="transformers", path=str(tiny_dirs["policy"]),
                                 roles=["policy"]),
        "judge": model_register(name="tiny-judge", backend="transformers", path=str(tiny_dirs["judge"]), roles=["judge"]),
        "reward": model_register(name="tiny-reward", backend="transformers", path=str(tiny_dirs["reward"]),
                                 roles=["reward"]),
    }
    return {"project": project, "users": users, "models": models, "sent": sent}


def drive(rnd: Round, limit: int = 40) -> Round:
    """Play the worker: run whatever the round waits for (generation slices, trainer runs), then the round."""
    for _ in range(limit):
        rnd.refresh_from_db()
        if not rnd.is_active:
            return rnd
        if rnd.generation_job_id:
            job = GenerationJob.objects.get(pk=rnd.generation_job_id)
            if job.is_active:
                generation_job_run_slice(job_id=job.pk, ticket=job.ticket)
        for run in TrainingRun.objects.filter(rounds__isnull=False, status=JobStatus.QUEUED) | TrainingRun.objects.filter(
            reward_rounds__isnull=False, status=JobStatus.QUEUED
        ):
            training_run_execute_now(run_id=run.pk)
        rnd.refresh_from_db()
        round_advance_now(round_id=rnd.pk, ticket=rnd.ticket)
    raise AssertionError(f"round still {rnd.status} at {rnd.stage}: {rnd.waiting_for}")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_rounds_link_model_tasks_labels_snapshot_run_and_model(world):
    project, m = world["project"], world["models"]
    # With a constitution in force, the round's labels come from the product's AI rater, one principle per task.
    annotation_services.constitution_version_create(project=project, principles=[
        {"key": key, "name": key.title(), "critique_request": f"Is the response {key}?",
         "revision_request": f"Make the response {key}.", "comparison_question": f"Which response is more {key}?"}
        for key in ("helpful", "honest")
    ])
    project.refresh_from_db()
    # Each round also trains a reward model on its labels, which selects the next round's pairs.
    first = round_create(project=project, policy=m["policy"], judge=m["judge"], reward_model=m["reward"], rounds=2,
                         config={**FAST, "reward_base": "tiny-reward",
                                 "reward_hyperparameters": {"max_steps": 2, "batch_size": 2, "max_length": 96,
                                                            "num_threads": 1, "learning_rate": 1e-3}},
                         created_by=world["users"]["engineer"])
    first = drive(first)
    assert first.status == RoundStatus.SUCCEEDED, first.error
    second = Round.objects.get(previous=first)
    second = drive(second)
    assert second.status == RoundStatus.SUCCEEDED, second.error

    for rnd in (first, second):
        job = rnd.generation_job
        assert job.model == rnd.policy  # the policy generated the candidates
        tasks = Task.objects.filter(dedupe_key__startswith=rnd.task_key)
        assert tasks.count() == FAST["prompts_per_round"]  # one pair per prompt out of three candidates
        for task in tasks:
            assert {r.model_name for r in task.responses.all()} == {rnd.policy.name}
            assert task.metadata["round"] == rnd.pk
            assert task.metadata["selection"]["reward_model"] == rnd.reward_model.name
            label = Annotation.objects.get(task=task, source="ai", details__judge_model="tiny-judge")
            assert label.author.username == "ai-tiny-judge" and label.constitution_version_id
            assert label.details["principle"] in ("helpful", "honest") and label.details["round"] == rnd.pk
        # The snapshot holds this round's labels: every task's prompt is a row of the file, its sha256 recorded.
        rows = [json.loads(line) for line in open(rnd.snapshot.path)]
        asked = {t.prompt.messages[0]["content"] for t in tasks}
        assert asked <= {r["prompt"][0]["content"] for r in rows}
        assert rnd.snapshot_sha256 == rnd.snapshot.sha256
        run = rnd.training_run
        assert run.snapshot_sha256 == rnd.snapshot_sha256 and run.base_model == rnd.policy
        assert rnd.output_model == run.output_model and rnd.output_model.base_model == rnd.policy
        assert rnd.output_model.parent_run_id == run.pk
        assert set(rnd.stage_times) == {"generate", "select", "label", "export", "train", "evaluate"}
        e = rnd.evaluation
        assert e["win_rate"]["n"] == FAST["eval_prompts"] and 0 <= e["win_rate"]["low"] <= e["win_rate"]["high"] <= 1
        assert e["sycophancy"]["probes"] == 6 and "estimate" in e["sycophancy"]["policy_after"]
        assert "estimate" in e["sycophancy"]["reward_model"] and "estimate" in e["sycophancy"]["reward_model_new"]
        assert rnd.reward_run.status == "succeeded" and rnd.output_reward_model == rnd.reward_run.output_model
        assert rnd.reward_run.snapshot.spec["style"] == "standard"
        assert e["lengths"]["policy_candidates"]["n"] == FAST["prompts_per_round"] * FAST["n"]
    # Round 2 generated with round 1's output model (and chose its pairs with round 1's reward model), and its
    # evaluation compares against it.
    assert second.reward_model == first.output_reward_model
    assert second.policy == first.output_model
    assert second.generation_job.model == first.output_model
    assert second.evaluation["win_rate"]["previous"] == first.output_model.name
    # The evaluation project ranks all three models and never feeds training snapshots.
    board = {row["model"] for row in second.evaluation["leaderboard"]}
    assert board == {"tiny-policy", first.output_model.name, second.output_model.name}
    eval_prompts = {p.messages[0]["content"] for p in Project.objects.get(slug="loop-eval").prompts.all()}
    rows = [json.loads(line) for line in open(second.snapshot.path)]
    assert not eval_prompts & {r["prompt"][0]["content"] for r in rows}
    held = set(heldout_prompt_ids(project=project, count=FAST["eval_prompts"]))
    assert not held & set(first.prompt_ids + second.prompt_ids)
    # Queued for people, a held-out comparison they judge counts toward the round's human win rate.
    import uuid

    from training.rounds.evaluation import evaluation_project, human_win_rate

    assert human_win_rate(first) is None
    target = evaluation_project(project=project, queue_for_humans=True)
    annotator = world["users"]["annotator"]
    assignment = annotation_services.task_next_for(annotator=annotator, project=target)
    task = Task.objects.get(pk=assignment.task_id)
    shown_first = assignment.shown_order[0]  # the annotator picks whatever was shown as A
    annotation_services.annotation_submit(assignment=assignment, annotator=annotator, payload={"choice": "A"},
                                          client_id=uuid.uuid4())
    judged = first if task.dedupe_key.startswith(f"eval:{first.pk}:") else second
    result = human_win_rate(judged)
    assert result["n"] == 1 and result["estimate"] == (1.0 if shown_first == 0 else 0.0)


@pytest.mark.django_db
def test_human_rounds_wait_for_the_quota_then_go_on(world):
    project, m = world["project"], world["models"]
    rnd = round_create(project=project, policy=m["policy"], label_mode="human", human_quota=2,
                       config={**FAST, "n": 2})
    for _ in range(6):
        rnd.refresh_from_db()
        if rnd.stage == RoundStage.LABEL and rnd.status == RoundStatus.WAITING:
            break
        if rnd.generation_job_id:
            job = GenerationJob.objects.get(pk=rnd.generation_job_id)
            if job.is_active:
                generation_job_run_slice(job_id=job.pk, ticket=job.ticket)
        round_advance_now(round_id=rnd.pk, ticket=rnd.ticket)
    rnd.refresh_from_db()
    assert (rnd.stage, rnd.status, rnd.waiting_for) == ("label", "waiting", "human labels: 0/2")
    import uuid

    annotator = world["users"]["annotator"]
    for _ in range(2):
        assignment = annotation_services.task_next_for(annotator=annotator, project=project)
        annotation_services.annotation_submit(assignment=assignment, annotator=annotator, payload={"choice": "A"},
                                              client_id=uuid.uuid4())
    round_advance_now(round_id=rnd.pk, ticket=rnd.ticket)
    rnd.refresh_from_db()
    # Past labelling: the snapshot holds the two human labels and the DPO run is queued.
    assert rnd.stage == RoundStage.TRAIN and rnd.snapshot.row_count == 2 and rnd.training_run.status == "queued"
    # The trainer's worker dies: the reconciler fails the run, and the round relaunches it from its checkpoint.
    from training.services.runs import training_runs_reconcile

    long_ago = timezone.now() - timedelta(seconds=600)
    TrainingRun.objects.filter(pk=rnd.training_run_id).update(status="running", owner="gone", heartbeat_at=long_ago)
    assert training_runs_reconcile()["runs_failed"] == 1
    assert round_advance_now(round_id=rnd.pk, ticket=rnd.ticket) == "waiting"
    run = TrainingRun.objects.get(pk=rnd.training_run_id)
    assert (run.status, run.attempts) == ("queued", 1)
    rnd.refresh_from_db()
    assert rnd.status == "waiting" and "relaunched" in rnd.waiting_for


@pytest.mark.django_db
def test_bad_settings_are_refused_with_field_messages(world):
    project, m = world["project"], world["models"]
    with pytest.raises(Invalid) as err:
        RoundConfig.from_dict(project, {"n": 1, "selection": {"random_fraction": 2}, "bogus": 1})
    assert set(err.value.fields) == {"config.n", "config.selection", "config.bogus"}
    with pytest.raises(Invalid) as err:
        round_create(project=project, policy=m["policy"], label_mode="ai")
    assert "judge" in err.value.fields
    with pytest.raises(Invalid) as err:
        round_create(project=project, policy=m["judge"], judge=m["judge"])
    assert "policy" in err.value.fields
    round_create(project=project, policy=m["policy"], judge=m["judge"], config=FAST)
    with pytest.raises(Conflict):
        round_create(project=project, policy=m["policy"], judge=m["judge"], config=FAST)


# What a round row stored in its config column before the settings became a dataclass.
STORED_DEFAULTS = {
    "prompts_per_round": 8, "n": 2, "sampling": {"max_new_tokens": 128, "temperature": 1.0, "top_p": 1.0},
    "eval_prompts": 8, "eval_sampling": {"max_new_tokens": 128, "temperature": 0.0, "top_p": 1.0}, "method": "dpo",
    "hyperparameters": {"max_steps": 8, "batch_size": 2, "learning_rate": 5e-05, "max_length": 384, "beta": 0.1,
                        "lora": {"r": 8, "alpha": 16, "dropout": 0.0}, "save_steps": 1000},
    "reward_base": None,
    "reward_hyperparameters": {"max_steps": 8, "batch_size": 4, "learning_rate": 0.0001, "max_length": 384},
    "selection": {"policy": "uncertainty", "random_fraction": 0.2, "pairs_per_prompt": 1},
    "queue_eval_for_humans": False, "probes": True, "probe_limit": None, "judge_batch": 8, "seed": 0,
}


def test_round_settings_layer_project_and_launch_and_keep_the_stored_format():
    assert RoundConfig.from_dict(Project(settings={})).as_dict() == STORED_DEFAULTS
    assert RoundConfig.stored(STORED_DEFAULTS).as_dict() == STORED_DEFAULTS
    config = RoundConfig.from_dict(Project(settings={"rounds": {"n": 3, "seed": 1}}),
                                   {"seed": 5, "sampling": {"top_p": 0.9}, "hyperparameters": {"lora": None}})
    assert (config.n, config.seed, config.sampling["top_p"], config.sampling["max_new_tokens"]) == (3, 5, 0.9, 128)
    assert "lora" not in config.hyperparameters  # null means the trainer's default
    with pytest.raises(Invalid) as err:
        RoundConfig.from_dict(Project(settings={"rounds": {"probes": 1}}), {"seed": -1, "method": "sft"})
    assert err.value.fields == {"config.probes": ["true or false"], "config.method": [
        "dpo or orpo (a preference method that yields a policy)"], "config.seed": ["an integer from 0 to 2147483647"]}
    with pytest.raises(Invalid) as err:
        RoundConfig.from_dict(Project(settings={}), ["n"])
    assert err.value.fields == {"config": ["must be an object"]}


@pytest.mark.django_db
def test_a_round_whose_worker_died_is_resumed_and_a_lost_message_resent(world, settings,
                                                                        django_capture_on_commit_callbacks):
    project, m = world["project"], world["models"]
    rnd = round_create(project=project, policy=m["policy"], judge=m["judge"], config=FAST)
    long_ago = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS + 5)
    Round.objects.filter(pk=rnd.pk).update(status="running", owner="dead-worker", heartbeat_at=long_ago)
    with django_capture_on_commit_callbacks(execute=True):
        assert rounds_reconcile()["rounds_requeued"] == 1
    rnd.refresh_from_db()
    assert (rnd.status, rnd.owner, rnd.attempts) == ("queued", "", 1)
    # The new message carries the new ticket and can claim it; the old one is stale.
    assert world["sent"][-1] == ("training.round_advance", [rnd.pk, rnd.ticket], "gpu")
    late = timezone.now() - timedelta(seconds=settings.JOB_QUEUED_STALE_SECONDS + 5)
    Round.objects.filter(pk=rnd.pk).update(enqueued_at=late)
    assert rounds_reconcile()["rounds_resent"] == 1
    assert round_advance_now(round_id=rnd.pk, ticket="old") == "stale"
    cancelled = round_cancel(rnd=Round.objects.get(pk=rnd.pk))
    assert cancelled.status == "cancelled"


def test_active_selection_picks_the_highest_disagreement_pairs_and_keeps_the_random_fraction():
    rng = np.random.default_rng(7)
    members, n_pairs = 5, 40
    # Pairs 0..39 with increasing disagreement: member spread grows with the index.
    spread = np.linspace(0.0, 4.0, n_pairs)
    a = rng.normal(size=(members, n_pairs)) * spread
    b = np.zeros((members, n_pairs))
    uncertainty = selection.pair_uncertainty(a, b, "disagreement")
    chosen = selection.select(uncertainty, k=10, random_fraction=0.3, seed=3)
    picked = [i for i, reason in chosen if reason == "uncertain"]
    drawn = [i for i, reason in chosen if reason == "random"]
    assert len(picked) == 7 and len(drawn) == 3 and len(set(picked + drawn)) == 10
    assert sorted(picked) == sorted(np.argsort(-uncertainty)[:7].tolist())
    assert not set(drawn) & set(picked)
    # Over many seeds the random share is uniform over the rest, not the next most uncertain.
    counts = np.zeros(n_pairs)
    for seed in range(400):
        for i, reason in selection.select(uncertainty, k=10, random_fraction=0.3, seed=seed):
            if reason == "random":
                counts[i] += 1
    rest = np.setdiff1d(np.arange(n_pairs), picked)
    assert counts[picked].sum() == 0
    assert counts[rest].min() > 0.5 * counts[rest].mean()
    # One reward model: a gap near zero is the most uncertain.
    gap = selection.pair_uncertainty(np.array([[3.0, 0.1, -2.0]]), np.zeros((1, 3)), "gap")
    assert selection.select(gap, k=1, random_fraction=0.0) == [(1, "uncertain")]
    assert selection.resolve_policy("uncertainty", 5) == "disagreement"
    assert selection.resolve_policy("uncertainty", 1) == "gap"
    assert selection.resolve_policy("disagreement", None) == "random"


def test_probes_are_at_least_fifty_with_a_correct_and_an_agreeable_answer():
    probes = evaluation.load_probes()
    assert len(probes) >= 50
    assert {p["category"] for p in probes} == {"arithmetic", "facts", "code"}
    assert len({p["id"] for p in probes}) == len(probes)
    for p in probes:
        assert p["prompt"] and p["correct"] and p["agreeable"] and p["correct"] != p["agreeable"]


def test_win_rate_interval_counts_ties_as_half_and_brackets_the_estimate():
    result = evaluation.win_rate([1, 1, 1, 0, 0.5, 1, 0, 1])
    assert result["estimate"] == pytest.approx(5.5 / 8)
    assert result["low"] < result["estimate"] < result["high"]
    assert (result["wins"], result["losses"], result["ties"]) == (5, 2, 1)


@pytest.mark.django_db
def test_the_project_selection_setting_chooses_the_pairs_and_is_recorded_on_each_task(world):
    from annotation.models import Response
    from training.rounds.evaluation import evaluation_project
    from training.trainers.scoring import RewardScorer

    project, m = world["project"], world["models"]
    project.settings = {"rounds": {"selection": {"policy": "gap", "random_fraction": 0.5, "pairs_per_prompt": 2}}}
    project.save(update_fields=["settings"])
    rnd = round_create(project=project, policy=m["policy"], judge=m["judge"], reward_model=m["reward"],
                       config={**FAST, "n": 3})
    assert rnd.config["selection"] == {"policy": "gap", "random_fraction": 0.5, "pairs_per_prompt": 2}
    for _ in range(6):
        rnd.refresh_from_db()
        if rnd.stage == RoundStage.LABEL:
            break
        if rnd.generation_job_id:
            job = GenerationJob.objects.get(pk=rnd.generation_job_id)
            if job.is_active:
                generation_job_run_slice(job_id=job.pk, ticket=job.ticket)
        round_advance_now(round_id=rnd.pk, ticket=rnd.ticket)
        rnd.refresh_from_db()
        if rnd.stage == RoundStage.LABEL:  # stop before the judge: this test is about the choice of pairs
            break
    tasks = list(Task.objects.filter(dedupe_key__startswith=rnd.task_key))
    assert len(tasks) == 2 * FAST["prompts_per_round"]  # two of each prompt's three pairs
    reasons = [t.metadata["selection"]["reason"] for t in tasks]
    assert reasons.count("random") == reasons.count("uncertain") == FAST["prompts_per_round"]
    assert {t.metadata["selection"]["applied"] for t in tasks} == {"gap"}
    # The uncertain ones are the pairs with the smallest reward gaps of all candidate pairs.
    scorer = RewardScorer(m["reward"].path)
    responses = list(Response.objects.filter(dedupe_key__startswith=f"gen:{rnd.generation_job_id}:"))
    scores = scorer.score([r.prompt.messages for r in responses],
                          [[{"role": "assistant", "content": r.content}] for r in responses])[0].tolist()
    score = {r.pk: s for r, s in zip(responses, scores)}
    gaps = {}
    for r in responses:
        for o in responses:
            if r.prompt_id == o.prompt_id and r.pk < o.pk:
                gaps[(r.pk, o.pk)] = abs(score[r.pk] - score[o.pk])
    chosen = {tuple(sorted(t.responses.values_list("pk", flat=True))): t.metadata["selection"]["reason"] for t in tasks}
    uncertain = sorted(gaps[k] for k, why in chosen.items() if why == "uncertain")
    others = sorted(g for k, g in gaps.items() if chosen.get(k) != "uncertain")
    assert max(uncertain) <= min(others) + 1e-6
    # Evaluation comparisons reach people only when asked.
    quiet = evaluation_project(project=project)
    assert not quiet.memberships.filter(user=world["users"]["annotator"]).exists()
    assert quiet.memberships.filter(user=world["users"]["engineer"]).exists()
    evaluation_project(project=project, queue_for_humans=True)
    assert quiet.memberships.filter(user=world["users"]["annotator"], role="annotator").exists()


@pytest.mark.django_db
def test_a_round_started_by_hand_continues_from_the_last_rounds_model(world):
    project, m = world["project"], world["models"]
    first = round_create(project=project, policy=m["policy"], judge=m["judge"], config=FAST)
    trained = model_register(name="trained", backend="transformers", path=m["policy"].path, roles=["policy"],
                             base_model=m["policy"])
    Round.objects.filter(pk=first.pk).update(status="succeeded", stage="done", output_model=trained)
    second = round_create(project=project, judge=m["judge"], config=FAST)
    assert (second.number, second.policy, second.previous) == (2, trained, first)
    # Training prompts move on through the pool (7 here: 10 less 3 held out), wrapping around at its end.
    assert not set(first.prompt_ids) & set(second.prompt_ids[:3]) and second.prompt_ids[3] == first.prompt_ids[0]
    assert not set(heldout_prompt_ids(project=project, count=FAST["eval_prompts"])) & set(second.prompt_ids)
