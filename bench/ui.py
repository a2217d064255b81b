"""Web UI server time: render the work page, and submit-and-load-next (the HTMX round trip).

Builds demo-like data in a throwaway SQLite database, drives the views in-process with Django's
test client (middleware, sessions, templates, queue and submit services included; no network),
and prints p50/p95/p99 over N requests of each, beside a baseline measured in the same run (the
login page: the same middleware and template machinery with no database work). Wall time and the
process's CPU time are both shown: SQLite runs in-process, so CPU time is the server's own work
and stays meaningful when other jobs share the cores (wall time then includes waiting for one).
Run: `.venv/bin/python bench/ui.py [--requests 1000]`. Target: p95 <= 50 ms for both.
"""

import os
import sys

# Run as a script, this folder is sys.path[0], and bench/queue.py would shadow the standard
# library's `queue` for every import below.
_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == _HERE:
    sys.path[0] = os.path.dirname(_HERE)
os.environ.setdefault("QUORUM_DEV", "1")  # a local measurement: the development secret key will do

import argparse  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

TARGET_P95_MS = 50.0

PARAGRAPHS = [
    "First, restate what the question asks and which facts it gives, so that nothing in the answer "
    "rests on an assumption the reader did not make.",
    "Second, work through the reasoning one claim at a time, naming the source of each number and "
    "checking units and signs before moving on to the **next** claim.",
    "Third, compare with a simpler case: if the answer does not reduce to the obvious one there, "
    "something above is wrong, and `the check` is cheap.",
    "Finally, state the answer plainly, say how confident the reasoning allows one to be, and note "
    "the one thing that would change the conclusion if it turned out to be false.",
]
GUIDELINES = "# How to judge\n\n" + "\n\n".join(
    f"## Rule {i}\n\n- Prefer answers that are *correct*, then helpful, then brief.\n- Mark a tie when neither is better.\n"
    for i in range(1, 13)
)


def response_text(rng: random.Random, i: int) -> str:
    parts = rng.sample(PARAGRAPHS, k=4)
    return "\n".join(f"{n}. {p} (variant {i})" for n, p in enumerate(parts, start=1))


def build(n_tasks: int, seed: int = 7):
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from annotation import services
    from annotation.models import Role

    rng = random.Random(seed)
    User = get_user_model()
    admin = User.objects.create_user("bench-admin", password="x")
    annotator = User.objects.create_user("bench-annotator", password="x")
    # A second annotator goes through the same tasks by calling the services directly, to show
    # how much of the round trip the web layer adds.
    direct = User.objects.create_user("bench-direct", password="x")
    with transaction.atomic():
        project = services.project_create(name="Bench chat", slug="bench-ui", created_by=admin, required_annotations=3)
        services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
        services.membership_set(project=project, user=direct, role=Role.ANNOTATOR)
        services.guideline_version_create(project=project, body=GUIDELINES, created_by=admin)
        kinds = ["pairwise", "pairwise", "ranking", "rating", "steps", "demonstration"]
        n_responses = {"pairwise": 2, "ranking": 4, "rating": 1, "steps": 1, "demonstration": 1}
        for i in range(n_tasks):
            kind = kinds[i % len(kinds)]
            messages = [{"role": "user", "content": f"Question {i}: explain how to check a long calculation."}]
            if i % 5 == 0:
                messages += [
                    {"role": "assistant", "content": "Which calculation do you have in mind?"},
                    {"role": "user", "content": "A tax return, with many lines."},
                ]
            prompt = services.prompt_create(project=project, messages=messages)
            responses = [
                services.response_create(prompt=prompt, content=response_text(rng, j), dedupe_key=str(j))
                for j in range(n_responses[kind])
            ]
            flags = {"content_warning": "finance"} if i % 17 == 0 else {}
            services.task_create(project=project, kind=kind, prompt=prompt, responses=responses, flags=flags)
    return project, annotator, direct


def answer(task) -> dict:
    """Form fields a quick annotator would post for this task, in shown terms."""
    kind = task.kind
    if kind == "pairwise":
        return {"choice": random.choice("AB"), "strength": "2"}
    if kind == "ranking":
        return {"order": "[[0], [2, 1], [3]]"}
    if kind == "rating":
        return {"thumb": "up", "likert_helpful": "6", "likert_honest": "7", "likert_harmless": "7"}
    if kind == "steps":
        return {f"step_{i}": "1" for i in range(task.n_steps)}
    return {"text": "Check each line against its source, then re-add the totals in a different order."}


def percentiles(samples: list[float]) -> dict:
    s = sorted(samples)

    def pct(p):
        return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]

    return {"p50": pct(50), "p95": pct(95), "p99": pct(99), "mean": statistics.fmean(s)}


