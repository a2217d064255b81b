"""Migration 0005: imported preference annotations that stated neither a margin nor both scores lose the
strength 1 they were stored with; every other annotation keeps its strength."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from annotation.models import Annotation

BEFORE = [("annotation", "0004_delivery_reason_not_answer")]
AFTER = [("annotation", "0005_imported_strength_not_stated")]


def _imported(**stated) -> dict:
    return {"import": {"file": "pairs.jsonl", "line": 1, "format": "preference", **stated}}


@pytest.mark.django_db(transaction=True)
def test_only_imported_preferences_without_margin_or_scores_lose_their_strength(project):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    ids = {}
    try:
        old = executor.loader.project_state(BEFORE).apps
        prompt = old.get_model("annotation", "Prompt").objects.create(
            project_id=project.pk, messages=[{"role": "user", "content": "Which is kinder?"}], content_hash="h" * 64
        )
        task = old.get_model("annotation", "Task").objects.create(
            project_id=project.pk, kind="pairwise", prompt=prompt, n_responses=2, status="complete"
        )
        rows = {
            "no margin": ({"choice": "A", "strength": 1}, _imported()),
            "margin": ({"choice": "A", "strength": 1}, _imported(margin=1.0)),
            "scores": ({"choice": "A", "strength": 1}, _imported(score_chosen=7, score_rejected=6)),
            "human": ({"choice": "B", "strength": 1}, {}),
        }
        OldAnnotation = old.get_model("annotation", "Annotation")
        for name, (payload, details) in rows.items():
            ids[name] = OldAnnotation.objects.create(task=task, kind="pairwise", payload=payload, details=details).pk
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        migrated = executor.loader.project_state(AFTER).apps.get_model("annotation", "Annotation")
        strength = {name: migrated.objects.get(pk=pk).payload["strength"] for name, pk in ids.items()}
        assert strength == {"no margin": None, "margin": 1, "scores": 1, "human": 1}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert Annotation.objects.get(pk=ids["no margin"]).payload == {"choice": "A", "strength": None}
