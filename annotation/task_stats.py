"""Per-task agreement figures, kept in `Task.agreement` and `Task.ai_disagreement` by database triggers.

A label's verdict is what agreement is about: the choice (pairwise), the thumb (rating), the order
(ranking) or the step labels (steps); demonstrations and Likert-only ratings have none.

- agreement: the share of the task's current human labels that give its most common verdict, once
  it has two such labels (null before).
- ai_disagreement: the share of the task's current AI labels whose verdict differs from the human
  majority verdict (the one more than half of the human labels give); null while the task has no AI
  label or no such majority.

Triggers, not application code, keep them: every write of an annotation (submit, revise, undo, AI
raters, bulk imports) goes through them, and on the submit hot path they cost no round trip. The
same UPDATE runs on PostgreSQL (from a PL/pgSQL function) and SQLite (a trigger body cannot hold a
WITH, so it is written with derived tables). Rebuilding a table on SQLite (an AlterField) drops its
triggers: they are reinstalled after every `migrate` (post_migrate), and `install()` is idempotent.
"""

import json

from django.db import DEFAULT_DB_ALIAS, connections

_VERDICT_KEYS = ("choice", "thumb", "order", "labels")
_VERDICT = "COALESCE(" + ", ".join(f"payload ->> '{key}'" for key in _VERDICT_KEYS) + ")"


def verdict(payload: dict):
    """A label's verdict in Python, as the triggers read it in SQL (None: no verdict)."""
    value = next((payload[key] for key in _VERDICT_KEYS if payload.get(key) is not None), None)
    return json.dumps(value) if isinstance(value, list) else value  # orders and step labels: as text, like SQL

_LABELS = (
    "(SELECT source, {verdict} AS v FROM annotation_annotation WHERE task_id = {task} AND is_current) AS {alias}"
)

# `{task}` is the task id expression: NEW.task_id in a trigger, annotation_task.id in a backfill.
_REFRESH = """
UPDATE annotation_task SET
  agreement = (
    SELECT CASE WHEN SUM(n) >= 2 THEN CAST(MAX(n) AS DOUBLE PRECISION) / SUM(n) END
    FROM (SELECT COUNT(*) AS n FROM {human} WHERE h.source = 'human' AND h.v IS NOT NULL GROUP BY h.v) AS counts),
  ai_disagreement = (
    SELECT CASE WHEN COUNT(*) > 0
                THEN CAST(SUM(CASE WHEN a.v = m.v THEN 0 ELSE 1 END) AS DOUBLE PRECISION) / COUNT(*) END
    FROM {ai}
    JOIN (SELECT h.v FROM {human} WHERE h.source = 'human' AND h.v IS NOT NULL GROUP BY h.v
          HAVING COUNT(*) * 2 > (SELECT COUNT(*) FROM {all_human} WHERE c.source = 'human' AND c.v IS NOT NULL)
         ) AS m ON 1 = 1
    WHERE a.source = 'ai' AND a.v IS NOT NULL)
WHERE {where}
"""


def refresh_sql(task: str, where: str) -> str:
    labels = {alias: _LABELS.format(verdict=_VERDICT, task=task, alias=alias) for alias in ("h", "a", "c")}
    return _REFRESH.format(human=labels["h"], ai=labels["a"], all_human=labels["c"], where=where)


_EVENTS = {"insert": ("INSERT", "NEW"), "update": ("UPDATE OF is_current, source, payload", "NEW"), "delete": ("DELETE", "OLD")}
_NAME = "annotation_task_stats_{}"


def _postgresql() -> list[str]:
    body = refresh_sql("t", "id = t")
    function = f"""
CREATE OR REPLACE FUNCTION annotation_task_stats() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE t bigint;
BEGIN
  IF TG_OP = 'DELETE' THEN t := OLD.task_id; ELSE t := NEW.task_id; END IF;
  -- Lock the task first: the UPDATE below then reads the labels of every transaction that held it.
  PERFORM 1 FROM annotation_task WHERE id = t FOR UPDATE;
  {body};
  RETURN NULL;
END $$"""
    statements = [function]
    for event, (when, _) in _EVENTS.items():
        name = _NAME.format(event)
        statements += [
            f"DROP TRIGGER IF EXISTS {name} ON annotation_annotation",
            f"CREATE TRIGGER {name} AFTER {when} ON annotation_annotation FOR EACH ROW "
            "EXECUTE FUNCTION annotation_task_stats()",
        ]
    return statements


def _sqlite() -> list[str]:
    statements = []
    for event, (when, row) in _EVENTS.items():
        name = _NAME.format(event)
        body = refresh_sql(f"{row}.task_id", f"id = {row}.task_id")
        statements += [
            f"DROP TRIGGER IF EXISTS {name}",
            f"CREATE TRIGGER {name} AFTER {when} ON annotation_annotation FOR EACH ROW BEGIN {body}; END",
        ]
    return statements


def _drop(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {_NAME.format(e)} ON annotation_annotation" for e in _EVENTS] + [
            "DROP FUNCTION IF EXISTS annotation_task_stats()"
        ]
    return [f"DROP TRIGGER IF EXISTS {_NAME.format(e)}" for e in _EVENTS]


def _execute(statements, using: str, params=None) -> None:
    with connections[using].cursor() as cursor:
        for sql in statements:
            cursor.execute(sql, params)


def install(using: str = DEFAULT_DB_ALIAS) -> None:
    """(Re)create the triggers; safe to run any number of times."""
    _execute(_postgresql() if connections[using].vendor == "postgresql" else _sqlite(), using)


def uninstall(using: str = DEFAULT_DB_ALIAS) -> None:
    _execute(_drop(connections[using].vendor), using)


def backfill(*, task_ids: list[int] | None = None, using: str = DEFAULT_DB_ALIAS) -> None:
    """Recompute the figures of these tasks (of every task with annotations when None)."""
    if task_ids is None:
        where, params = "id IN (SELECT task_id FROM annotation_annotation)", None
    elif not task_ids:
        return
    else:
        where, params = "id IN (" + ", ".join(["%s"] * len(task_ids)) + ")", list(task_ids)
    _execute([refresh_sql("annotation_task.id", where)], using, params)


def reinstall_after_migrate(sender, using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    """post_migrate: a table a migration rebuilt on SQLite lost its triggers."""
    if "annotation_annotation" in connections[using].introspection.table_names():
        install(using)
