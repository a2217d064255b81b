"""Suite time: the whole test suite's wall time, serial and in parallel processes, with the machine's load.

    .venv/bin/python bench/suite.py [--workers 0 2 3] [--postgres] [-- extra pytest arguments]

Runs the suite once per --workers value (0 = one process, as before pytest-xdist; N = make test's way with N
processes) and prints one line each: passed/failed/skipped, wall seconds and the 1-minute load average before
and after. --postgres runs it as CI does (.ci/run): PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379;
QUORUM_TEST_SUFFIX (default `_bench`) keeps its test databases apart from other runs'. The targets: make test
(SQLite, 2 workers) under 8 minutes on 2 cores, CI under 12.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The parallel options of `make test` (Makefile).
PARALLEL = ["--dist", "loadfile", "--no-loadscope-reorder"]


def suite_run(workers: int, env: dict, extra: list[str]) -> dict:
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(workers), *PARALLEL, *extra]
    load_before, t0 = os.getloadavg()[0], time.perf_counter()
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    summary = (result.stdout.strip().splitlines() or [""])[-1]
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    return {"workers": workers, "seconds": seconds, "load_before": load_before, "load_after": os.getloadavg()[0],
            "counts": counts, "rc": result.returncode, "tail": result.stdout[-3000:] + result.stderr[-2000:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL and Redis on 127.0.0.1, as CI runs it")
    parser.add_argument("extra", nargs="*", help="more pytest arguments (after --), e.g. a subset of files")
    args = parser.parse_args()
    env = {**os.environ, "QUORUM_DEV": "1"}
    env.setdefault("QUORUM_TEST_SUFFIX", "_bench")
    if args.postgres:
        env.update(DATABASE_URL="postgres://postgres@127.0.0.1:5432/quorum", REDIS_URL="redis://127.0.0.1:6379/0")
    database = "PostgreSQL + Redis" if args.postgres else "SQLite"
    print(f"suite on {database}, {os.cpu_count()} cores", flush=True)
    ok = True
    for workers in args.workers:
        r = suite_run(workers, env, args.extra)
        how = "one process" if workers == 0 else f"{workers} workers"
        counts = ", ".join(f"{n} {kind}" for kind, n in r["counts"].items()) or "no summary"
        print(f"  {how:>12}: {r['seconds']:6.0f} s ({r['seconds'] / 60:.1f} min), {counts}; "
              f"load {r['load_before']:.1f} before, {r['load_after']:.1f} after", flush=True)
        if r["rc"] != 0:
            ok = False
            print(r["tail"], flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
