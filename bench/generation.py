"""Generation benchmark: the `transformers` backend against raw `model.generate`, then a job through a worker.

    .venv/bin/python bench/generation.py [--batches 1 4 8] [--tokens 64] [--repeats 3] [--skip-job]

1. Tokens/s of TransformersBackend.generate and of a hand-written `model.generate` call on the same SmolLM2
   model, the same prompts, batch and sampling (seeded, so both produce the same tokens), interleaved and
   repeated; the overhead is the median backend time over the median raw time, minus one. Target: <= 5 %.
2. Job throughput: a generation job (prompts x 2 samples, pairwise tasks) on a fresh SQLite database through a
   real Celery worker on the embedded broker, in responses per minute, beside the same generation done in this
   process (the cost of the queue, the database writes and the worker).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/generation.py`, this folder comes first on sys.path, where bench/queue.py would shadow
# the standard library's queue (torch imports it).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import standalone

ROOT = standalone.prepare()

QUESTIONS = ROOT / "annotation" / "fixtures" / "demo" / "mt_bench_questions.jsonl"


def prompts(count: int) -> list[list[dict]]:
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    return [[{"role": "user", "content": r["turns"][0]}] for r in rows[:count]]


def smollm2_dir() -> Path:
    import django

    django.setup()
    from django.conf import settings

    from training import packaged

    converted = packaged.smollm2_convert(settings.MODEL_DIR, say=lambda m: print(m, flush=True))
    return converted.path


# --- 1. backend overhead ---------------------------------------------------------------------
def raw_generate(model, tokenizer, conversations, sampling, kwargs):
    """What a careful hand-written call does: template, left-pad, generate, count, decode."""
    import torch

    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(sampling.seed)
    with torch.inference_mode():
        out = model.generate(**encoded, **kwargs)
    new = out[:, encoded["input_ids"].shape[1] :]
    ends = set(kwargs["eos_token_id"]) | {kwargs["pad_token_id"]}
    tokens = 0
    for row in new.tolist():
        n = next((i + 1 for i, t in enumerate(row) if t in ends), len(row))
        tokens += n
    tokenizer.batch_decode(new, skip_special_tokens=True)
    return tokens


def bench_overhead(path: Path, batches: list[int], max_tokens: int, repeats: int) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.backends import Sampling
    from training.backends.transformers_local import TransformersBackend

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    backend = TransformersBackend(model, tokenizer, max_batch_size=max(batches))
    sampling = Sampling(max_new_tokens=max_tokens, temperature=0.8, top_p=0.95, seed=1234)
    kwargs = backend.generation_kwargs(sampling)
    results = []
    for batch in batches:
        conversations = prompts(batch)
        backend.max_batch_size = batch
        raw_times, backend_times, raw_tokens, backend_tokens = [], [], 0, 0
        # Warm-up, then alternate so that load from other processes hits both sides alike.
        raw_generate(model, tokenizer, conversations[:1], sampling, {**kwargs, "max_new_tokens": 4})
        for _ in range(repeats):
            t0 = time.perf_counter()
            raw_tokens = raw_generate(model, tokenizer, conversations, sampling, kwargs)
            raw_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            out = backend.generate(conversations, 1, sampling)
            backend_times.append(time.perf_counter() - t0)
            backend_tokens = sum(c.completion_tokens for row in out for c in row)
        raw_t, backend_t = statistics.median(raw_times), statistics.median(backend_times)
        row = {
            "batch": batch,
            "raw_tokens": raw_tokens,
            "backend_tokens": backend_tokens,
            "raw_tok_s": raw_tokens / raw_t,
            "backend_tok_s": backend_tokens / backend_t,
            "overhead": backend_t / raw_t - 1,
            "raw_s": raw_times,
            "backend_s": backend_times,
        }
        results.append(row)
        print(
            f"batch {batch:>2}: raw {row['raw_tok_s']:7.1f} tok/s   backend {row['backend_tok_s']:7.1f} tok/s   "
            f"overhead {100 * row['overhead']:+6.1f} %   (tokens {raw_tokens} vs {backend_tokens}; "
            f"medians of {repeats}: {raw_t:.2f} s vs {backend_t:.2f} s)",
            flush=True,
        )
    return results


# --- 2. job throughput -----------------------------------------------------------------------
SEED = """
import json, os, sys
from annotation import services
from training.services import model_register
project = services.project_create(name="Bench", slug="bench")
for c in json.loads(sys.stdin.read()):
    services.prompt_create(project=project, messages=c)
model_register(name="SmolLM2-135M-Instruct", backend="transformers", path=os.environ["BENCH_MODEL_PATH"],
               sampling={"temperature": 0.8, "top_p": 0.95})
