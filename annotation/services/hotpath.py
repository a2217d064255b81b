"""The two hot paths, lease-next-task and submit, as single SQL statements on PostgreSQL.

The ORM versions in `queue.py` and `submit.py` take 8–10 round trips per cycle (BEGIN, the held
lease, the sweep, the pick, the slot update, the insert, the content, COMMIT...). Here each is one
autocommit statement whose data-modifying CTEs run atomically, prepared once per connection
(`rows.fetch_one`), so a run costs neither a parse nor a plan:

- lease: sweep this project's expired leases (one sweeper at a time, by a transaction-scoped
  advisory lock, so sweeps never lock tasks in opposite orders), return the lease the person holds,
  else pick the best open task with `FOR UPDATE SKIP LOCKED`, take one of its slots, insert the
  assignment with its shuffled display order, and return it with the prompt and responses.
- submit: a plain read (assignment, task, project, membership, a client id already used?) to
  validate the payload against, then one statement that ends the lease, counts the submission on
  the task and inserts the annotation, guarded by `state = 'active'`.

Anything off the common path (a replayed client id, an expired or skipped lease, a stranger's
assignment) returns None and the caller runs the ORM version, which owns those rules. The results
are model instances built from the returned row, so callers cannot tell the paths apart.
"""

from __future__ import annotations

import json
import uuid
from contextlib import nullcontext
from datetime import datetime, timedelta

import psycopg
from django.db import connection, transaction

from ..models import Annotation, AnnotationSource, Assignment, AssignmentState, Prompt, Task, TaskStatus
from ..rows import fetch_one, instance, json_value

# Tells the advisory lock of the lease sweep apart from any other advisory lock in the database.
SWEEP_LOCK_CLASS = 0x51_0001

ASSIGNMENT_FIELDS = ("id", "task_id", "project_id", "annotator_id", "state", "leased_until", "shown_order",
                     "skip_reason", "created_at", "ended_at")
TASK_FIELDS = ("id", "project_id", "kind", "prompt_id", "n_responses", "n_steps", "required", "priority", "status",
               "flags")
_A = ", ".join(ASSIGNMENT_FIELDS)

_GOLD_FILTER = {None: "", False: "AND t.gold IS NULL", True: "AND t.gold IS NOT NULL"}
_ORDER = {None: "t.priority DESC, t.id", False: "t.priority DESC, t.id", True: "random()"}

_LEASE_SQL = """
WITH swept AS (
    UPDATE annotation_assignment SET state = 'expired', ended_at = %(now)s::timestamptz
    WHERE id IN (
        SELECT id FROM annotation_assignment
        WHERE project_id = %(project)s::bigint AND state = 'active' AND leased_until <= %(now)s::timestamptz
          AND (SELECT pg_try_advisory_xact_lock((%(lock_class)s::bigint << 32) + %(project)s::bigint))
        ORDER BY id LIMIT 1000
        FOR UPDATE SKIP LOCKED)
    RETURNING task_id
), freed AS (
    UPDATE annotation_task t SET open_slots = t.open_slots + s.n
    FROM (SELECT task_id, count(*) AS n FROM swept GROUP BY task_id) s
    WHERE t.id = s.task_id
    RETURNING t.id
), held AS (
    SELECT {a} FROM annotation_assignment
    WHERE annotator_id = %(user)s::bigint AND project_id = %(project)s::bigint AND state = 'active'
      AND leased_until > %(now)s::timestamptz
    ORDER BY id LIMIT 1
), pick AS (
    SELECT t.id, t.kind, t.n_responses FROM annotation_task t
    WHERE NOT EXISTS (SELECT 1 FROM held)
      AND t.project_id = %(project)s::bigint AND t.open_slots > 0 AND t.status = 'open' {gold}
      AND NOT EXISTS (SELECT 1 FROM annotation_assignment x WHERE x.task_id = t.id AND x.annotator_id = %(user)s::bigint)
      AND t.id NOT IN (SELECT task_id FROM swept)
    ORDER BY {order} LIMIT 1
    FOR UPDATE OF t SKIP LOCKED
), taken AS (
    UPDATE annotation_task t SET open_slots = t.open_slots - 1 FROM pick WHERE t.id = pick.id RETURNING t.id
), leased AS (
    INSERT INTO annotation_assignment
        (task_id, project_id, annotator_id, state, leased_until, shown_order, skip_reason, created_at)
    SELECT pick.id, %(project)s::bigint, %(user)s::bigint, 'active', %(until)s::timestamptz,
           COALESCE((SELECT jsonb_agg(i ORDER BY CASE WHEN pick.kind IN ('pairwise', 'ranking')
                                                      THEN random() ELSE i END)
                     FROM generate_series(0, pick.n_responses - 1) AS i), '[]'::jsonb),
           '', %(now)s::timestamptz
    FROM pick JOIN taken ON taken.id = pick.id
    RETURNING {a}
), chosen AS (
    SELECT * FROM leased UNION ALL SELECT * FROM held
)
SELECT c.*, {t}, p.messages,
       (SELECT json_agg(json_build_object('position', tr.position, 'id', r.id, 'content', r.content,
                                          'steps', r.steps))
        FROM annotation_taskresponse tr JOIN annotation_response r ON r.id = tr.response_id
        WHERE tr.task_id = c.task_id)
FROM chosen c JOIN annotation_task t ON t.id = c.task_id JOIN annotation_prompt p ON p.id = t.prompt_id
"""

