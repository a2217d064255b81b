"""Training run pages: launch a run with its method's hyperparameters, follow its metrics live, read its evaluation."""

import json
import re

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from annotation.models import DatasetSnapshot
from common.errors import DomainError
from training.models import Model, TrainingMethod
from training.services import runs as run_services

from ..access import ENGINEERS, OBSERVERS, project_view
from .launch import cancel_view, found_or_404, launch_id, page_context


def _shown_default(value) -> str:
    # Strings as they are unless they hold characters an input field loses (a newline): those as JSON.
    if isinstance(value, str) and value.isprintable():
        return value
    return json.dumps(value)


def _parsed(text: str, type_text: str):
    if type_text == "a string" and not text.startswith('"'):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _launch_context(project, method: str, post=None) -> dict:
    fields = run_services.config_fields(method)
    for f in fields:
        f["shown"] = _shown_default(f["default"])
        f["value"] = post.get(f"hp_{f['name']}", f["shown"]) if post is not None else f["shown"]
    return {
        "methods": TrainingMethod.values,
        "method": method,
        "hp_fields": [f for f in fields if "." not in f["name"]],
        "base_models": Model.objects.filter(is_active=True).exclude(path="").order_by("name"),
        "reward_models": [m for m in Model.objects.filter(is_active=True).exclude(path="").order_by("name")
                          if "reward" in (m.roles or [])],
        "snapshots": DatasetSnapshot.objects.filter(project=project,
                                                    format__in=run_services.SNAPSHOT_FORMATS[method]).order_by("-id")[:50],
    }


@project_view(OBSERVERS)
def training_runs(request, project):
    can_launch = request.membership.role in ENGINEERS
    method = request.POST.get("method") or request.GET.get("method") or TrainingMethod.SFT
    if method not in TrainingMethod.values:
        method = TrainingMethod.SFT
    errors: dict = {}
    launch = None
    if request.method == "POST":
        if not can_launch:
            raise PermissionDenied("Only admins and engineers launch training runs.")
        launch = _launch_context(project, method, request.POST)
        hyper = {f["name"]: _parsed(f["value"].strip(), f["type"]) for f in launch["hp_fields"]
                 if f["value"].strip() != f["shown"].strip()}
        base = Model.objects.filter(name=request.POST.get("base_model", "")).first()
        snapshot = DatasetSnapshot.objects.filter(project=project, pk=request.POST.get("snapshot") or 0).first()
        reward = Model.objects.filter(name=request.POST.get("reward_model") or "").first()
        if base is None or snapshot is None:
            errors = {"base_model" if base is None else "snapshot": ["choose one"]}
        else:
            try:
                run = run_services.training_run_create(project=project, method=method, base_model=base, snapshot=snapshot,
                                                       hyperparameters=hyper, reward_model=reward,
                                                       created_by=request.user, client_id=launch_id(request))
            except DomainError as exc:
                messages.error(request, exc.message)
                errors = exc.fields
            else:
                messages.success(request, f"Training run {run.pk} queued.")
                return redirect("training:training_run", project.slug, run.pk)
    elif can_launch:
        launch = _launch_context(project, method)
    if launch:
        for f in launch["hp_fields"]:
            f["errors"] = errors.get(f["name"], [])
        launch["errors"] = {k: v for k, v in errors.items() if k not in {f["name"] for f in launch["hp_fields"]}}
    runs = run_services.training_runs_for(project=project).order_by("-id")[:50]
    ctx = page_context(gen_project=project, runs=runs, launch=launch, can_launch=can_launch)
    return render(request, "frontend/training/training_runs.html", ctx, status=400 if errors else 200)


def _run_or_404(project, run_id):
    return found_or_404(run_services.training_run_get(project=project, run_id=run_id), "training run")


@project_view(OBSERVERS)
def training_run_detail(request, project, run_id):
    run = _run_or_404(project, run_id)
    data_url = reverse("training:training_run_data", args=[project.slug, run.pk])
    evaluation = (run.result or {}).get("evaluation") or {}
    ctx = page_context(gen_project=project, run=run, can_launch=request.membership.role in ENGINEERS, data_url=data_url,
               evaluation=evaluation, **_evaluation_view(evaluation))
    return render(request, "frontend/training/training_run.html", ctx)


