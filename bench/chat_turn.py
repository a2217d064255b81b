"""Live chat latency: from a turn's message to both candidates on the annotator's screen, SmolLM2 on CPU, through
a real Celery worker on the embedded broker.

    .venv/bin/python bench/chat_turn.py [--turns 5] [--tokens 64] [--two-samplings]

A fresh SQLite database and broker in a temporary folder; one worker process (`-Q gpu,default -c 1`), the
packaged SmolLM2-135M-Instruct (converted once into var/models). The conversation goes on turn after turn (A is
picked each time), so prompts grow as they do for an annotator. Per turn, read from the turn row the worker
writes: seconds from the message to the first tokens of A and B and to each candidate complete; and, measured
here by polling the row every 20 ms, to the turn being ready (what the page shows within its 250 ms poll). The
first turn of a fresh worker (model load) is printed apart. Baseline, in the same run: the same two samples
generated in this process with the backend alone, after the worker has stopped (no queue, no database, no
streaming writes).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="quorum-bench-chat-"))
ENV = {
    "QUORUM_DATA_DIR": str(WORK),
    "QUORUM_MODEL_DIR": str(ROOT / "var" / "models"),
    "DATABASE_URL": f"sqlite:///{WORK / 'bench.sqlite3'}",
    "CELERY_BROKER_URL": f"sqla+sqlite:///{WORK / 'broker.sqlite3'}",
    "QUORUM_WORKER_PRELOAD": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
    "HF_HUB_OFFLINE": "1",
    "QUORUM_DEV": "1",
    "DJANGO_SETTINGS_MODULE": "quorum.settings",
    "PYTHONPATH": str(ROOT),
}
os.environ.update(ENV)

MESSAGES = [
    "Hi! Can you suggest a name for a small bakery?",
    "Why that name?",
    "Give me a short slogan for it.",
    "Now a one-line description for the shop window.",
    "Thanks. Anything else I should think about?",
    "What should I bake first?",
    "How much should a croissant cost?",
    "Goodbye!",
]


def setup(tokens: int, two_samplings: bool):
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from annotation import services
    from training import packaged
    from training.services import model_register

    call_command("migrate", verbosity=0)
    path = packaged.smollm2_convert(settings.MODEL_DIR, say=lambda m: print(m, flush=True)).path
    user = get_user_model().objects.create_user("bench")
    project = services.project_create(name="Bench", slug="bench", created_by=user)
    model_register(name="SmolLM2-135M-Instruct", backend="transformers", path=str(path))
    chat = {"models": ["SmolLM2-135M-Instruct"], "sampling": {"max_new_tokens": tokens, "temperature": 0.8, "top_p": 0.95}}
    if two_samplings:
        chat["sampling_b"] = {"temperature": 1.1}
    services.project_update(project=project, settings={"chat": chat})
    return project, user, path


def start_worker() -> subprocess.Popen:
    log = open(WORK / "worker.log", "w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "quorum", "worker", "-Q", "gpu,default", "-c", "1", "--without-gossip",
         "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"],
        cwd=ROOT, env={**os.environ}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    time.sleep(15)  # let the worker import torch and transformers before the clock starts
    return worker


def one_turn(conversation, user, text: str) -> dict:
    import uuid

    from annotation.models import ChatTurn
    from annotation.services import chat

    began = time.perf_counter()
    turn = chat.chat_message_send(conversation=conversation, annotator=user, content=text)
    while (row := ChatTurn.objects.get(pk=turn.pk)).state in ("pending", "generating"):
        if time.perf_counter() - began > 600:
            raise RuntimeError("the turn took over 10 minutes; see " + str(WORK / "worker.log"))
        time.sleep(0.02)
    ready = time.perf_counter() - began
    if row.state != "ready":
        raise RuntimeError(f"turn {row.index} {row.state}: {row.error}")
    chat.chat_turn_choose(turn=row, annotator=user, payload={"choice": "A"}, client_id=uuid.uuid4())
    tokens = [tr.response.generation["completion_tokens"] for tr in row.task.task_responses.all()]
    return {"ready": ready, "tokens": tokens, "messages": len(row.prompt.messages), **row.timings}


def show(label: str, t: dict) -> None:
    first = " / ".join(f"{x:.2f}" for x in t["first_token_s"])
    done = " / ".join(f"{x:.2f}" for x in t["complete_s"])
    print(f"   {label}: prompt of {t['messages']} messages, {t['tokens']} tokens; queued {t['queued_s']:.2f} s; "
          f"first tokens A/B {first} s; complete A/B {done} s; ready (both on screen) {t['ready']:.2f} s", flush=True)


def baseline(path: Path, messages: list[dict], tokens: int, repeats: int) -> tuple[float, int]:
    from training.backends import Sampling
    from training.backends.transformers_local import TransformersBackend

    backend = TransformersBackend.load(path)
    sampling = Sampling(max_new_tokens=tokens, temperature=0.8, top_p=0.95)
    backend.generate([messages], 1, Sampling(max_new_tokens=4))
    runs = []
    for seed in range(repeats):
        t0 = time.perf_counter()
        out = backend.generate([messages], 2, Sampling(**{**sampling.as_dict(), "seed": seed}))
        runs.append((time.perf_counter() - t0, max(c.completion_tokens for c in out[0])))
    return statistics.median(r[0] for r in runs), int(statistics.median(r[1] for r in runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=5, help="warm turns after the first (at most 7)")
    parser.add_argument("--tokens", type=int, default=64, help="max new tokens per candidate")
    parser.add_argument("--two-samplings", action="store_true", help="B at another temperature (two calls, not one batch)")
    args = parser.parse_args()
    worker = None
    try:
        project, user, path = setup(args.tokens, args.two_samplings)
        from annotation.services import chat

        print(f"SmolLM2-135M-Instruct, CPU, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
              f"{args.tokens} new tokens max; {'two samplings, one after the other' if args.two_samplings else 'two samples in one batch'}",
              flush=True)
        worker = start_worker()
        conversation = chat.conversation_start(project=project, annotator=user, mode="compare")
        turns = [one_turn(conversation, user, text) for text in MESSAGES[: 1 + max(1, min(args.turns, len(MESSAGES) - 1))]]
        show("first turn of a fresh worker (loads the model)", turns[0])
        for i, t in enumerate(turns[1:], start=1):
            show(f"turn {i}", t)
        warm = turns[1:]
        if warm:
            med = {k: statistics.median(max(t[k]) for t in warm) for k in ("first_token_s", "complete_s")}
            ready = statistics.median(t["ready"] for t in warm)
            print(f"\n   median over {len(warm)} warm turns: first tokens of both {med['first_token_s']:.2f} s, both complete "
                  f"{med['complete_s']:.2f} s, ready {ready:.2f} s after the message (the page polls every 0.25 s)", flush=True)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        worker = None
        last = conversation.turns.order_by("-index").first().prompt.messages
        base, longest = baseline(path, last, args.tokens, 3)
        per_token = statistics.median((t["complete_s"][0] - t["first_token_s"][0]) / max(max(t["tokens"]) - 1, 1) for t in warm)
        print(f"   baseline, the backend alone in this process on the last prompt: two samples in {base:.2f} s, the "
              f"longer {longest} tokens = {base / max(longest, 1):.3f} s/token (median of 3); through the worker "
              f"{per_token:.3f} s/token after the first (median of the warm turns)", flush=True)
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