_LEASE_STATEMENTS = {
    gold: _LEASE_SQL.format(a=_A, t=", ".join(f"t.{f}" for f in TASK_FIELDS), gold=_GOLD_FILTER[gold],
                            order=_ORDER[gold])
    for gold in (None, False, True)
}

_SUBMIT_READ_SQL = """
SELECT a.state, a.project_id, a.shown_order, t.kind, t.n_responses, t.n_steps,
       pr.settings, pr.current_guideline_id, pr.current_constitution_id,
       EXISTS (SELECT 1 FROM annotation_annotation WHERE client_id = %(client_id)s::uuid)
FROM annotation_assignment a
JOIN annotation_task t ON t.id = a.task_id
JOIN annotation_project pr ON pr.id = a.project_id
WHERE a.id = %(assignment)s::bigint AND a.annotator_id = %(user)s::bigint
  AND EXISTS (SELECT 1 FROM annotation_membership m
              WHERE m.project_id = a.project_id AND m.user_id = %(user)s::bigint)
"""

_SUBMIT_WRITE_SQL = """
WITH ended AS (
    UPDATE annotation_assignment SET state = 'submitted', ended_at = %(now)s::timestamptz
    WHERE id = %(assignment)s::bigint AND state = 'active'
    RETURNING id, task_id
), counted AS (
    UPDATE annotation_task t
    SET submitted_count = t.submitted_count + 1,
        status = CASE WHEN t.submitted_count >= t.required - 1 THEN 'complete' ELSE t.status END
    FROM ended WHERE t.id = ended.task_id
    RETURNING t.status
), added AS (
    INSERT INTO annotation_annotation
        (task_id, kind, assignment_id, author_id, source, payload, shown_order, rationale, seconds_spent,
         guideline_version_id, constitution_version_id, details, client_id, supersedes_id, is_current,
         is_review, created_at)
    SELECT ended.task_id, %(kind)s::varchar, ended.id, %(user)s::bigint, 'human', %(payload)s::jsonb,
           %(shown_order)s::jsonb, %(rationale)s::text, %(seconds)s::float8, %(guideline)s::bigint, %(constitution)s::bigint, '{}'::jsonb, %(client_id)s::uuid, NULL, true, false, %(now)s::timestamptz
    FROM ended
    RETURNING id, task_id
)
SELECT added.id, added.task_id, counted.status FROM added, counted
"""


