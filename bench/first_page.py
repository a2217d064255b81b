"""First load of the Training runs page on a fresh server: the time a signed-in engineer waits for the first GET of
/training/p/<project>/runs/ (the page with the launch form, which lists the chosen method's hyperparameters).

Starts a real gunicorn server (`quorum.wsgi`, one worker, as platform/Procfile starts it) on a free port, on a
throwaway SQLite database migrated and seeded with one project (a base model and a snapshot of each format, so
the launch form is complete) whose admin is signed in: the session is written
to the database beforehand, so the timed GET is the server's very first request. The worker counts as ready when
gunicorn's `post_worker_init` hook runs (the WSGI application is loaded and the worker is about to accept). Prints
the boot time (process start to ready), the first GET and a second GET of the same page (a warm server's time,
the baseline). Target: first GET under 1 s.

Run: `.venv/bin/python bench/first_page.py [--method sft] [--repeat 1]`.
"""

import os
import sys

# Run as a script, this folder is sys.path[0], and bench/queue.py would shadow the standard library's `queue`.
_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == _HERE:
    sys.path[0] = os.path.dirname(_HERE)

import argparse  # noqa: E402
import http.client  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(_HERE).parent
TARGET_S = 1.0
SLUG = "bench-first-page"
BOOT_TIMEOUT_S = 300

SEED = f"""
import django
django.setup()
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from annotation import services
from annotation.models import DatasetSnapshot
from training.models import Model
admin = get_user_model().objects.create_user("bench-admin", password="x")
project = services.project_create(name="Bench first page", slug="{SLUG}", created_by=admin)
# Rows only (the page lists them in the launch form; nothing is loaded or trained).
Model.objects.create(name="bench-base", backend="transformers", path="/nonexistent/bench-base")
for format in ("sft", "preference", "unpaired", "stepwise"):
    DatasetSnapshot.objects.create(project=project, format=format, sha256="0" * 64, path=f"/nonexistent/{{format}}.jsonl")
session = SessionStore()
session[SESSION_KEY] = str(admin.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = admin.get_session_auth_hash()
session.create()
print(session.session_key)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(env: dict) -> str:
    """Migrate the throwaway database and seed it; returns the signed-in session's key."""
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True)
    seeded = subprocess.run([python, "-c", SEED], cwd=ROOT, env=env, capture_output=True, text=True)
    if seeded.returncode:
        raise SystemExit(f"seeding failed:\n{seeded.stderr}")
    return seeded.stdout.strip().splitlines()[-1]


def get(port: int, path: str, session_key: str) -> tuple[int, float, int]:
    """(status, seconds, body bytes) of one GET with the session cookie."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=BOOT_TIMEOUT_S)
    started = time.perf_counter()
    conn.request("GET", path, headers={"Cookie": f"sessionid={session_key}", "Host": "127.0.0.1"})
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    return response.status, elapsed, len(body)


def serve_once(env: dict, workdir: Path, session_key: str, path: str) -> dict:
    """Start a fresh gunicorn, wait until its worker is ready, GET `path` twice, stop it."""
    ready = workdir / "ready"
    ready.unlink(missing_ok=True)
    hooks = workdir / "gunicorn_hooks.py"
    hooks.write_text(f"def post_worker_init(worker):\n    open({str(ready)!r}, 'w').close()\n")
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "quorum.wsgi", "--config", str(hooks), "--workers", "1",
               "--worker-class", "gthread", "--threads", "4", "--bind", f"127.0.0.1:{port}", "--timeout", "300"]
    started = time.perf_counter()
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not ready.exists():
            if server.poll() is not None:
                raise SystemExit(f"gunicorn exited with {server.returncode}:\n{server.stderr.read().decode()}")
            if time.perf_counter() - started > BOOT_TIMEOUT_S:
                raise SystemExit("gunicorn's worker did not start")
            time.sleep(0.01)
        boot = time.perf_counter() - started
        first = get(port, path, session_key)
        second = get(port, path, session_key)
    finally:
        server.terminate()
        server.wait(timeout=30)
    for status, _, _ in (first, second):
        if status != 200:
            raise SystemExit(f"GET {path} answered {status}")
    return {"boot": boot, "first": first[1], "second": second[1], "bytes": first[2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="sft", help="the method whose launch form the page shows")
    parser.add_argument("--repeat", type=int, default=1, help="fresh servers to start, one after another")
    args = parser.parse_args()
    path = f"/training/p/{SLUG}/runs/?method={args.method}"
    workdir = Path(tempfile.mkdtemp(prefix="quorum-first-page-"))
    env = {**os.environ, "QUORUM_DEV": "1", "QUORUM_DATA_DIR": str(workdir), "DJANGO_SETTINGS_MODULE": "quorum.settings"}
    env.pop("DATABASE_URL", None)
    try:
        session_key = prepare(env)
        print(f"server: gunicorn quorum.wsgi, 1 worker (gthread); database: SQLite in {workdir}; page: GET {path}")
        for i in range(args.repeat):
            r = serve_once(env, workdir, session_key, path)
            verdict = "meets" if r["first"] < TARGET_S else "misses"
            print(f"fresh server {i + 1}: boot {r['boot']:.2f} s; first GET {r['first']:.3f} s ({verdict} the "
                  f"{TARGET_S:.0f} s target); second GET {r['second']:.3f} s (warm baseline); {r['bytes']} bytes")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
