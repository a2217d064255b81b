"""Task browser search latency over 50,000 tasks, and what the agreement triggers add to a submit.

Builds a throwaway database (SQLite in a temporary directory; PostgreSQL too, in a database of its own,
when DATABASE_URL is set), seeds it with bulk inserts: 50,000 tasks (pairwise and rating, two models,
tags) of which 20,000 carry two human labels and 10,000 an AI label (written through the triggers, so
every task's agreement and AI disagreement are set). Then, in-process through Django's test client
(middleware, DRF, permissions, pagination with its count, serializer):

- GET /api/v1/projects/{slug}/tasks/ with no filter, with a text filter (prompt and response words),
  and with agreement range + AI disagreement (the trigger-kept, indexed columns): p50/p95 wall ms;
- annotation_submit on fresh tasks (overlap 3), in alternating blocks with the triggers installed and
  dropped (the same database, the same process): p50/p95 and the difference.

Run: `.venv/bin/python bench/task_browser.py [--tasks 50000] [--requests 40] [--submits 400]`.
"""

import os
import sys

# Run as a script, this folder is sys.path[0], and bench/queue.py would shadow the standard
# library's `queue` for every import below.
_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == _HERE:
    sys.path[0] = os.path.dirname(_HERE)
os.environ.setdefault("QUORUM_DEV", "1")  # a local measurement: the development secret key will do
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")

import argparse  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

SLUG = "bench-browser"
BENCH_DB = "quorum_bench_browser"
TOPICS = ["bicycle", "recipe", "tax return", "garden", "telescope", "violin", "marathon", "mortgage", "volcano",
          "chess opening", "sourdough", "solar panel", "kayak", "beehive", "spreadsheet", "guitar", "aquarium",
          "sunburn", "compost", "passport"]
VERBS = ["choose", "repair", "explain", "plan", "clean", "compare"]