def available() -> bool:
    return connection.vendor == "postgresql"


def lease(*, project, annotator, now: datetime, gold: bool | None) -> Assignment | None:
    """Sweep expired leases, then the held lease or a new one (see the module docs).

    Returns the assignment, with its task, prompt and responses loaded, or None when nothing is left.
    """
    params = {"project": project.pk, "user": annotator.pk, "now": now, "lock_class": SWEEP_LOCK_CLASS,
              "until": now + timedelta(seconds=project.lease_seconds)}
    row = fetch_one(_LEASE_STATEMENTS[gold], params)
    if row is None:
        # The statement cannot pick a task whose slot its own sweep freed (it sees the table as it
        # was when it began): once more, for an annotator who would otherwise hear "done".
        row = fetch_one(_LEASE_STATEMENTS[gold], params)
    if row is None:
        return None
    n_a, n_t = len(ASSIGNMENT_FIELDS), len(TASK_FIELDS)
    a_values = dict(zip(ASSIGNMENT_FIELDS, row[:n_a]))
    a_values["shown_order"] = json_value(a_values["shown_order"])
    t_values = dict(zip(TASK_FIELDS, row[n_a:n_a + n_t]))
    t_values["flags"] = json_value(t_values["flags"])
    messages, responses = row[n_a + n_t:]
    assignment = instance(Assignment, a_values)
    task = instance(Task, t_values)
    task.prompt = instance(Prompt, {"id": task.prompt_id, "messages": json_value(messages)})
    # The task's responses by position, for selectors.task_view (saves it a query).
    task.responses_by_position = {r["position"]: r for r in (json_value(responses) or [])}
    assignment.task = task
    assignment.project = project
    return assignment


def submit(*, assignment_id: int, annotator, payload: dict, client_id: uuid.UUID, seconds_spent: float | None,
           rationale: str, now: datetime, validate) -> tuple[Annotation, int | None] | None:
    """Submit on an active lease in one statement; None when the ORM path must decide.

    `validate(kind, payload, n_responses, n_steps, shown_order, settings)` returns the canonical
    payload or raises Invalid. Returns the annotation and, when it completed its task, the project id.
    """
    row = fetch_one(_SUBMIT_READ_SQL, {"assignment": assignment_id, "user": annotator.pk, "client_id": client_id})
    if row is None:
        return None
    state, project_id, shown_order, kind, n_responses, n_steps, settings, guideline, constitution, replay = row
    if state != AssignmentState.ACTIVE or replay:
        return None
    shown_order = json_value(shown_order)
    canonical = validate(kind, payload, n_responses, n_steps, shown_order, json_value(settings) or {})
    params = {"assignment": assignment_id, "user": annotator.pk, "now": now, "kind": kind,
              "payload": json.dumps(canonical), "shown_order": json.dumps(shown_order), "rationale": rationale,
              "seconds": seconds_spent, "guideline": guideline, "constitution": constitution, "client_id": client_id}
    try:
        # Inside a caller's transaction a failure must not break it: a savepoint then.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            row = fetch_one(_SUBMIT_WRITE_SQL, params)
    except psycopg.IntegrityError:
        return None  # the client id was taken a moment ago: the ORM path replays or refuses
    if row is None:
        return None  # the lease ended a moment ago (expired, skipped)
    annotation_id, task_id, status = row
    values = {
        "id": annotation_id, "task_id": task_id, "kind": kind, "assignment_id": assignment_id,
        "author_id": annotator.pk, "source": AnnotationSource.HUMAN, "payload": canonical,
        "shown_order": shown_order, "rationale": rationale, "seconds_spent": seconds_spent,
        "guideline_version_id": guideline, "constitution_version_id": constitution, "details": {},
        "client_id": client_id, "supersedes_id": None, "is_current": True, "is_review": False, "created_at": now,
    }
    annotation = instance(Annotation, values)
    return annotation, project_id if status == TaskStatus.COMPLETE else None

