"""Fault harness: annotators keep submitting while web and Celery workers are SIGKILLed at random moments.

The app runs the production way: gunicorn (sync workers) and a Celery worker plus beat on PostgreSQL and
Redis, in a database of its own (created here, dropped at the end). Annotators are HTTP clients looping
next-task -> submit, each submit with a fresh client id, retried with the SAME client id whenever the
connection drops or the server answers 5xx (and a few acknowledged ones sent again, as a client whose answer
was lost would). Engineers launch generation jobs (a tiny random model) as it
runs. A killer SIGKILLs a random gunicorn worker (the master forks a new one) or the Celery worker
(restarted at once, as a supervisor would) at random moments. At the end it checks and prints:

  every acknowledged submit stored exactly once (the row the client was told about), every retried submit one
  row, no task over-assigned (active + submitted assignments <= required) nor over-annotated, no job left
  queued or running, each job's responses exactly once; and the 5xx count.

Run: `make soak` (100 kills over five to eight minutes of load) or `.venv/bin/python bench/faults.py --ci` (10 kills in
under a minute and a half; the CI test runs this). `--json` ends the output with one JSON line of figures.
Exit status 0 when every check holds.
"""

import os
import sys

# Run as a script, this folder is sys.path[0] and bench/queue.py would shadow the standard library's `queue`.
_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == _HERE:
    sys.path[0] = os.path.dirname(_HERE)
os.environ.setdefault("QUORUM_DEV", "1")  # a local measurement: the development secret key will do

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.queue import (  # noqa: E402
    OVER_KEYS,
    PY,
    ROOT,
    Gunicorn,
    _children,
    accounts_create,
    django_env,
    overassignment_counts,
    pct,
    pg_recreate,
    pg_url,
    project_seed,
    random_payload,
    say,
)

SLUG, GEN_SLUG = "faults", "faults-gen"
GEN_PROMPTS, GEN_SAMPLES = 24, 2
SUBMIT_ATTEMPTS = 40  # per client id; with backoff that outlasts any respawn
REPLAY_SHARE = 0.1  # acknowledged submits sent once more with the same client id, kills or not


@dataclass
class Plan:
    seconds: float  # of load, kills spread over it
    kills: int
    annotators: int
    web_workers: int
    tasks: int
    job_every_s: float  # a generation job launched this often
    drain_s: float  # after the load, how long jobs get to finish


CI = Plan(seconds=40, kills=10, annotators=12, web_workers=3, tasks=3_000, job_every_s=8, drain_s=60)
FULL = Plan(seconds=300, kills=100, annotators=32, web_workers=4, tasks=20_000, job_every_s=15, drain_s=120)


# --- the annotators and engineers ---------------------------------------------------------------
@dataclass
class Record:
    submits: dict = field(default_factory=dict)  # client id -> {"attempts", "acked" (annotation id) or None, "status"}
    statuses: Counter = field(default_factory=Counter)  # "next-task 200", "submit 201", ...
    dropped: Counter = field(default_factory=Counter)  # requests that got no answer, by exception
    next_ms: list = field(default_factory=list)
    submit_ms: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, what: str, response) -> None:
        with self.lock:
            self.statuses[f"{what} {response.status_code}"] += 1
            if response.status_code >= 400 and response.status_code != 404 and len(self.samples) < 5:
                self.samples.append(f"{what} {response.status_code}: {response.text[:300]}")

    def drop(self, what: str, exc: Exception) -> None:
        with self.lock:
            self.dropped[f"{what} {type(exc).__name__}"] += 1

    @property
    def server_errors(self) -> int:
        return sum(n for k, n in self.statuses.items() if int(k.rsplit(" ", 1)[1]) >= 500)