def summarize(name: str, wall_ms: list[float], cpu_ms: list[float], queries: float | None = None) -> dict:
    wall, cpu = percentiles(wall_ms), percentiles(cpu_ms)
    q = f"{queries:4.1f}" if queries is not None else "   -"
    print(
        f"  {name:<30} wall p50 {wall['p50']:6.2f}  p95 {wall['p95']:6.2f}  p99 {wall['p99']:6.2f}   "
        f"cpu p50 {cpu['p50']:6.2f}  p95 {cpu['p95']:6.2f}  p99 {cpu['p99']:6.2f} ms   queries {q}"
    )
    return {"name": name, "n": len(wall_ms), "wall": wall, "cpu": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="quorum-bench-ui-")
    os.environ["QUORUM_DATA_DIR"] = tmp
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from annotation import services
    from annotation.models import Assignment, AssignmentState, Task
    from annotation.payloads import DEFAULT_ASPECTS
    from frontend.taskforms import parse_payload

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ALLOWED_HOSTS = ["testserver"]
    try:
        t0 = time.perf_counter()
        call_command("migrate", verbosity=0)
        project, annotator, direct = build(args.requests + 20)
        print(
            f"Quorum UI bench: SQLite at {settings.DATABASES['default']['NAME']}, "
            f"{Task.objects.count()} tasks built in {time.perf_counter() - t0:.1f} s; {args.requests} requests each; "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}\n"
        )

        client = Client()
        client.force_login(annotator)
        work_url = reverse("frontend:work", args=[project.slug])
        login_url = reverse("frontend:login")
        hx = {"HTTP_HX_REQUEST": "true"}

        # Warm up caches (templates, markdown, connections) outside the measurement.
        for _ in range(20):
            client.get(work_url)
            Client().get(login_url)

        samples = {name: ([], []) for name in ("baseline", "render", "submit", "services")}
        render_q, submit_q = [], []
        anon = Client()

        def timed(name, fn):
            w, c = time.perf_counter(), time.process_time()
            result = fn()
            samples[name][1].append((time.process_time() - c) * 1000)
            samples[name][0].append((time.perf_counter() - w) * 1000)
            return result

        for _ in range(args.requests):
            r = timed("baseline", lambda: anon.get(login_url))
            assert r.status_code == 200

            with CaptureQueriesContext(connection) as q:
                r = timed("render", lambda: client.get(work_url))
            render_q.append(len(q))
            assert r.status_code == 200 and b'id="task-form"' in r.content, r.content[:300]

            held = Assignment.objects.select_related("task").get(annotator=annotator, state=AssignmentState.ACTIVE)
            data = {**answer(held.task), "client_id": str(uuid.uuid4()), "seconds": "9.5"}
            submit_url = reverse("frontend:submit", args=[project.slug, held.pk])
            with CaptureQueriesContext(connection) as q:
                r = timed("submit", lambda url=submit_url, data=data: client.post(url, data, **hx))
            submit_q.append(len(q))
            assert r.status_code == 200 and b"Saved." in r.content, r.content[:500]

            mine = services.task_next_for(annotator=direct, project=project)
            payload = parse_payload(mine.task.kind, answer(mine.task), n_steps=mine.task.n_steps, aspects=DEFAULT_ASPECTS)

            def service_round(assignment=mine, payload=payload):
                services.annotation_submit(
                    assignment=assignment, annotator=direct, payload=payload, client_id=uuid.uuid4(), seconds_spent=9.5
                )
                return services.task_next_for(annotator=direct, project=project)

            timed("services", service_round)

        print(f"Server time per request in ms (in-process test client; load average now {os.getloadavg()[0]:.1f}):")
        rows = [
            summarize("baseline: login page (no DB)", *samples["baseline"]),
            summarize("work page, full render", *samples["render"], statistics.fmean(render_q)),
            summarize("submit + next task (HTMX)", *samples["submit"], statistics.fmean(submit_q)),
        ]
        print("Same round trip without the web layer (no HTTP, session, template), for comparison:")
        summarize("services: submit + lease next", *samples["services"])
        wall_ok = all(r["wall"]["p95"] <= TARGET_P95_MS for r in rows[1:])
        cpu_ok = all(r["cpu"]["p95"] <= TARGET_P95_MS for r in rows[1:])
        print(
            f"\nTarget p95 <= {TARGET_P95_MS:.0f} ms: wall time {'met' if wall_ok else 'NOT met'} "
            f"(work page {rows[1]['wall']['p95']:.1f}, submit+next {rows[2]['wall']['p95']:.1f}); "
            f"CPU time {'met' if cpu_ok else 'NOT met'} "
            f"(work page {rows[1]['cpu']['p95']:.1f}, submit+next {rows[2]['cpu']['p95']:.1f}). "
            f"Baseline p95: wall {rows[0]['wall']['p95']:.1f}, CPU {rows[0]['cpu']['p95']:.1f}."
        )
        return 0
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