SHOWN_PAIRS = 100


def _evaluation_view(evaluation: dict) -> dict:
    """What the run page shows of a stored evaluation: the reward model's report (accuracy with its interval,
    reward against length, score distributions, ensemble disagreement, most disputed pairs first), the PRM's
    (step accuracy, best-of-N against the outcome model), and every other value as a flat table."""
    view: dict = {"reward_eval": None, "prm_eval": None, "score_histograms": None}
    shown: set[str] = set()
    if isinstance(evaluation.get("accuracy_ci95"), list) and "pairs" in evaluation:
        reward = dict(evaluation)
        ensemble = evaluation.get("ensemble")
        if isinstance(ensemble, dict):
            pairs = sorted(ensemble.get("per_pair") or [], key=lambda p: (p["agreement"], -p["margin_std"]))
            reward["ensemble"] = {**ensemble, "disputed": pairs[:SHOWN_PAIRS], "listed": len(pairs)}
        view["reward_eval"] = reward
        scores = evaluation.get("scores") or {}
        chosen, rejected = scores.get("histogram_chosen") or {}, scores.get("histogram_rejected") or {}
        if chosen.get("edges"):
            view["score_histograms"] = {"edges": chosen["edges"], "chosen": chosen.get("counts", []),
                                        "rejected": rejected.get("counts", [])}
        shown |= {"pairs", "accuracy", "accuracy_ci95", "loss", "mean_margin", "length", "scores", "ensemble"}
    if isinstance(evaluation.get("best_of_n"), dict) and isinstance(evaluation.get("step"), dict):
        view["prm_eval"] = evaluation
        shown |= {"step", "best_of_n", "scores"}
    view["evaluation_rows"] = _flat_rows({k: v for k, v in evaluation.items() if k not in shown})
    return view


def _flat_rows(data: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flat_rows(value, name + "."))
        elif isinstance(value, float):
            rows.append((name, f"{value:.4g}"))
        elif isinstance(value, list):
            if len(value) <= 8 and all(isinstance(v, (int, float, str)) or v is None for v in value):
                rows.append((name, ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)))
            else:
                rows.append((name, f"{len(value)} values (in the API's result)"))
        else:
            rows.append((name, "" if value is None else str(value)))
    return rows


@project_view(OBSERVERS)
def training_run_data(request, project, run_id):
    """What the run page polls: status, step, log tail, result and the metrics series (after `since_step`)."""
    run = _run_or_404(project, run_id)
    try:
        since = int(request.GET.get("since_step", -1))
    except ValueError:
        since = -1
    return JsonResponse({
        "id": run.pk, "status": run.status, "step": run.step, "active": run.is_active, "error": run.error,
        "cancel_requested": run.cancel_requested, "log_tail": run.log_tail, "result": run.result,
        "output_model": run.output_model.name if run.output_model else None,
        "metrics": (series := run_services.training_run_series(run=run, since_step=since)),
        "groups": chart_groups(series),
    })


# The run page's four charts and the metric names each plots (names are the trainers' own: "loss",
# "member0/loss", "loss/policy", "rewards/margins", "eval/accuracy", "kl", "approx_kl", "response_length", ...).
CHARTS = {
    "loss": re.compile(r"(^|[/_])loss($|[/_])"),
    "reward": re.compile(r"reward|accurac|margin|best_of_n"),
    "kl": re.compile(r"(^|[/_])kl($|[/_])"),
    "length": re.compile(r"length|(^|[/_])len$"),
}


def chart_groups(names) -> dict[str, list[str]]:
    """Metric names by chart; a name goes to the first chart that claims it (a loss is never a reward)."""
    groups: dict[str, list[str]] = {key: [] for key in CHARTS}
    for name in sorted(names):
        key = next((k for k, pattern in CHARTS.items() if pattern.search(name)), None)
        if key is not None:
            groups[key].append(name)
    return groups


training_run_cancel = cancel_view(
    _run_or_404, lambda run: run_services.training_run_cancel(run=run), "training:training_run",
    "Training run {job.pk} is being cancelled; the trainer saves a checkpoint first.")
