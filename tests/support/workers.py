"""Real Celery worker processes for the integration tests: on the test database, in their own process groups, with
their logs kept for the failure message."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def wait_for(predicate, what: str, details: Callable[[], str], deadline: float, every: float = 0.05):
    """Poll `predicate` until it gives something true and return that; past `deadline` seconds, fail with `details()`
    (the workers' logs, the rows concerned)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}{details()}")


def worker_env(workdir: Path, extra: dict[str, str]) -> dict:
    """The environment of a worker (and of a `manage.py` command that sends to it) on the test database, with its data
    under `workdir`, offline, on one thread; `extra` adds the test's own settings (shortened timings, its broker)."""
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "PYTHONPATH": str(ROOT),
        "QUORUM_DATA_DIR": str(workdir / "data"),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


class Processes:
    """Worker and beat processes, each in its own process group so that a kill takes its pool children too."""

    def __init__(self, env: dict, logs: Path):
        self.env, self.logs = env, logs
        self.running: dict[str, subprocess.Popen] = {}
        self.count = 0

    def start(self, name: str, *args: str) -> subprocess.Popen:
        self.count += 1
        log = open(self.logs / f"{name}-{self.count}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "quorum", *args],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.running[name] = proc
        return proc

    def worker(self) -> subprocess.Popen:
        """Start a worker and return once it is consuming: the embedded broker creates its tables when the first
        process connects, and a message sent while they are being created can be lost (the reconciler would
        resend it, but these tests run no beat unless they ask for one)."""
        proc = self.start(
            "worker", "worker", "-Q", "default,gpu", "-c", "1", "-n", f"gen-{uuid.uuid4().hex[:6]}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO",
        )
        log = self.logs / f"worker-{self.count}.log"
        deadline = time.monotonic() + 120
        while " ready." not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the worker did not start:\n" + log.read_text(errors="replace")[-3000:])
            time.sleep(0.1)
        return proc

    def beat(self) -> subprocess.Popen:
        return self.start("beat", "beat", "--schedule", str(self.logs / "beat-schedule"), "--loglevel", "INFO")

    def kill(self, name: str) -> None:
        proc = self.running.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.kill(name)

    def tails(self) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            out.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(out)
