"""Load: 64 concurrent annotators for 60 s over HTTP (gunicorn), on PostgreSQL and then on the embedded SQLite.

Each annotator loops next-task -> submit through the API, as the web UI does. Prints, per database, the rate,
p50/p99 of next-task and submit, the error count (target 0) and the over-assignment check, then a table side
by side: where the embedded default stops being enough. Loopback only; each database is built here and
removed at the end. Run: `.venv/bin/python bench/load.py` (about three minutes), `--seconds 20` for a shorter
run, `--annotators N` for another crowd.
"""

import os
import sys

# Run as a script, this folder is sys.path[0] and bench/queue.py would shadow the standard library's `queue`.
_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == _HERE:
    sys.path[0] = os.path.dirname(_HERE)
os.environ.setdefault("QUORUM_DEV", "1")  # a local measurement: the development secret key will do

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.queue import (  # noqa: E402
    N_CORES,
    OVERLAP,
    SLUG,
    Gunicorn,
    accounts_create,
    django_env,
    http_level,
    level_report,
    machine_idle_check,
    over_report,
    overassignment_counts,
    pct,
    pg_recreate,
    pg_url,
    project_seed,
    run_child,
    say,
    vacuum_analyze,
)

LOAD_DB = "quorum_load"


def tasks_needed(annotators: int, seconds: float, rate_guess: float) -> int:
    """Enough tasks that nobody runs dry: the guessed rate, doubled, spread over the overlap."""
    return max(2_000, int(rate_guess * seconds * 2 / OVERLAP) + annotators * 4)


def row(name: str, res, over: int | None) -> str:
    s = res.stats
    errors = sum(s.errors.values())
    return (f"| {name:<10} | {res.annotators:>10} | {res.rate:>13.1f} | {pct(s.next_ms, 50):>8.1f} | {pct(s.next_ms, 99):>8.1f} "
            f"| {pct(s.submit_ms, 50):>8.1f} | {pct(s.submit_ms, 99):>8.1f} | {errors:>6} | "
            f"{'n/a' if over is None else over:>13} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    # As served in production (platform/Procfile): gthread workers, about one per core.
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--worker-class", default="gthread", choices=("sync", "gthread"))
    parser.add_argument("--threads", type=int, default=8, help="threads per gthread worker")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--db", default=LOAD_DB, help="PostgreSQL database to create and drop")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="quorum-load-"))
    servers: list[Gunicorn] = []
    results: dict = {}
    t_start = time.perf_counter()
    say(f"Quorum load: {args.annotators} annotators x {args.seconds:.0f} s over HTTP, gunicorn {args.workers} "
        f"{args.worker_class} workers, {N_CORES} cores (the annotators' client threads share them)")
    say(machine_idle_check())
    try:
        # PostgreSQL: a fresh database, migrated and seeded in this process.
        database_url = pg_url(args.db)
        pg_recreate(args.db)
        os.environ.update(django_env(database_url))
        os.environ.pop("QUORUM_DEBUG", None)
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0)
        n_tasks = tasks_needed(args.annotators, args.seconds, 400)
        users, tokens = accounts_create("load-", args.annotators)
        project_seed(slug=SLUG, n_tasks=n_tasks, users=users)
        vacuum_analyze()
        connections.close_all()
        say(f"\n[PostgreSQL] {args.db}: {n_tasks:,} pairwise tasks (overlap {OVERLAP}), {args.annotators} annotators")
        server = Gunicorn(django_env(database_url), args.workers, args.worker_class, args.threads, tmp, "pg")
        server.db = args.db  # CPU accounting of this database's backends
        servers.append(server)
        say(f"  gunicorn answering on {server.url} after {server.wait_ready():.1f} s")
        http_level(server, SLUG, tokens[:8], 2.0, "warm-up")
        res = http_level(server, SLUG, tokens, args.seconds, f"{args.annotators} annotators")
        level_report(res)
        server.stop()
        servers.remove(server)
        results["PostgreSQL"] = (res, over_report("PostgreSQL", overassignment_counts(SLUG)))
        connections.close_all()

        # SQLite: its own file, seeded by a child process (this one is set up for PostgreSQL).
        if not args.skip_sqlite:
            sqlite_path = tmp / "load.sqlite3"
            sqlite_env = django_env(f"sqlite:///{sqlite_path}")
            n_tasks = tasks_needed(args.annotators, args.seconds, 150)
            answer, _ = run_child("sqlite-setup", sqlite_env, "--tasks", str(n_tasks), "--annotators", str(args.annotators))
            say(f"\n[SQLite] {sqlite_path}: {n_tasks:,} tasks (BEGIN IMMEDIATE, WAL, 30 s busy timeout from the settings)")
            server = Gunicorn(sqlite_env, args.workers, args.worker_class, args.threads, tmp, "sqlite")
            servers.append(server)
            say(f"  gunicorn answering on {server.url} after {server.wait_ready():.1f} s")
            http_level(server, SLUG, answer["tokens"][:8], 2.0, "warm-up")
            res = http_level(server, SLUG, answer["tokens"], args.seconds, f"{args.annotators} annotators")
            level_report(res)
            server.stop()
            servers.remove(server)
            counts, _ = run_child("check", sqlite_env)
            results["SQLite"] = (res, over_report("SQLite", counts))

        say(f"\n[load] {args.annotators} concurrent annotators, {args.seconds:.0f} s each, HTTP through gunicorn "
            f"({args.workers} {args.worker_class} workers); latencies in ms as the client saw them")
        say("| database   | annotators | annotations/s | next p50 | next p99 | sub. p50 | sub. p99 | errors | over-assigned |")
        say("| ---------- | ---------- | ------------- | -------- | -------- | -------- | -------- | ------ | ------------- |")
        for name, (res, over) in results.items():
            say(row(name, res, over))
        if "SQLite" in results:
            pg, sq = results["PostgreSQL"][0], results["SQLite"][0]
            rate, p99 = sq.rate / pg.rate, pct(sq.stats.next_ms, 99) / max(pct(pg.stats.next_ms, 99), 1e-9)
            sq_errors = sum(sq.stats.errors.values())
            say(f"SQLite: {rate:.0%} of PostgreSQL's rate, p99 next-task {p99:.1f}x PostgreSQL's, {sq_errors} errors.")
            if rate < 0.9 or p99 > 1.2 or sq_errors:
                say("  Every SQLite write waits for the one writer lock (BEGIN IMMEDIATE), so annotators queue behind each "
                    "other: the embedded default is for one machine and a small team; a crowd needs PostgreSQL, where "
                    "SKIP LOCKED lets annotators pass each other.")
            else:
                say("  At this load SQLite keeps up: the web workers, not the database, set the pace here.")
        say(f"\ntotal {time.perf_counter() - t_start:.0f} s")
        return 0
    except Exception:
        traceback.print_exc()
        for server in servers:
            say(f"--- {server.log_path.name} (tail) ---\n{server.log_tail()}")
        return 1
    finally:
        for server in servers:
            server.stop()
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        try:
            pg_recreate(args.db, drop_only=True)
        except Exception as exc:
            say(f"could not drop {args.db}: {exc}")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
