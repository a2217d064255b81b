"""Every training method end to end through the platform: annotations made through the services (an import of
labelled data and submissions from the queue), a snapshot of the method's format exported from them, a run launched
through the API on a tiny random model and executed as the gpu worker executes it, then the stored metrics, the
output model registered with its lineage, and the checkpoint loaded back with transformers (peft for adapters)."""

import io
import json
import os
import uuid

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers/datasets are imported

import pytest  # noqa: E402
import torch  # noqa: E402
from django.template.defaultfilters import floatformat  # noqa: E402
from django.test import Client  # noqa: E402

from annotation import services as annotation_services  # noqa: E402
from annotation.services.exports import snapshot_create  # noqa: E402
from annotation.services.imports import data_import  # noqa: E402
from tests.support.clients import api
from tests.support.snapshots import (  # noqa: E402
    separable_preference_rows,
    sft_rows,
    stepwise_rows,
    unpaired_rows,
)
from tests.support.tiny import save_tiny_model  # noqa: E402
from tests.training.job_messages import hold_messages  # noqa: E402
from training.backends import Sampling, open_backend  # noqa: E402
from training.models import (  # noqa: E402
    JobStatus,
    ModelRole,
    TrainingMetric,
    TrainingRun,
)
from training.selectors import model_lineage  # noqa: E402
from training.services import model_register  # noqa: E402
from training.services.runs import training_run_execute_now  # noqa: E402

