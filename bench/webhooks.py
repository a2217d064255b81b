"""Webhook benchmark: how long from an event's commit to the receiver, how many deliveries a worker sends per
second, and what reporting task completion costs a submit.

    .venv/bin/python bench/webhooks.py [--latency 40] [--burst 300] [--submits 300] [--redis]

Builds a throwaway SQLite database and embedded broker in a temporary directory (QUORUM_DATA_DIR), runs the
migrations, starts one real Celery worker process (`-P solo`, queue `default`) and a local `http.server` that
answers 200 and notes when each delivery arrived. With --redis the worker and this process use Redis
(127.0.0.1:6379, db 15, a key prefix of its own) instead of the embedded broker. Printed:

1. latency: `--latency` events recorded one after another, each waited for: commit -> receipt, p50/p95/max.
2. throughput: `--burst` events recorded at once: deliveries/s until the last one arrived.
3. submit cost: `--submits` submits (one annotator, overlap 1, so every submit completes its task) with no
   webhook, then with a webhook subscribed to task.completed: ms per submit each (in-process, no HTTP), and
   the difference. The baseline runs in the same process, interleaved in two halves.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Receiver:
    def __init__(self):
        self.arrived: dict[int, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.arrived[json.loads(body)["id"]] = time.time()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"


def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=int, default=40)
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--submits", type=int, default=300)
    parser.add_argument("--redis", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="quorum-bench-webhooks-"))
    os.environ["QUORUM_DATA_DIR"] = str(workdir)
    os.environ.pop("DATABASE_URL", None)
    if args.redis:
        os.environ["CELERY_BROKER_URL"] = "redis://127.0.0.1:6379/15"
        os.environ["CELERY_BROKER_KEY_PREFIX"] = f"bench-webhooks-{uuid.uuid4().hex[:8]}:"
    else:
        os.environ.pop("CELERY_BROKER_URL", None)
    os.environ["QUORUM_WEBHOOK_ALLOW_PRIVATE"] = "127.0.0.1"  # the receiver below listens on loopback
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")
    os.environ.setdefault("QUORUM_DEV", "1")  # a local measurement: the development secret key will do
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from annotation import services
    from annotation.models import DeliveryStatus, Role, WebhookDelivery
    from annotation.services.webhooks import webhook_create, webhook_emit
    from django.contrib.auth import get_user_model

    receiver = Receiver()
    log = open(workdir / "worker.log", "w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "quorum", "worker", "-Q", "default", "-P", "solo",
         "-n", f"bench-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "--loglevel", "WARNING"],
        cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        User = get_user_model()
        owner = User.objects.create_user("owner", password="x")
        project = services.project_create(name="Bench", slug="bench", created_by=owner, required_annotations=1)
        hook = webhook_create(project=project, url=receiver.url(), events=["snapshot.created"])
        print(f"broker: {settings.CELERY_BROKER_URL.split('://')[0]}; database: SQLite in {workdir}; worker: 1 process, solo")

        # Warm-up: the worker is up when a first delivery arrives.
        (first,) = webhook_emit(project=project, event="snapshot.created", key="warm", data={})
        wait_for(lambda: first in receiver.arrived, 120, "the worker to start")

        latencies = []
        for i in range(args.latency):
            start = time.time()
            (pk,) = webhook_emit(project=project, event="snapshot.created", key=f"lat:{i}", data={"i": i})
            wait_for(lambda: pk in receiver.arrived, 60, "a delivery")
            latencies.append((receiver.arrived[pk] - start) * 1000)
        latencies.sort()
        p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
        print(f"1. commit -> receipt over {args.latency} events: p50 {statistics.median(latencies):.0f} ms, "
              f"p95 {p95:.0f} ms, max {latencies[-1]:.0f} ms")  # fmt: skip

        start = time.time()
        ids = [webhook_emit(project=project, event="snapshot.created", key=f"burst:{i}", data={})[0] for i in range(args.burst)]
        recorded = time.time() - start
        wait_for(lambda: all(i in receiver.arrived for i in ids), 600, "the burst")
        elapsed = max(receiver.arrived[i] for i in ids) - start
        # The receiver notes the arrival before the worker records the answer: give it a moment.
        unfinished = WebhookDelivery.objects.filter(pk__in=ids).exclude(status=DeliveryStatus.SUCCEEDED)
        try:
            wait_for(lambda: not unfinished.exists(), 10, "the last answers to be recorded")
        except SystemExit:
            pass
        failed = unfinished.count()
        print(f"2. burst of {args.burst}: recorded in {recorded:.2f} s, all received after {elapsed:.2f} s = "
              f"{args.burst / elapsed:.0f} deliveries/s ({failed} not marked succeeded)")  # fmt: skip

        # 3. submit cost, without and with a task.completed subscriber, in two interleaved halves each.
        annotator = User.objects.create_user("annotator", password="x")
        services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
        prompt = services.prompt_create(project=project, messages=[{"role": "user", "content": "Which?"}])
        responses = [services.response_create(prompt=prompt, content=f"Answer {i}.", dedupe_key=f"r{i}") for i in range(2)]
        for _ in range(args.submits * 2):
            services.task_create(project=project, kind="pairwise", prompt=prompt, responses=responses, required=1)

        def run(n: int) -> float:
            total = 0.0
            for _ in range(n):
                assignment = services.task_next_for(annotator=annotator, project=project)
                t0 = time.perf_counter()
                services.annotation_submit(assignment=assignment, annotator=annotator,
                                           payload={"choice": "A", "strength": 1}, client_id=uuid.uuid4())  # fmt: skip
                total += time.perf_counter() - t0
            return total

        half = args.submits // 2
        timings = {"none": 0.0, "subscribed": 0.0}
        completed = None
        for _ in range(2):
            hook.events = ["snapshot.created"]
            hook.save(update_fields=["events"])
            timings["none"] += run(half)
            hook.events = ["snapshot.created", "task.completed"]
            hook.save(update_fields=["events"])
            if os.environ.get("BENCH_PROFILE"):
                import cProfile
                import pstats

                profile = cProfile.Profile()
                profile.enable()
                timings["subscribed"] += run(half)
                profile.disable()
                pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
            else:
                timings["subscribed"] += run(half)
        completed = WebhookDelivery.objects.filter(event="task.completed").count()
        # What the hook adds to a submit when nobody subscribed: the after-commit check alone.
        from annotation.models import Task
        from annotation.services.webhooks import _task_completed_after_commit

        hook.events = ["snapshot.created"]
        hook.save(update_fields=["events"])
        some_task = Task.objects.filter(project=project).values_list("id", flat=True).first()
        t0 = time.perf_counter()
        for _ in range(200):
            _task_completed_after_commit(some_task, project.pk)
        check_ms = (time.perf_counter() - t0) / 200 * 1000
        none_ms = timings["none"] / (2 * half) * 1000
        with_ms = timings["subscribed"] / (2 * half) * 1000
        print(f"3. submit, in-process: {none_ms:.2f} ms with no task.completed subscriber (baseline: one extra "
              f"query after commit), {with_ms:.2f} ms with one (delivery row + message): +{with_ms - none_ms:.2f} ms; "
              f"{completed} task.completed deliveries recorded; the check alone (no subscriber): {check_ms:.2f} ms")  # fmt: skip
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        log.close()
        receiver.server.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
