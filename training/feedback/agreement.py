"""How far the AI judge agrees with people, per principle, per constitution version and per judge model.

On pairwise tasks that have both a strict human majority (A or B over the current human labels) and AI labels
(every AI label, superseded ones included, so older constitution versions stay comparable):
accuracy of the AI's choice against the human majority, Cohen's kappa between the two (annotation.quality),
the Brier score of the soft label P(A) against the majority, reliability-diagram bins (mean P(A) against the
share of A majorities per bin), and, over every AI label whether people labelled the task or not, position bias:
the share of labels whose verdict flips when the order is swapped, and the mean probability given to whatever
is shown first (0.5 = no preference for a position).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from django.db.models import Count, Q

from annotation.models import Annotation, AnnotationSource, Project, TaskKind
from annotation.quality.agreement import cohen_kappa

BINS = 10


def human_majorities(*, project: Project) -> dict[int, int]:
    """task id -> 1 when the current human labels' strict majority is A, 0 when it is B (other tasks left out)."""
    rows = (
        Annotation.objects.filter(task__project=project, kind=TaskKind.PAIRWISE, source=AnnotationSource.HUMAN,
                                  is_current=True)
        .values("task_id")
        .annotate(a=Count("id", filter=Q(payload__choice="A")), b=Count("id", filter=Q(payload__choice="B")),
                  other=Count("id", filter=~Q(payload__choice__in=["A", "B"])))
    )
    out = {}
    for r in rows:
        if r["a"] > max(r["b"], r["other"]):
            out[r["task_id"]] = 1
        elif r["b"] > max(r["a"], r["other"]):
            out[r["task_id"]] = 0
    return out


def ai_labels(*, project: Project) -> list[dict]:
    """Every AI pairwise label with what the metrics need, superseded ones included."""
    rows = (
        Annotation.objects.filter(task__project=project, kind=TaskKind.PAIRWISE, source=AnnotationSource.AI)
        .values_list("task_id", "author_id", "details", "constitution_version__number", "is_current")
        .order_by("id")
    )
    out = []
    for task_id, author_id, details, version, current in rows:
        details = details or {}
        p = details.get("p_first")
        ab, ba = details.get("order_ab"), details.get("order_ba")
        if p is None or not ab or not ba:
            continue  # an AI label imported without probabilities
        out.append({
            "task": task_id, "rater": author_id, "p": float(p), "flipped": bool(details.get("flipped")),
            "first_position": (float(ab[0]) + float(ba[0])) / 2,
            "principle": details.get("principle") or "?", "version": version or details.get("constitution_version") or 0,
            "judge": details.get("judge_model") or "?", "current": current,
        })
    return out


def _metrics(labels: list[dict], majority: dict[int, int], bins: int) -> dict:
    paired = [(l["p"], majority[l["task"]]) for l in labels if l["task"] in majority]
    decided = [(p, y) for p, y in paired if abs(p - 0.5) > 1e-9]  # an exact coin flip is a tie, not a choice
    out = {
        "ai_labels": len(labels),
        "with_human_majority": len(paired),
        "accuracy": None, "kappa": None, "brier": None,
        "position_flip_rate": sum(l["flipped"] for l in labels) / len(labels) if labels else None,
        "first_position_preference": sum(l["first_position"] for l in labels) / len(labels) if labels else None,
        "reliability": [],
    }
    if decided:
        out["accuracy"] = sum((p > 0.5) == bool(y) for p, y in decided) / len(decided)
        matrix = np.array([[1.0 if p > 0.5 else 0.0, float(y)] for p, y in decided])
        kappa = cohen_kappa(matrix)
        out["kappa"] = None if math.isnan(kappa) else kappa
    if paired:
        out["brier"] = sum((p - y) ** 2 for p, y in paired) / len(paired)
        counts = [[0, 0.0, 0] for _ in range(bins)]  # n, sum of p, A majorities
        for p, y in paired:
            k = min(bins - 1, int(p * bins))
            counts[k][0] += 1
            counts[k][1] += p
            counts[k][2] += y
        out["reliability"] = [
            {"bin": k, "low": k / bins, "high": (k + 1) / bins, "n": n, "mean_p": s / n, "observed": a / n}
            for k, (n, s, a) in enumerate(counts) if n
        ]
    return out


def agreement_report(*, project: Project, bins: int = BINS) -> dict:
    """{overall, by_principle, by_version, by_judge, by_version_principle} of `_metrics` dicts (JSON-ready)."""
    majority = human_majorities(project=project)
    labels = ai_labels(project=project)
    groups: dict[str, dict] = {"by_principle": defaultdict(list), "by_version": defaultdict(list),
                               "by_judge": defaultdict(list), "by_version_principle": defaultdict(list)}
    for l in labels:
        groups["by_principle"][l["principle"]].append(l)
        groups["by_version"][f"v{l['version']}"].append(l)
        groups["by_judge"][l["judge"]].append(l)
        groups["by_version_principle"][f"v{l['version']} · {l['principle']}"].append(l)
    current = [l for l in labels if l["current"]]
    return {
        "tasks_with_human_majority": len(majority),
        "tasks_with_both": len({l["task"] for l in labels if l["task"] in majority}),
        "overall": _metrics(current, majority, bins),
        **{name: {key: _metrics(group, majority, bins) for key, group in sorted(g.items())} for name, g in groups.items()},
    }