def annotator(base_url: str, token: str, stop: threading.Event, rec: Record) -> None:
    import httpx

    with httpx.Client(base_url=base_url, headers={"Authorization": f"Token {token}"}, timeout=30) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                r = client.post(f"/api/v1/projects/{SLUG}/next-task/")
            except httpx.HTTPError as exc:
                rec.drop("next-task", exc)
                time.sleep(0.05)
                continue
            rec.answer("next-task", r)
            if r.status_code == 204:
                time.sleep(0.2)
                continue
            if r.status_code != 200:
                time.sleep(0.05)
                continue
            rec.next_ms.append((time.perf_counter() - t0) * 1000)
            lease = r.json()
            client_id = str(uuid.uuid4())
            body = {"payload": random_payload(), "client_id": client_id, "seconds_spent": round(random.uniform(3, 60), 1)}
            entry = {"attempts": 0, "acked": None, "status": None}
            with rec.lock:
                rec.submits[client_id] = entry
            # Resolve this submit even when asked to stop: the same client id until a definite answer.
            while entry["attempts"] < SUBMIT_ATTEMPTS:
                entry["attempts"] += 1
                t0 = time.perf_counter()
                try:
                    r = client.post(f"/api/v1/assignments/{lease['assignment']}/submit/", json=body)
                except httpx.HTTPError as exc:
                    rec.drop("submit", exc)
                    time.sleep(min(1.0, 0.05 * entry["attempts"]))
                    continue
                rec.answer("submit", r)
                entry["status"] = r.status_code
                if r.status_code >= 500:
                    time.sleep(min(1.0, 0.05 * entry["attempts"]))
                    continue
                if r.status_code == 201:
                    entry["acked"] = r.json()["id"]
                    rec.submit_ms.append((time.perf_counter() - t0) * 1000)
                    if random.random() < REPLAY_SHARE:
                        replay(client, lease, body, entry, rec)
                break


def replay(client, lease: dict, body: dict, entry: dict, rec: Record) -> None:
    """Send an acknowledged submit again, as a client does whose answer was lost: the same row must come back."""
    import httpx

    entry["attempts"] += 1
    try:
        r = client.post(f"/api/v1/assignments/{lease['assignment']}/submit/", json=body)
    except httpx.HTTPError as exc:
        rec.drop("replay", exc)
        return
    rec.answer("replay", r)
    entry["replayed"] = r.json().get("id") if r.status_code == 201 else f"status {r.status_code}"


def job_launcher(base_url: str, token: str, stop: threading.Event, every: float, rec: Record, jobs: list) -> None:
    import httpx

    with httpx.Client(base_url=base_url, headers={"Authorization": f"Token {token}"}, timeout=30) as client:
        while not stop.is_set():
            try:
                r = client.post(f"/api/v1/projects/{GEN_SLUG}/generation-jobs/",
                                json={"model": "tiny", "n": GEN_SAMPLES, "task_kind": "pairwise"})
                rec.answer("generation-job", r)
                if r.status_code == 201:
                    jobs.append(r.json()["id"])
            except httpx.HTTPError as exc:
                rec.drop("generation-job", exc)
            stop.wait(every)


# --- worker processes ---------------------------------------------------------------------------
class Celery:
    """The Celery worker and beat, each in its own process group so a kill takes the pool children too."""

    def __init__(self, env: dict, logs: Path):
        self.env, self.logs, self.count = env, logs, 0
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> None:
        self.count += 1
        log = open(self.logs / f"{name}-{self.count}.log", "w")
        self.running[name] = subprocess.Popen(
            [PY, "-m", "celery", "-A", "quorum", *args], cwd=ROOT, env=self.env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)

    def worker(self) -> None:
        self.start("worker", "worker", "-Q", "default,gpu", "-c", "1", "-n", f"faults-{uuid.uuid4().hex[:6]}@%h",
                   "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING")

    def beat(self) -> None:
        self.start("beat", "beat", "--schedule", str(self.logs / "beat-schedule"), "--loglevel", "WARNING")

    def kill(self, name: str) -> None:
        proc = self.running.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.kill(name)

    def tails(self, n: int = 2000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-n:]}" for p in sorted(self.logs.glob("*.log")))