def percentiles(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return s[len(s) // 2], s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def seed(n_tasks: int, rng: random.Random):
    """Bulk-insert the project's prompts, responses, tasks and labels; returns (project, admin)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from annotation import services
    from annotation.models import Annotation, Prompt, Response, Role, Task, TaskResponse

    User = get_user_model()
    admin = User.objects.create_user("bench-admin", password="x")
    people = [User.objects.create_user(f"bench-p{i}", password="x") for i in range(3)]
    rater = User.objects.create_user("bench-ai", password="x")
    project = services.project_create(name="Bench browser", slug=SLUG, created_by=admin, required_annotations=2)
    for user in [*people, rater]:
        services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
    chunk = 5000
    for start in range(0, n_tasks, chunk):
        ids = range(start, min(n_tasks, start + chunk))
        with transaction.atomic():
            prompts = Prompt.objects.bulk_create(
                Prompt(project=project, content_hash=f"h{i}", tags=[rng.choice(["travel", "home", "money"])],
                       messages=[{"role": "user", "content": f"Question {i}: how do I {rng.choice(VERBS)} a "
                                                              f"{rng.choice(TOPICS)} on a budget?"}])
                for i in ids)
            kinds = ["pairwise" if i % 4 else "rating" for i in ids]
            responses = Response.objects.bulk_create(
                Response(prompt=p, origin="imported", model_name=f"model-{j}",
                         content=f"Answer {j}: start with the {rng.choice(TOPICS)}, then check it twice.")
                for p, kind in zip(prompts, kinds) for j in range(2 if kind == "pairwise" else 1))
            tasks = Task.objects.bulk_create(
                Task(project=project, kind=kind, prompt=p, n_responses=2 if kind == "pairwise" else 1,
                     required=2, open_slots=2)
                for p, kind in zip(prompts, kinds))
            by_prompt = {}
            for r in responses:
                by_prompt.setdefault(r.prompt_id, []).append(r)
            TaskResponse.objects.bulk_create(
                TaskResponse(task=t, response=r, position=k) for t in tasks for k, r in enumerate(by_prompt[t.prompt_id]))
            labels = []
            for t in tasks:
                if t.pk % 5 < 2:  # two in five tasks: two human labels
                    for person in people[:2]:
                        labels.append(_label(t, person, "human", rng))
                if t.pk % 5 == 0:  # one in five: an AI label as well
                    labels.append(_label(t, rater, "ai", rng))
            Annotation.objects.bulk_create(labels)
    return project, admin


def _label(task, author, source, rng):
    from annotation.models import Annotation

    if task.kind == "pairwise":
        choice = rng.choice("AAB")
        payload = {"choice": choice, "strength": 2}
    else:
        payload = {"thumb": rng.choice(["up", "up", "down"])}
    return Annotation(task=task, kind=task.kind, author=author, source=source, payload=payload)


def measure_search(project, admin, requests: int) -> dict:
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(admin)
    url = f"/api/v1/projects/{project.slug}/tasks/"
    cases = {
        "no filter": {},
        "text filter": {"text": "telescope"},
        "people agree, AI disagrees": {"agreement_min": "1", "ai_disagrees": "true"},
    }
    out = {}
    for name, params in cases.items():
        for _ in range(3):  # warm-up: caches, prepared statements
            client.get(url, params)
        wall, cpu, count = [], [], 0
        for _ in range(requests):
            t0, c0 = time.perf_counter(), time.process_time()
            response = client.get(url, params)
            cpu.append((time.process_time() - c0) * 1000)
            wall.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, response.content[:300]
            count = response.json()["count"]
        out[name] = (percentiles(wall), percentiles(cpu), count)
        print(f"  search, {name:<28} {_figures(wall, cpu)}   ({count:,} matching)", flush=True)
    return out


def _figures(wall: list[float], cpu: list[float]) -> str:
    """Wall and this process's CPU time; on SQLite (in-process) CPU time is the query's own work and stays
    meaningful when other jobs share the cores. On PostgreSQL the server's work is in the wall time only."""
    (w50, w95), (c50, c95) = percentiles(wall), percentiles(cpu)
    return f"wall p50 {w50:7.2f} p95 {w95:7.2f} ms   cpu p50 {c50:7.2f} p95 {c95:7.2f} ms"


def measure_submit(project, submits: int, block: int = 25) -> dict:
    """annotation_submit latency, triggers on and off in alternating blocks on fresh tasks of overlap 3."""
    from django.contrib.auth import get_user_model

    from annotation import services, task_stats
    from annotation.models import Role

    annotators = []
    for i in range(3):
        user = get_user_model().objects.create_user(f"bench-s{i}", password="x")
        services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
        annotators.append(user)
    prompt = services.prompt_create(project=project, messages="A fresh question for the submit bench?")
    responses = [services.response_create(prompt=prompt, content=f"Fresh answer {j}.") for j in range(2)]
    submits = -(-submits // (2 * block)) * 2 * block  # whole blocks, as many on as off
    n_tasks = submits // 3 + 2
    for _ in range(n_tasks):
        services.task_create(project=project, kind="pairwise", prompt=prompt, responses=responses, priority=10,
                             required=3)
    wall, cpu = {True: [], False: []}, {True: [], False: []}
    installed, done = True, 0
    while done < submits:
        (task_stats.install if installed else task_stats.uninstall)()
        for _ in range(block):
            user = annotators[done % 3]
            assignment = services.task_next_for(annotator=user, project=project)
            t0, c0 = time.perf_counter(), time.process_time()
            services.annotation_submit(assignment=assignment, annotator=user, client_id=uuid.uuid4(),
                                       payload={"choice": random.choice("AB"), "strength": 2})
            cpu[installed].append((time.process_time() - c0) * 1000)
            wall[installed].append((time.perf_counter() - t0) * 1000)
            done += 1
        installed = not installed
    task_stats.install()
    for installed, name in ((False, "dropped"), (True, "installed")):
        print(f"  submit, triggers {name:<20} {_figures(wall[installed], cpu[installed])}   ({len(wall[installed])} submits)")
    delta = {kind: [a - b for a, b in zip(percentiles(s[True]), percentiles(s[False]))] for kind, s in
             (("wall", wall), ("cpu", cpu))}
    print(f"  submit delta (installed - dropped): wall p50 {delta['wall'][0]:+.2f} p95 {delta['wall'][1]:+.2f} ms   "
          f"cpu p50 {delta['cpu'][0]:+.2f} p95 {delta['cpu'][1]:+.2f} ms", flush=True)
    return delta


def run_one(args) -> int:
    """Seed and measure on the database this process's settings name."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from annotation.models import Annotation, Task

    call_command("migrate", verbosity=0)
    rng = random.Random(7)
    t0 = time.perf_counter()
    project, admin = seed(args.tasks, rng)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")  # as autovacuum would, soon after a bulk load
    print(f"{connection.vendor}: {Task.objects.count():,} tasks, {Annotation.objects.count():,} labels seeded in "
          f"{time.perf_counter() - t0:.1f} s (labels through the triggers); {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    measure_search(project, admin, args.requests)
    measure_submit(project, args.submits)
    return 0


def _postgres_url(base: str, name: str) -> str:
    head, _, _ = base.rpartition("/")
    return f"{head}/{name}"


def _recreate_postgres(url: str, create: bool) -> None:
    import psycopg

    with psycopg.connect(_postgres_url(url, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        if create:
            conn.execute(f"CREATE DATABASE {BENCH_DB}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=40, help="searches per case")
    parser.add_argument("--submits", type=int, default=600)
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL bench database")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child run on its own database
    args = parser.parse_args()
    if args.one:
        return run_one(args)
    child = [sys.executable, os.path.abspath(__file__), "--one", "--tasks", str(args.tasks), "--requests",
             str(args.requests), "--submits", str(args.submits)]
    tmp = tempfile.mkdtemp(prefix="quorum-bench-browser-")
    database_url = os.environ.get("DATABASE_URL", "")
    try:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        rc = 0 if args.skip_sqlite else subprocess.call(child, env={**env, "QUORUM_DATA_DIR": tmp})
        if database_url.startswith("postgres"):
            _recreate_postgres(database_url, create=True)
            try:
                rc |= subprocess.call(child, env={**env, "QUORUM_DATA_DIR": tmp,
                                                  "DATABASE_URL": _postgres_url(database_url, BENCH_DB)})
            finally:
                if not args.keep:
                    _recreate_postgres(database_url, create=False)
        else:
            print("PostgreSQL: skipped (set DATABASE_URL=postgres://... to measure it too)")
        return rc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
