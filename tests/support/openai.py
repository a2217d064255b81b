"""The local OpenAI-compatible server (tests/training/openai_server.py) as a real process over a tiny model, and
a handle on its fault-injection endpoint."""

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

SERVER = Path(__file__).resolve().parents[1] / "training" / "openai_server.py"


@contextmanager
def openai_server(model_dir):
    """Yields the server's root URL (its API is under /v1) once it listens; kills it after."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), str(model_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("listening on") or proc.poll() is not None:
            break
    if not line.startswith("listening on"):
        proc.kill()
        raise RuntimeError(f"test server did not start: {line!r} {proc.stderr.read()[-2000:]}")
    try:
        yield f"http://127.0.0.1:{int(line.split()[-1])}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


class ServerControl:
    """Faults and counters of one server (see openai_server.py); `reset()` waits out requests still in flight."""

    CLEAR = {"fail": [], "delay": 0, "delay_count": 0, "chunk_delay": 0, "break_after": None, "error_after": None}

    def __init__(self, url: str):
        self.url = f"{url}/control"

    def set(self, **body) -> None:
        httpx.post(self.url, json=body, timeout=5).raise_for_status()

    def get(self) -> dict:
        return httpx.get(self.url, timeout=5).json()

    def reset(self) -> None:
        deadline = time.monotonic() + 15
        while self.get()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.1)
        self.set(**self.CLEAR, reset=True)