pytestmark = [
    pytest.mark.slow,  # each run starts a trainer process (torch, transformers, TRL): several seconds apiece
    # peft reads `model.is_gradient_checkpointing`, which transformers 5.23 deprecates; not ours to fix.
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

# Two optimizer steps on short sequences, one CPU thread: what every run below shares.
FAST = {"max_steps": 2, "batch_size": 4, "max_length": 96, "num_threads": 1, "save_steps": 1, "learning_rate": 1e-3}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture
def world(db, make_user, tmp_path, tiny_dir, settings, monkeypatch, django_capture_on_commit_callbacks):
    settings.MODEL_DIR = tmp_path / "models"
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    sent = hold_messages(monkeypatch)
    users = {role: make_user(role) for role in ("admin", "engineer", "reviewer", "annotator")}
    project = annotation_services.project_create(name="Methods", slug="methods", created_by=users["admin"],
                                                 required_annotations=1)
    for role in ("engineer", "reviewer", "annotator"):
        annotation_services.membership_set(project=project, user=users[role], role=role)
    base = model_register(name="tiny", backend="transformers", path=str(tiny_dir))
    return {"users": users, "project": project, "base": base, "sent": sent,
            "on_commit": django_capture_on_commit_callbacks}


# --- annotations through the services, then a snapshot -------------------------------------------------------
def _import(world, rows, fmt):
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    report = data_import(project=world["project"], stream=io.BytesIO(data), filename=f"{fmt}.jsonl", format=fmt,
                         created_by=world["users"]["admin"])
    # Identical rows are one record (imports are idempotent by content).
    distinct = {json.dumps(r, sort_keys=True) for r in rows}
    assert report.records == len(rows) and report.annotations_created == len(distinct), report


def _label_from_queue(world, answer) -> int:
    """The annotator works through the queue; `answer(lease)` gives the payload in the order shown."""
    project, annotator = world["project"], world["users"]["annotator"]
    done = 0
    while (lease := annotation_services.task_next_for(annotator=annotator, project=project)) is not None:
        annotation_services.annotation_submit(assignment=lease, annotator=annotator, payload=answer(lease),
                                              client_id=uuid.uuid4(), seconds_spent=3.0)
        done += 1
    return done


def _queue_tasks(world, kind, n, responses):
    """`n` fresh tasks of `kind` whose responses come from `responses(i)` (the first is the better one)."""
    project = world["project"]
    for i in range(n):
        prompt = annotation_services.prompt_create(
            project=project, messages=[{"role": "user", "content": f"Queue question {kind} {i}?"}])
        contents = responses(i)
        made = [annotation_services.response_create(prompt=prompt, content=c, dedupe_key=f"{kind}{i}-{j}",
                                                    steps=c.split("\n") if kind == "steps" else None)
                for j, c in enumerate(contents)]
        annotation_services.task_create(project=project, kind=kind, prompt=prompt, responses=made)


def _first_is_better(lease):
    order = lease.shown_order or [0, 1]
    return {"choice": "AB"[order.index(0)], "strength": 2}


def preference_snapshot(world):
    _import(world, separable_preference_rows(24), "preference")
    _queue_tasks(world, "pairwise", 4, lambda i: [f"Paris is the answer {i}.", f"Rome is the answer {i}."])
    assert _label_from_queue(world, _first_is_better) == 4
    return snapshot_create(project=world["project"], format="preference", created_by=world["users"]["engineer"])


def unpaired_snapshot(world):
    _import(world, unpaired_rows(), "unpaired")
    _queue_tasks(world, "rating", 4, lambda i: [f"A rated answer number {i}."])
    assert _label_from_queue(world, lambda lease: {"thumb": "up" if lease.task.pk % 2 else "down"}) == 4
    return snapshot_create(project=world["project"], format="unpaired", created_by=world["users"]["engineer"])


def sft_snapshot(world):
    _import(world, sft_rows(), "sft")
    _queue_tasks(world, "demonstration", 3, lambda i: [])
    assert _label_from_queue(world, lambda lease: {"text": f"A demonstration answer {lease.task.pk}."}) == 3
    return snapshot_create(project=world["project"], format="sft", created_by=world["users"]["engineer"])


def stepwise_snapshot(world):
    _import(world, stepwise_rows(problems=6, candidates=3), "stepwise")
    _queue_tasks(world, "steps", 3, lambda i: ["Step 1. Two plus two is four.\nStep 2. No, that is wrong."])
    assert _label_from_queue(world, lambda lease: {"labels": [1, -1], "first_error": 1}) == 3
    return snapshot_create(project=world["project"], format="stepwise", style="standard",
                           created_by=world["users"]["engineer"])


# --- one run through the API and the worker's code path ------------------------------------------------------
def run_through_platform(world, *, method, snapshot, steps, role, reward_model=None, **hyper):
    body = {"method": method, "base_model": world["base"].name, "snapshot": snapshot.sha256,
            "hyperparameters": {**FAST, **hyper}}
    if reward_model is not None:
        body["reward_model"] = reward_model.name
    with world["on_commit"](execute=True):
        response = api(world["users"]["engineer"]).post(
            f"/api/v1/projects/{world['project'].slug}/training-runs/", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["snapshot_sha256"] == snapshot.sha256 and response.json()["status"] == JobStatus.QUEUED
    run_id = response.json()["id"]
    assert world["sent"][-1][::2] == ("training.training_run_execute", "gpu")  # sent to the gpu queue once the launch committed

    status = training_run_execute_now(run_id=run_id, worker="test")
    run = TrainingRun.objects.select_related("output_model", "output_model__base_model").get(pk=run_id)
    assert status == JobStatus.SUCCEEDED, (run.error, run.log_tail[-3000:])
    assert run.status == JobStatus.SUCCEEDED and run.owner == "" and run.finished_at is not None
    assert run.step == steps and run.result["status"] == "succeeded" and run.result["steps"] == steps
    # Metrics stored as rows, one value per (step, name), and served as series by the API.
    assert TrainingMetric.objects.filter(run=run, name__contains="loss").exists()
    detail = api(world["users"]["reviewer"]).get(
        f"/api/v1/projects/{world['project'].slug}/training-runs/{run_id}/").json()
    assert detail["status"] == "succeeded" and detail["result"]["steps"] == steps
    assert set(detail["metrics"]) == set(TrainingMetric.objects.filter(run=run).values_list("name", flat=True))

    # The output model: registered with the lineage of parent model, snapshot and run.
    output = run.output_model
    assert output is not None and output.path == run.output_dir and output.roles == [role]
    assert output.base_model == world["base"] and output.parent_run_id == run.pk
    assert output.metadata["training_run"] == run.pk and output.metadata["method"] == method
    assert output.metadata["snapshot_sha256"] == snapshot.sha256 == run.snapshot_sha256
    assert output.metadata["snapshot_id"] == snapshot.pk
    assert [m.name for m in model_lineage(model=output)] == [output.name, world["base"].name]
    model_api = api(world["users"]["reviewer"]).get(f"/api/v1/models/{output.pk}/").json()
    assert model_api["lineage"] == [output.name, world["base"].name]
    # What the run page polls: the same series, each claimed by one of its charts.
    page = Client()
    page.force_login(world["users"]["reviewer"])
    data = page.get(f"/training/p/{world['project'].slug}/runs/{run_id}/data/").json()
    assert data["metrics"] == detail["metrics"] and data["status"] == "succeeded" and not data["active"]
    charted = [name for names in data["groups"].values() for name in names]
    assert len(charted) == len(set(charted)) and data["groups"]["loss"]
    run.charts = {key: set(names) for key, names in data["groups"].items()}
    return run, {name: [p[1] for p in points] for name, points in detail["metrics"].items()}


def _generates(model_row):
    """The registered policy generates through the platform's backend, as the next round's generation job would."""
    backend = open_backend(model_row)
    try:
        out = backend.generate([QUESTION], n=2, sampling=Sampling(max_new_tokens=6, temperature=1.0, seed=0))
    finally:
        backend.close()
    assert len(out) == 1 and len(out[0]) == 2
    assert all(c.completion_tokens >= 1 and c.prompt_tokens > 0 for c in out[0])


def _causal_lm_loads_and_generates(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    ids = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    return model


def _scores(path, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    assert model.config.num_labels == 1
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (len(texts), 1) and torch.isfinite(logits).all()
    return logits[:, 0]


# --- the methods --------------------------------------------------------------------------------------------
def test_sft_run_from_demonstrations(world):
    snapshot = sft_snapshot(world)
    assert snapshot.format == "sft" and snapshot.row_count == len(sft_rows()) + 3
    run, series = run_through_platform(world, method="sft", snapshot=snapshot, steps=2, role=ModelRole.POLICY)
    assert len(series["loss"]) == 2
    _causal_lm_loads_and_generates(run.output_dir)
    _generates(run.output_model)


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_pairwise_preference_methods(world, method):
    snapshot = preference_snapshot(world)
    assert snapshot.format == "preference" and snapshot.row_count == 24 + 4
    run, series = run_through_platform(world, method=method, snapshot=snapshot, steps=2, role=ModelRole.POLICY)
    assert len(series["loss"]) == 2
    assert any(name.startswith("rewards/") for name in series)  # chosen/rejected rewards, margins, accuracies
    assert {n for n in series if n.startswith("rewards/")} <= run.charts["reward"]
    _causal_lm_loads_and_generates(run.output_dir)
    _generates(run.output_model)


def test_kto_run_from_thumbs(world):
    snapshot = unpaired_snapshot(world)
    assert snapshot.format == "unpaired"
    run, series = run_through_platform(world, method="kto", snapshot=snapshot, steps=2, role=ModelRole.POLICY)
    assert len(series["loss"]) == 2 and "kl" in series and "kl" in run.charts["kl"]
    _causal_lm_loads_and_generates(run.output_dir)


def test_dpo_with_lora_adapters_kept_separate(world):
    from peft import AutoPeftModelForCausalLM, PeftConfig

    snapshot = preference_snapshot(world)
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}
    run, series = run_through_platform(world, method="dpo", snapshot=snapshot, steps=2, role=ModelRole.POLICY,
                                       lora=lora, merge_lora=False)
    assert len(series["loss"]) == 2
    # The output is the adapters alone, on top of the registered base model.
    assert os.path.exists(os.path.join(run.output_dir, "adapter_config.json"))
    assert PeftConfig.from_pretrained(run.output_dir).base_model_name_or_path == world["base"].path
    model = AutoPeftModelForCausalLM.from_pretrained(run.output_dir).eval()
    ids = torch.tensor([[1, 5, 6, 7]])
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=ids).logits).all()
    _generates(run.output_model)


def test_reward_model_run_stores_its_evaluation_and_the_page_shows_it(world, client):
    snapshot = preference_snapshot(world)
    run, series = run_through_platform(world, method="reward", snapshot=snapshot, steps=2, role=ModelRole.REWARD,
                                       eval_fraction=0.25)
    evaluation = run.result["evaluation"]
    n = evaluation["pairs"]
    assert n == 7  # a quarter of the 28 pairs is held out
    low, high = evaluation["accuracy_ci95"]
    assert 0 <= low <= evaluation["accuracy"] <= high <= 1
    assert {"pearson", "spearman", "longer_scores_higher"} <= set(evaluation["length"])
    assert sum(evaluation["scores"]["histogram_chosen"]["counts"]) == n
    assert "ensemble" not in evaluation
    assert series["eval/accuracy"] == [evaluation["accuracy"]] and "eval/accuracy" in run.charts["reward"]
    scores = _scores(run.output_dir, ["Paris is the answer.", "Rome is the answer."])
    assert scores.shape == (2,)

    client.force_login(world["users"]["reviewer"])
    page = client.get(f"/training/p/{world['project'].slug}/runs/{run.pk}/").content.decode()
    assert 'id="reward-evaluation"' in page and "Held-out accuracy" in page
    assert all(floatformat(x, 3) in page for x in (evaluation["accuracy"], low, high))
    assert "Reward vs length" in page and 'id="chart-scores"' in page
    assert 'id="ensemble-disagreement"' not in page


def test_reward_ensemble_then_ppo_against_it(world, client):
    snapshot = preference_snapshot(world)
    run, series = run_through_platform(world, method="reward", snapshot=snapshot, steps=4, role=ModelRole.REWARD,
                                       eval_fraction=0.25, ensemble_size=2)
    # Two members of two steps each, both loadable as sequence classifiers; their scores differ (other seeds).
    ensemble = json.loads(open(os.path.join(run.output_dir, "ensemble.json")).read())
    assert ensemble["members"] == ["member-0", "member-1"]
    texts = ["Paris is the answer.", "Rome is the answer."]
    member_scores = [_scores(os.path.join(run.output_dir, m), texts) for m in ensemble["members"]]
    assert not torch.allclose(member_scores[0], member_scores[1])
    assert len(series["member0/loss"]) == 2 and len(series["member1/loss"]) == 2
    report = run.result["evaluation"]["ensemble"]
    assert report["members"] == 2 and len(report["member_accuracy"]) == 2
    assert len(report["per_pair"]) == run.result["evaluation"]["pairs"]
    assert all(0 <= p["agreement"] <= 1 and p["margin_std"] >= 0 for p in report["per_pair"])

    client.force_login(world["users"]["reviewer"])
    page = client.get(f"/training/p/{world['project'].slug}/runs/{run.pk}/").content.decode()
    assert 'id="ensemble-disagreement"' in page and "Member accuracy" in page
    assert page.count('class="pair-row"') == len(report["per_pair"])

    # PPO scores its samples with the registered ensemble (the members' mean).
    reward_model = run.output_model
    ppo, ppo_series = run_through_platform(
        world, method="ppo", snapshot=snapshot, steps=2, role=ModelRole.POLICY, reward_model=reward_model,
        batch_size=4, mini_batch_size=2, ppo_epochs=1, max_new_tokens=8, max_prompt_length=48, kl_coef=0.05,
    )
    assert ppo.reward_model == reward_model
    for name in ("reward", "kl", "entropy", "response_length", "clip_fraction"):
        assert len(ppo_series[name]) == 2, name
    assert all(abs(v) < 50 for v in ppo_series["kl"])
    assert {"loss/policy", "loss/value"} <= ppo.charts["loss"] and "reward" in ppo.charts["reward"]
    assert "kl" in ppo.charts["kl"] and "response_length" in ppo.charts["length"]
    assert os.path.exists(os.path.join(ppo.output_dir, "value_head.pt"))
    _causal_lm_loads_and_generates(ppo.output_dir)
    _generates(ppo.output_model)
    page = client.get(f"/training/p/{world['project'].slug}/runs/{ppo.pk}/").content.decode()
    for chart in ("loss", "reward", "kl", "length"):
        assert f'id="chart-{chart}"' in page


def test_prm_run_from_step_labels(world, client):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    snapshot = stepwise_snapshot(world)
    assert snapshot.format == "stepwise"
    run, series = run_through_platform(world, method="prm", snapshot=snapshot, steps=4, role=ModelRole.REWARD,
                                       eval_fraction=0.34)
    # The PRM and the outcome model it is compared with: two steps each.
    assert len(series["loss"]) == 2 and len(series["orm/loss"]) == 2
    evaluation = run.result["evaluation"]
    best = evaluation["best_of_n"]
    assert best["problems"] >= 1 and best["prm"] is not None and best["orm"] is not None
    assert 0 <= evaluation["step"]["accuracy"] <= 1
    client.force_login(world["users"]["reviewer"])
    page = client.get(f"/training/p/{world['project'].slug}/runs/{run.pk}/").content.decode()
    assert 'id="prm-evaluation"' in page and floatformat(best["prm"]["accuracy"], 3) in page
    # Registered with the reward role, but PPO, which scores whole responses, refuses it as its reward model.
    body = {"method": "ppo", "base_model": "tiny", "snapshot": snapshot.sha256, "reward_model": run.output_model.name}
    refused = api(world["users"]["engineer"]).post(f"/api/v1/projects/{world['project'].slug}/training-runs/",
                                                   body, format="json")
    assert refused.status_code == 400 and "process reward model" in " ".join(refused.json()["fields"]["reward_model"])
    tokenizer = AutoTokenizer.from_pretrained(run.output_dir)
    model = AutoModelForTokenClassification.from_pretrained(run.output_dir).eval()
    assert model.config.num_labels == 2
    batch = tokenizer(["Step 1. Two plus two is four.\nStep 2. No, that is wrong.\n"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[:2] == batch["input_ids"].shape and logits.shape[-1] == 2


def test_ppo_run_scored_by_a_registered_reward_function(world):
    snapshot = sft_snapshot(world)
    run, series = run_through_platform(
        world, method="ppo", snapshot=snapshot, steps=2, role=ModelRole.POLICY, reward_function="repetition_penalty",
        batch_size=4, mini_batch_size=2, ppo_epochs=1, max_new_tokens=8, max_prompt_length=48,
    )
    assert run.reward_model is None and run.hyperparameters["reward_function"] == "repetition_penalty"
    assert len(series["reward"]) == 2