"""

READ = """
import json
from training.models import GenerationJob
j = GenerationJob.objects.get()
print(json.dumps({"status": j.status, "done": j.done, "tasks": j.tasks_created, "tokens": j.completion_tokens,
                  "gen_s": j.generation_seconds, "queued_to_end": (j.finished_at - j.created_at).total_seconds(),
                  "start_to_end": (j.finished_at - j.started_at).total_seconds()}))
"""


def bench_job(path: Path, n_prompts: int, max_tokens: int, batch_prompts: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="quorum-bench-generation-"))
    env = {
        **os.environ,
        "QUORUM_DATA_DIR": str(work),
        "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
        "CELERY_BROKER_URL": f"sqla+sqlite:///{work / 'broker.sqlite3'}",
        "QUORUM_WORKER_PRELOAD": "1",
        "PYTHONPATH": str(ROOT),
    }
    py = sys.executable
    worker = None
    try:
        subprocess.run([py, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        subprocess.run([py, "manage.py", "shell", "-v", "0", "-c", SEED], cwd=ROOT, env={**env, "BENCH_MODEL_PATH": str(path)},
                       check=True, input=json.dumps(prompts(n_prompts)), text=True)
        log = open(work / "worker.log", "w")
        worker = subprocess.Popen([py, "-m", "celery", "-A", "quorum", "worker", "-Q", "gpu,default", "-c", "1",
                                   "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
                                  cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(15)  # let the worker import torch and transformers before the clock starts
        t0 = time.perf_counter()
        subprocess.run([py, "manage.py", "generate", "--project", "bench", "--model", "SmolLM2-135M-Instruct",
                        "--n", "2", "--kind", "pairwise", "--batch-prompts", str(batch_prompts),
                        "--sampling", json.dumps({"max_new_tokens": max_tokens}), "--wait", "--timeout", "1800"],
                       cwd=ROOT, env=env, check=True)
        wall = time.perf_counter() - t0
        out = subprocess.run([py, "manage.py", "shell", "-v", "0", "-c", READ], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        row["wall"] = wall
        return row
    finally:
        if worker is not None:
            os.killpg(worker.pid, 9)
            worker.wait()
        shutil.rmtree(work, ignore_errors=True)


def bench_direct(path: Path, n_prompts: int, max_tokens: int, batch_prompts: int) -> dict:
    from training.backends import Sampling
    from training.backends.transformers_local import TransformersBackend

    backend = TransformersBackend.load(path, max_batch_size=2 * batch_prompts)
    conversations = prompts(n_prompts)
    sampling = Sampling(max_new_tokens=max_tokens, temperature=0.8, top_p=0.95)
    backend.generate(conversations[:1], 1, Sampling(max_new_tokens=4))
    t0 = time.perf_counter()
    out = backend.generate(conversations, 2, sampling)
    seconds = time.perf_counter() - t0
    return {"responses": sum(len(r) for r in out), "tokens": sum(c.completion_tokens for r in out for c in r),
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--tokens", type=int, default=64, help="max new tokens per completion")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--job-prompts", type=int, default=8)
    parser.add_argument("--skip-job", action="store_true")
    args = parser.parse_args()

    import torch

    path = smollm2_dir()
    load = os.getloadavg()[0]
    print(f"SmolLM2-135M-Instruct, float32, CPU, {torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} cores, load average {load:.1f}; sampling T=0.8 top_p=0.95 seeded; "
          f"{args.tokens} new tokens max", flush=True)
    print("\n1. transformers backend against raw model.generate (same model, prompts, batch, seed)", flush=True)
    results = bench_overhead(path, args.batches, args.tokens, args.repeats)
    worst = max(r["overhead"] for r in results)
    print(f"   worst overhead {100 * worst:+.1f} % (target <= 5 %)", flush=True)
    if args.skip_job:
        return
    batch_prompts = 4
    print(f"\n2. job throughput: {args.job_prompts} prompts x 2 samples, pairwise tasks, {batch_prompts} prompts "
          "per batch", flush=True)
    direct = bench_direct(path, args.job_prompts, args.tokens, batch_prompts)
    direct_rate = 60 * direct["responses"] / direct["seconds"]
    print(f"   in this process (backend only): {direct['responses']} responses in {direct['seconds']:.1f} s = "
          f"{direct_rate:.1f} responses/min", flush=True)
    job = bench_job(path, args.job_prompts, args.tokens, batch_prompts)
    rate = 60 * job["done"] / job["start_to_end"]
    rate_wall = 60 * job["done"] / job["queued_to_end"]
    print(f"   through a worker ({job['status']}): {job['done']} responses, {job['tasks']} tasks; "
          f"{job['start_to_end']:.1f} s from claim to end = {rate:.1f} responses/min; "
          f"{job['queued_to_end']:.1f} s from launch = {rate_wall:.1f} responses/min; "
          f"{job['gen_s']:.1f} s inside the backend", flush=True)


if __name__ == "__main__":
    main()
