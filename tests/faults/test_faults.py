"""Under SIGKILLs of web and Celery workers, no acknowledged label is lost or doubled, no task over-assigned,
no job left running: the CI subset of bench/faults.py (10 kills over 40 s of load), on PostgreSQL and Redis."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _services_up() -> str:
    try:
        import psycopg

        psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=2).close()
    except Exception as exc:
        return f"PostgreSQL at 127.0.0.1:5432: {exc}"
    try:
        import redis

        redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), socket_connect_timeout=1).ping()
    except Exception as exc:
        return f"Redis: {exc}"
    return ""


@pytest.fixture(scope="module")
def figures():
    missing = _services_up()
    if missing:
        pytest.skip(f"the fault harness needs PostgreSQL and Redis ({missing})")
    db = "quorum_faults" + os.environ.get("QUORUM_TEST_SUFFIX", "")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    result = subprocess.run(
        [sys.executable, "bench/faults.py", "--ci", "--json", "--db", db], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=540,
    )
    lines = result.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("{"), result.stdout[-4000:] + result.stderr[-4000:]
    found = json.loads(lines[-1])
    found["_output"] = "\n".join(lines[:-1])
    found["_rc"] = result.returncode
    return found


def test_the_harness_killed_web_and_celery_workers(figures):
    by_target = figures["kills_by_target"]
    assert figures["kills"] == 10, figures["_output"]
    assert sum(n for k, n in by_target.items() if k.startswith("gunicorn worker")) >= 5, by_target
    assert sum(n for k, n in by_target.items() if k.startswith("celery worker")) >= 2, by_target
    assert figures["submits_acknowledged"] >= 100, figures["_output"]


def test_every_acknowledged_submit_is_stored_exactly_once(figures):
    assert figures["acknowledged_stored_once"] == figures["submits_acknowledged"], figures["_output"]
    assert figures["acknowledged_missing"] == figures["acknowledged_wrong_row"] == 0
    assert figures["stored_more_than_once"] == 0 and figures["stored_unknown_client_id"] == 0
    # A submit retried with its client id (its first answer lost to a kill) is one row.
    assert figures["retried_one_row"] + figures["retried_unacknowledged"] == figures["submits_retried"]
    # Acknowledged submits sent again with their client id get the same row back, not a new one.
    assert figures["submits_replayed"] >= 1 and figures["replays_same_row"] == figures["submits_replayed"]


def test_no_task_is_over_assigned(figures):
    for key in ("tasks_over_assigned", "tasks_over_annotated", "duplicate_task_annotator_assignments",
                "duplicate_task_author_annotations", "tasks_with_counter_drift"):
        assert figures[key] == 0, (key, figures["_output"])


def test_no_job_is_left_running_and_each_wrote_its_responses_once(figures):
    assert figures["jobs"] >= 3, figures["_output"]
    assert figures["jobs_stuck"] == 0, figures["_output"]
    assert figures["jobs_by_status"] == {"succeeded": figures["jobs"]}, figures["job_problems"]
    assert figures["jobs_with_wrong_responses"] == 0, figures["job_problems"]


def test_no_server_error_and_every_submit_answered(figures):
    assert figures["server_errors"] == 0, figures["samples"]
    assert figures["unresolved_submits"] == 0 and figures["annotator_threads_alive"] == 0
    assert figures["ok"] and figures["_rc"] == 0, figures["_output"]