def kill_web_worker(server: Gunicorn) -> int | None:
    """SIGKILL one gunicorn worker (never the master), once the master has its full set again."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = _children(server.proc.pid)
        if len(workers) >= server.workers:
            victim = random.choice(workers)
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                continue
            return victim
        time.sleep(0.1)
    return None


def wait_running_job(base_url: str, token: str, within: float) -> int | None:
    """The id of a job part-way through (waiting up to `within` seconds for one), or None."""
    import httpx

    deadline = time.monotonic() + within
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Token {token}"}, timeout=10) as client:
        while time.monotonic() < deadline:
            try:
                listed = client.get(f"/api/v1/projects/{GEN_SLUG}/generation-jobs/", params={"limit": 5}).json()["results"]
                for j in listed:
                    if j["status"] == "running" and 0 < j["done"] < j["total"]:
                        return j["id"]
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.1)
    return None


# --- setup and checks (children with Django set up on the harness database) ----------------------
def child_main(args) -> None:
    import django

    django.setup()
    if args.child == "setup":
        from django.core.management import call_command

        from annotation import services
        from annotation.models import Role
        from training.services import model_register
        from tests.support.tiny import save_tiny_model

        call_command("migrate", verbosity=0)
        users, tokens = accounts_create("faults-", args.annotators)
        project_seed(slug=SLUG, n_tasks=args.tasks, users=users)
        engineers, engineer_tokens = accounts_create("faults-engineer-", 1)
        gen = services.project_create(name=GEN_SLUG, slug=GEN_SLUG, required_annotations=1)
        services.membership_set(project=gen, user=engineers[0], role=Role.ENGINEER)
        for i in range(GEN_PROMPTS):
            services.prompt_create(project=gen, messages=[{"role": "user", "content": f"Question {i}?"}])
        model_dir = save_tiny_model(Path(args.workdir) / "tiny", hidden=32, layers=2)
        model_register(name="tiny", backend="transformers", path=str(model_dir),
                       sampling={"max_new_tokens": 64, "temperature": 1.0})
        print(json.dumps({"tokens": tokens, "engineer_token": engineer_tokens[0]}))
    elif args.child == "check":
        print(json.dumps(check(json.loads(Path(args.workdir, "submits.json").read_text()),
                               json.loads(Path(args.workdir, "interrupted.json").read_text()))))


def check(submits: dict, interrupted: list) -> dict:
    from annotation.models import Annotation, Response
    from training.models import GenerationJob

    rows = Counter()
    row_id = {}
    for client_id, pk in Annotation.objects.filter(task__project__slug=SLUG).values_list("client_id", "id"):
        rows[str(client_id)] += 1
        row_id[str(client_id)] = pk
    acked = {c: s for c, s in submits.items() if s["acked"] is not None}
    retried = {c: s for c, s in submits.items() if s["attempts"] > 1}
    out = {
        "submits_sent": len(submits),
        "submits_acknowledged": len(acked),
        "acknowledged_stored_once": sum(1 for c, s in acked.items() if rows[c] == 1 and row_id[c] == s["acked"]),
        "acknowledged_missing": sum(1 for c in acked if rows[c] == 0),
        "acknowledged_wrong_row": sum(1 for c, s in acked.items() if rows[c] == 1 and row_id[c] != s["acked"]),
        "stored_more_than_once": sum(1 for n in rows.values() if n > 1),
        "submits_retried": len(retried),
        "retried_one_row": sum(1 for c in retried if rows[c] == 1),
        "retried_unacknowledged": sum(1 for s in retried.values() if s["acked"] is None),
        "submits_replayed": sum(1 for s in submits.values() if "replayed" in s),
        "replays_same_row": sum(1 for s in submits.values() if "replayed" in s and s["replayed"] == s["acked"]),
        "stored_not_acknowledged": sum(1 for c in rows if c not in acked),
        "stored_unknown_client_id": sum(1 for c in rows if c not in submits),
        "annotations_stored": sum(rows.values()),
    }
    out.update(overassignment_counts(SLUG))
    jobs = list(GenerationJob.objects.values("id", "status", "done", "total", "attempts", "error", "started_at",
                                             "finished_at"))
    status_of = {j["id"]: j["status"] for j in jobs}
    out["jobs_interrupted_by_a_kill"] = len(set(interrupted))
    out["interrupted_jobs_finished"] = sum(1 for i in set(interrupted) if status_of.get(i) == "succeeded")
    spans = [(j["finished_at"] - j["started_at"]).total_seconds() for j in jobs if j["finished_at"] and j["started_at"]]
    out["job_seconds_p50"] = round(pct(spans, 50), 1) if spans else None
    out["jobs"] = len(jobs)
    out["jobs_by_status"] = dict(Counter(j["status"] for j in jobs))
    out["jobs_stuck"] = sum(1 for j in jobs if j["status"] in ("queued", "running"))
    out["jobs_reattempted"] = sum(1 for j in jobs if j["attempts"] > 0)
    bad = []
    for j in jobs:
        if j["status"] != "succeeded":
            continue
        keys = list(Response.objects.filter(dedupe_key__startswith=f"gen:{j['id']}:").values_list("prompt_id", "dedupe_key"))
        if len(keys) != j["total"] or len(set(keys)) != len(keys) or j["done"] != j["total"]:
            bad.append({"job": j["id"], "responses": len(keys), "total": j["total"], "done": j["done"]})
    out["jobs_with_wrong_responses"] = len(bad)
    out["job_problems"] = bad[:5] + [j for j in jobs if j["status"] == "failed"][:3]
    return out


def run_child(kind: str, env: dict, workdir: Path, *extra: str, timeout: float = 300) -> dict:
    result = subprocess.run([PY, __file__, "--child", kind, "--workdir", str(workdir), *extra], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"child {kind} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


# --- the run ------------------------------------------------------------------------------------
def run(plan: Plan, db: str, seed: int) -> dict:
    import httpx
    import redis

    random.seed(seed)
    workdir = Path(tempfile.mkdtemp(prefix="quorum-faults-"))
    prefix = f"quorum-faults-{uuid.uuid4().hex[:8]}:"
    env = django_env(
        pg_url(db),
        CELERY_BROKER_URL=redis_url(), CELERY_BROKER_KEY_PREFIX=prefix,
        # A killed worker's message comes back from Redis after this long; jobs hand on every 3 s, well inside it.
        CELERY_VISIBILITY_TIMEOUT="8", QUORUM_JOB_HEARTBEAT_SECONDS="1", QUORUM_JOB_STALE_SECONDS="5",
        QUORUM_JOB_SLICE_SECONDS="3", QUORUM_JOB_QUEUED_STALE_SECONDS="20", QUORUM_RECONCILE_SECONDS="2",
        QUORUM_WORKER_PRELOAD="1", QUORUM_DATA_DIR=str(workdir / "data"), QUORUM_CACHE_URL="",
        OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
    )
    server, celery = None, Celery(env, workdir)
    rec, jobs, kills, interrupted = Record(), [], Counter(), []
    t_start = time.perf_counter()
    try:
        pg_recreate(db)
        answer = run_child("setup", env, workdir, "--annotators", str(plan.annotators), "--tasks", str(plan.tasks))
        say(f"database {db}: migrated, {plan.tasks:,} pairwise tasks (overlap 3), {plan.annotators} annotators, "
            f"a tiny model and {GEN_PROMPTS} prompts to generate for, in {time.perf_counter() - t_start:.0f} s")
        server = Gunicorn(env, plan.web_workers, "sync", 1, workdir, "faults")
        celery.worker()
        celery.beat()
        say(f"gunicorn ({plan.web_workers} sync workers) on {server.url} after {server.wait_ready():.1f} s; "
            f"Celery worker and beat on Redis ({prefix}*)")

        stop = threading.Event()
        threads = [threading.Thread(target=annotator, args=(server.url, tok, stop, rec), daemon=True)
                   for tok in answer["tokens"]]
        threads.append(threading.Thread(target=job_launcher, daemon=True,
                                        args=(server.url, answer["engineer_token"], stop, plan.job_every_s, rec, jobs)))
        for t in threads:
            t.start()
        # Kills at random moments over the load: gaps drawn uniformly around the mean.
        t0 = time.monotonic()
        mean_gap = plan.seconds / (plan.kills + 1)
        # About a third of the kills hit the Celery worker, in random order among the web-worker kills.
        targets = ["celery"] * max(1, round(plan.kills * 0.3)) + ["web"] * (plan.kills - max(1, round(plan.kills * 0.3)))
        random.shuffle(targets)
        for target in targets:
            time.sleep(random.uniform(0.3, 1.7) * mean_gap)
            if target == "web":
                victim = kill_web_worker(server)
                kills["gunicorn worker" if victim else "gunicorn worker (none to kill)"] += 1
            else:
                # Most jobs last a second or two: wait a moment for one to be running, so the kill interrupts it.
                mid_job = wait_running_job(server.url, answer["engineer_token"], within=6.0)
                celery.kill("worker")
                celery.worker()
                kills["celery worker (mid-job)" if mid_job else "celery worker"] += 1
                if mid_job:
                    interrupted.append(mid_job)
        time.sleep(max(0.0, plan.seconds - (time.monotonic() - t0)))
        stop.set()
        for t in threads:
            t.join(timeout=120)
        load_s = time.monotonic() - t0
        alive = sum(t.is_alive() for t in threads)
        say(f"load: {load_s:.0f} s, {sum(kills.values())} kills ({', '.join(f'{k} {v}' for k, v in sorted(kills.items()))}); "
            f"{len(rec.submits)} submits sent, {sum(1 for s in rec.submits.values() if s['acked'])} acknowledged")

        # Jobs get drain_s to finish with a live worker and beat: the reconciler brings back what a kill interrupted.
        t1 = time.monotonic()
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Token {answer['engineer_token']}"}, timeout=30) as c:
            while time.monotonic() - t1 < plan.drain_s:
                try:
                    listed = c.get(f"/api/v1/projects/{GEN_SLUG}/generation-jobs/", params={"limit": 1000}).json()["results"]
                except (httpx.HTTPError, ValueError, KeyError):
                    time.sleep(1)
                    continue
                if all(j["status"] not in ("queued", "running") for j in listed):
                    break
                time.sleep(1)
        say(f"jobs drained {time.monotonic() - t1:.0f} s after the load")
        server.stop()
        celery.stop_all()
        Path(workdir, "submits.json").write_text(json.dumps(rec.submits))
        Path(workdir, "interrupted.json").write_text(json.dumps(interrupted))
        figures = run_child("check", env, workdir)
        figures.update(
            kills=sum(kills.values()), kills_by_target=dict(kills), load_seconds=round(load_s, 1),
            server_errors=rec.server_errors, statuses=dict(rec.statuses), dropped=dict(rec.dropped),
            unresolved_submits=sum(1 for s in rec.submits.values() if s["status"] is None or s["status"] >= 500),
            annotator_threads_alive=alive, jobs_launched=len(jobs),
            next_task_p50_ms=round(pct(rec.next_ms, 50), 1), next_task_p99_ms=round(pct(rec.next_ms, 99), 1),
            submit_p50_ms=round(pct(rec.submit_ms, 50), 1), submit_p99_ms=round(pct(rec.submit_ms, 99), 1),
            samples=rec.samples, seconds=round(time.perf_counter() - t_start, 1),
        )
        figures["ok"] = verdict(figures) == []
        if not figures["ok"]:
            figures["logs"] = celery.tails() + "\n" + (server.log_tail() if server else "")
        return figures
    finally:
        if server is not None:
            server.stop()
        celery.stop_all()
        try:
            pg_recreate(db, drop_only=True)
        except Exception as exc:
            say(f"could not drop {db}: {exc}")
        try:
            client = redis.Redis.from_url(redis_url())
            for key in client.scan_iter(match=f"{prefix}*"):
                client.delete(key)
        except Exception:
            pass
        shutil.rmtree(workdir, ignore_errors=True)


def verdict(f: dict) -> list[str]:
    """The broken invariants; empty when every check holds."""
    problems = []
    if f["acknowledged_stored_once"] != f["submits_acknowledged"]:
        problems.append(f"acknowledged submits not stored exactly once: {f['submits_acknowledged'] - f['acknowledged_stored_once']}")
    if f["stored_more_than_once"] or f["retried_one_row"] + f["retried_unacknowledged"] < f["submits_retried"]:
        problems.append("a client id stored more than once")
    if f["replays_same_row"] != f["submits_replayed"]:
        problems.append(f"replayed submits answered with another row: {f['submits_replayed'] - f['replays_same_row']}")
    if f["stored_unknown_client_id"]:
        problems.append("rows for client ids never sent")
    over = {k: f[k] for k in OVER_KEYS if f[k]}
    if over:
        problems.append(f"over-assignment: {over}")
    if f["tasks_with_counter_drift"]:
        problems.append(f"task counters disagree with rows on {f['tasks_with_counter_drift']} tasks")
    if f["interrupted_jobs_finished"] != f["jobs_interrupted_by_a_kill"]:
        problems.append("a job killed part-way did not finish")
    if f["jobs_stuck"]:
        problems.append(f"jobs stuck queued or running: {f['jobs_stuck']}")
    if f["jobs_with_wrong_responses"] or f["jobs_by_status"].get("failed"):
        problems.append(f"jobs failed or with wrong responses: {f['job_problems']}")
    if f["server_errors"]:
        problems.append(f"5xx answers: {f['server_errors']}")
    if f["unresolved_submits"]:
        problems.append(f"submits never answered after {SUBMIT_ATTEMPTS} attempts: {f['unresolved_submits']}")
    if f["annotator_threads_alive"]:
        problems.append("annotator threads still running")
    return problems


def report(f: dict) -> None:
    say("\n[faults] what survived")
    say(f"  kills survived:            {f['kills']} ({', '.join(f'{k} {v}' for k, v in sorted(f['kills_by_target'].items()))})")
    say(f"  submits acknowledged:      {f['submits_acknowledged']} of {f['submits_sent']} sent; stored exactly once "
        f"{f['acknowledged_stored_once']}, missing {f['acknowledged_missing']}, wrong row {f['acknowledged_wrong_row']}")
    say(f"  retried submits:           {f['submits_retried']} (same client id), resolved to one row {f['retried_one_row']}, "
        f"never acknowledged {f['retried_unacknowledged']}; client ids stored twice {f['stored_more_than_once']}")
    say(f"  replayed submits:          {f['submits_replayed']} acknowledged submits sent again with their client id, "
        f"answered with the same row {f['replays_same_row']}")
    say(f"  annotations stored:        {f['annotations_stored']} ({f['stored_not_acknowledged']} stored but never acknowledged)")
    say(f"  over-assigned tasks:       {f['tasks_over_assigned']}; over-annotated {f['tasks_over_annotated']}; "
        f"(task, annotator) duplicates {f['duplicate_task_annotator_assignments']}; counter drift {f['tasks_with_counter_drift']}")
    say(f"  generation jobs:           {f['jobs']} ({f['jobs_by_status']}), stuck {f['jobs_stuck']}, re-queued by the reconciler "
        f"{f['jobs_reattempted']}, with wrong responses {f['jobs_with_wrong_responses']}; median {f['job_seconds_p50']} s")
    say(f"  jobs killed part-way:      {f['jobs_interrupted_by_a_kill']}, finished afterwards {f['interrupted_jobs_finished']}")
    say(f"  5xx answers:               {f['server_errors']}; requests dropped by a kill: {sum(f['dropped'].values())} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(f['dropped'].items())) or 'none'})")
    say(f"  latency under faults (ms): next-task p50 {f['next_task_p50_ms']} p99 {f['next_task_p99_ms']}; "
        f"submit p50 {f['submit_p50_ms']} p99 {f['submit_p99_ms']}")
    for sample in f["samples"]:
        say(f"    e.g. {sample}")
    problems = verdict(f)
    say(f"  verdict: {'PASS' if not problems else 'FAIL: ' + '; '.join(problems)}")
    if problems and f.get("logs"):
        say(f["logs"][-6000:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ci", action="store_true", help="the bounded run (10 kills over 40 s of load, then the jobs drain)")
    parser.add_argument("--kills", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--annotators", type=int)
    parser.add_argument("--db", default="quorum_faults", help="PostgreSQL database to create and drop")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--tasks", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return 0
    plan = CI if args.ci else FULL
    for name in ("kills", "seconds", "annotators"):
        if getattr(args, name) is not None:
            setattr(plan, name, getattr(args, name))
    say(f"Quorum fault harness ({'CI' if args.ci else 'full'} run, seed {args.seed}): {plan.kills} kills over "
        f"{plan.seconds:.0f} s, {plan.annotators} annotators")
    try:
        figures = run(plan, args.db, args.seed)
    except Exception:
        traceback.print_exc()
        return 2
    report(figures)
    if args.json:
        figures.pop("logs", None)
        print(json.dumps(figures), flush=True)
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
