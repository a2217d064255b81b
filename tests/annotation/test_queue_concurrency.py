"""Concurrent annotators never over-assign a task nor get one twice: threads on PostgreSQL,
separate processes on SQLite."""

import json
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, connections
from django.utils import timezone

from annotation import services
from annotation.models import Annotation, Assignment, Task

ROOT = Path(__file__).resolve().parents[2]


def _check_no_over_assignment(project, n_tasks: int, required: int, n_annotators: int):
    per_task = Counter(Annotation.objects.filter(task__project=project).values_list("task_id", flat=True))
    pairs = Counter(Annotation.objects.filter(task__project=project).values_list("task_id", "author_id"))
    assert max(pairs.values()) == 1, "a task went twice to one annotator"
    assert max(per_task.values()) <= required, "a task got more annotations than its overlap"
    # With enough annotators every task ends with exactly `required` annotations.
    if n_annotators >= required:
        assert len(per_task) == n_tasks and set(per_task.values()) == {required}
    for task in Task.objects.filter(project=project):
        assert task.open_slots == 0 and task.submitted_count == per_task[task.pk]
    assert not Assignment.objects.filter(project=project, state="active").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="SKIP LOCKED concurrency needs PostgreSQL")
def test_32_threads_on_postgresql_never_over_assign(project, member, make_task):
    n_tasks, required, n_threads = 120, 3, 32
    services.project_update(project=project, required_annotations=required)
    for _ in range(n_tasks):
        make_task("pairwise", required=required)
    users = [member() for _ in range(n_threads)]
    done = Counter()
    errors = []
    start = threading.Barrier(n_threads)

    def loop(user):
        try:
            start.wait()
            while (lease := services.task_next_for(annotator=user, project=project)) is not None:
                services.annotation_submit(
                    assignment=lease, annotator=user, payload={"choice": "B", "strength": 2}, client_id=uuid.uuid4()
                )
                done[user.pk] += 1
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=loop, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sum(done.values()) == n_tasks * required
    assert sum(1 for u in users if done[u.pk]) > 1, "the work was not shared"
    _check_no_over_assignment(project, n_tasks, required, n_threads)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="SKIP LOCKED concurrency needs PostgreSQL")
def test_concurrent_sweeps_of_expired_leases_give_every_slot_back_once(project, member, make_task):
    """Many leases expire at once and 24 threads sweep them while leasing: no deadlock, no slot
    counted twice or lost, and every expired lease's task is leased again."""
    n_tasks, required, n_threads = 60, 2, 24
    services.project_update(project=project, required_annotations=required)
    for _ in range(n_tasks):
        make_task("pairwise", required=required)
    abandoned = [member() for _ in range(40)]
    for user in abandoned:
        assert services.task_next_for(annotator=user, project=project) is not None
    users = [member() for _ in range(n_threads)]
    later = timezone.now() + timedelta(seconds=project.lease_seconds + 5)
    errors, start = [], threading.Barrier(n_threads)

    def loop(user):
        try:
            start.wait()
            while (lease := services.task_next_for(annotator=user, project=project, now=later)) is not None:
                services.annotation_submit(assignment=lease, annotator=user, payload={"choice": "A", "strength": 1},
                                           client_id=uuid.uuid4(), now=later)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=loop, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert Assignment.objects.filter(project=project, state="expired").count() == len(abandoned)
    _check_no_over_assignment(project, n_tasks, required, n_threads)


def _run(env, *args, timeout=180):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests/annotation/queue_loop.py"), *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _finish(proc, timeout=180) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


@pytest.mark.slow
def test_several_processes_on_sqlite_never_over_assign(tmp_path):
    """Runs on its own SQLite file whatever database the suite uses, so CI covers it too."""
    n_tasks, required, users = 40, 2, [f"annotator{i}" for i in range(6)]
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'queue.sqlite3'}", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    _finish(_run(env, "seed", "q", str(n_tasks), str(required), *users))
    procs = [_run(env, "loop", "q", u) for u in users]
    counts = [int(_finish(p)) for p in procs]
    stored = json.loads(_finish(_run(env, "count", "q")))
    pairs = Counter(tuple(p) for p in stored["pairs"])
    per_task = Counter(task for task, _ in stored["pairs"])
    assert sum(counts) == len(stored["pairs"]) == n_tasks * required
    assert max(pairs.values()) == 1, "a task went twice to one annotator"
    assert len(per_task) == n_tasks and set(per_task.values()) == {required}, "over- or under-assigned"
    assert set(stored["open_slots"]) == {0} and stored["active"] == 0
    assert sum(1 for c in counts if c) > 1, "the work was not shared"
