"""`quorum`: the command line on the Python client.

Exit codes a script can rely on: 0 done; 1 the server refused (its message on stderr); 2 usage (bad arguments,
unreadable input file, not logged in); 3 the server could not be reached; 4 a job that was waited for ended
failed or cancelled, or the wait timed out; 141 the reader of stdout went away (`quorum tasks P | head`), quietly,
as a command killed by SIGPIPE. `--json` prints one JSON document on stdout, in any position.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import data as _data
from .client import Client
from .config import Config, config_path, load_config, save_config
from .errors import ApiError, ConnectionFailed, QuorumError
from .jobs import Job, JobTimeout

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_CONNECTION, EXIT_JOB = 0, 1, 2, 3, 4
EXIT_CLOSED_PIPE = 128 + 13  # what a shell reports for a command ended by SIGPIPE


SNAPSHOT_REF = ("an id (fewer than 8 digits, or id:N) or 8 to 64 hex digits of its sha256 (digits only too); "
                "equal sha256s give the newest")


class UsageError(Exception):
    pass


# --- output -----------------------------------------------------------------------------------
def _emit(args, payload: Any, human: str | None = None) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
    elif human is not None:
        print(human)


def _table(rows: list[dict], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, dict)):
        value = json.dumps(value, ensure_ascii=False)
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


# --- client and arguments ---------------------------------------------------------------------
def _client(args) -> Client:
    cfg = load_config()
    url = args.url or cfg.url
    # The stored token goes only to the server it was issued by.
    same_server = (url or "").rstrip("/") == cfg.url.rstrip("/")
    token = args.token or (cfg.token if same_server else "")
    if not url or not token:
        raise UsageError("not logged in: run `quorum login --url URL --username NAME` (or set QUORUM_URL and "
                         "QUORUM_TOKEN)")
    return Client(url, token, timeout=args.timeout)


def _project(args) -> str:
    project = getattr(args, "project", None) or load_config().project
    if not project:
        raise UsageError("which project? pass --project SLUG (or set QUORUM_PROJECT)")
    return project


def _rows(path: str) -> list[dict]:
    if path == "-":
        return list(_data.iter_jsonl(sys.stdin.read().splitlines(), source="stdin"))
    p = Path(path)
    if not p.exists():
        raise UsageError(f"no such file: {path}")
    try:
        return _data.read_file(p)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


def _json_arg(text: str | None, what: str) -> dict:
    if not text:
        return {}
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a JSON object")
    return value


def _settings(pairs: list[str] | None) -> dict:
    out = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set takes KEY=VALUE, not {pair!r}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def _job_ref(ref: str, kind: str | None) -> tuple[str, int]:
    prefix, _, number = ref.rpartition("-")
    kinds = {"gen": "generation", "generation": "generation", "run": "training", "training": "training",
             "fb": "feedback", "feedback": "feedback", "round": "round"}
    if (prefix and prefix not in kinds) or not number.isdigit():
        raise UsageError(f"a job is gen-ID, run-ID, fb-ID, round-NUMBER or an ID with --kind, not {ref!r}")
    return kinds.get(prefix) or kind or "training", int(number)


def _wait(args, job: Job) -> int:
    try:
        status = job.wait(timeout=args.wait_timeout, poll_interval=args.poll,
                          progress=False if args.json or args.quiet else None)
    except JobTimeout as exc:
        _emit(args, job.as_dict(), str(exc))
        return EXIT_JOB
    _emit(args, job.as_dict(), _job_line(job))
    if status != "succeeded":
        print(f"error: {job.kind} job {job.id} {status}" + (f": {job.info.error}" if job.info and job.info.error
                                                               else ""), file=sys.stderr)
        return EXIT_JOB
    return EXIT_OK


def _job_line(job: Job) -> str:
    done, total = job.progress()
    line = f"{job.ref}  {job.status}  {done}/{total if total else '?'}"
    info = job.info
    if info is not None and getattr(info, "output_model", None):
        line += f"  model {info.output_model}"
    return line


# --- commands ---------------------------------------------------------------------------------
def cmd_login(args) -> int:
    cfg = load_config()
    url = (args.url or cfg.url or "").rstrip("/")
    if not url:
        raise UsageError("pass --url (the server, e.g. http://127.0.0.1:8000)")
    if args.token:
        client = Client(url, args.token, timeout=args.timeout)
        client.projects()  # proves the token
        token, who = args.token, "token"
    else:
        username = args.username or (input("Username: ") if sys.stdin.isatty() else "")
        if not username:
            raise UsageError("pass --username (and --password-stdin or --password), or --token")
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        elif args.password is not None:
            password = args.password
        elif sys.stdin.isatty():
            password = getpass.getpass("Password: ")
        else:
            raise UsageError("no password: pass --password-stdin and pipe it in")
        client = Client.login(url, username, password, timeout=args.timeout)
        token, who = client.token, username
    path = save_config(Config(url=url, token=token, project=args.project or cfg.project))
    _emit(args, {"url": url, "user": who, "config": str(path)}, f"Logged in to {url} as {who}; saved to {path}")
    return EXIT_OK


def cmd_logout(args) -> int:
    cfg = load_config()
    if cfg.url and cfg.token and not args.keep_token:
        Client(cfg.url, cfg.token, timeout=args.timeout).logout()
    path = config_path()
    path.unlink(missing_ok=True)
    _emit(args, {"config": str(path), "removed": True}, f"Logged out; removed {path}")
    return EXIT_OK


def cmd_projects(args) -> int:
    client = _client(args)
    if args.action == "create":
        if not args.name or not args.slug:
            raise UsageError("projects create NAME SLUG")
        p = client.create_project(args.name, args.slug, description=args.description or "",
                                  required_annotations=args.required)
        _emit(args, p.raw, f"Created project {p.slug} (id {p.id})")
        return EXIT_OK
    projects = client.projects()
    _emit(args, [p.raw for p in projects],
          _table([p.raw for p in projects], ["slug", "name", "required_annotations", "guideline_version"]))
    return EXIT_OK


def cmd_push(args) -> int:
    client = _client(args)
    project = _project(args)
    if args.what == "dataset":
        if not Path(args.file).exists():
            raise UsageError(f"no such file or directory: {args.file}")
        rows = []
    else:
        rows = _rows(args.file)
    if not rows and args.what != "dataset":
        raise UsageError(f"{args.file} holds no rows")
    if args.what == "dataset":
        report = client.import_dataset(project, args.file, format=args.format, split=args.split)
        _emit(args, report.as_dict(), f"{project}: {_report_line(report)}")
        return EXIT_OK
    if args.what in ("prompts", "records"):
        fmt = "prompts" if args.what == "prompts" else args.format
        report = client.push_records(project, rows, format=fmt, filename=Path(args.file).name or "stdin.jsonl")
        _emit(args, report.as_dict(), f"{project}: {_report_line(report)}")
    elif args.what == "responses":
        out = client.push_responses(project, rows)
        _emit(args, [r.raw for r in out], f"{project}: {len(out)} responses (ids {_span([r.id for r in out])})")
    else:
        out = client.push_tasks(project, rows)
        _emit(args, [t.raw for t in out], f"{project}: {len(out)} tasks (ids {_span([t.id for t in out])})")
    return EXIT_OK


def _report_line(report) -> str:
    """The non-zero counts of an import (totals over all its batches), e.g. "prompts created 3, prompts existing 1"."""
    counts = {k: v for k, v in report.as_dict().items()
              if isinstance(v, int) and not isinstance(v, bool) and v and k != "lines"}
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()) or "nothing new"


def _span(ids: list[int]) -> str:
    return "-" if not ids else f"{min(ids)}..{max(ids)}" if len(ids) > 1 else str(ids[0])


def cmd_list(args) -> int:
    client = _client(args)
    what = args.command
    if what == "models":
        items = [m.raw for m in client.models(archived=args.archived)]
        columns = ["id", "name", "backend", "roles", "base_model", "parent_run_id"]
    elif what == "snapshots":
        items = [s.raw for s in client.snapshots(args.project_pos)]
        columns = ["id", "format", "file_format", "row_count", "sha256", "created_at"]
    elif what == "tasks":
        items = [t.raw for t in client.tasks(args.project_pos, kind=args.kind, status=args.status)]
        columns = ["id", "kind", "prompt", "responses", "status", "submitted_count", "required", "priority"]
    elif what == "prompts":
        items = [p.raw for p in client.prompts(args.project_pos)]
        columns = ["id", "external_id", "messages", "tags"]
    elif what == "members":
        items = [m.raw for m in client.members(args.project_pos)]
        columns = ["user_id", "username", "role"]
    else:  # annotations
        items = [a.raw for a in client.annotations(args.project_pos, current=not args.all)]
        if args.output:
            Path(args.output).write_bytes(_data.jsonl_bytes(items))
            _emit(args, {"path": args.output, "count": len(items)}, f"{len(items)} annotations -> {args.output}")
            return EXIT_OK
        columns = ["id", "task", "kind", "author", "source", "payload", "created_at"]
    _emit(args, items, _table(items, columns))
    return EXIT_OK


def cmd_export(args) -> int:
    client = _client(args)
    to_stdout = args.output == "-"
    if to_stdout and args.json:
        raise UsageError("-o - writes the data on stdout: leave out --json")
    if args.snapshot:
        snap = client.snapshot(args.project_pos, args.snapshot)
    else:
        if not args.format:
            raise UsageError("export needs --format (preference, unpaired, stepwise, sft, raw) or --snapshot")
        sources = [s for s in (args.sources or "human,ai").split(",") if s]
        snap = client.create_snapshot(args.project_pos, args.format, file_format=args.file_format, style=args.style,
                                      sources=sources, aggregation=args.aggregation)
    summary = f"snapshot {snap.id}  {snap.format}  {snap.row_count} rows  sha256 {snap.sha256}"
    path = card = None
    if to_stdout:
        client.stream_snapshot(args.project_pos, snap, sys.stdout.buffer)
        print(summary, file=sys.stderr)
    elif args.output != "":
        path, card = client.save_snapshot(args.project_pos, snap, args.output, card=args.card)
    if args.card and card is None:
        card = Path(args.card)
        card.write_text(client.snapshot_card(args.project_pos, snap), encoding="utf-8")
    if to_stdout:
        return EXIT_OK
    _emit(args, {"snapshot": snap.raw, "path": str(path) if path else None, "card": str(card) if card else None},
          summary + (f"\nwritten to {path}" if path else "") + (f"\ncard {card}" if card else ""))
    return EXIT_OK


def cmd_train(args) -> int:
    client = _client(args)
    hyper = {**_json_arg(args.hyperparameters, "--hyperparameters"), **_settings(args.set)}
    job = client.train(args.project_pos, method=args.method, base_model=args.base_model, snapshot=args.snapshot,
                       hyperparameters=hyper, reward_model=args.reward_model)
    if args.wait:
        return _wait(args, job)
    _emit(args, job.as_dict(), f"{job.ref} queued ({args.method} of {args.base_model}); follow it with "
                               f"`quorum jobs watch {job.ref} --project {job.project}`")
    return EXIT_OK


def cmd_generate(args) -> int:
    client = _client(args)
    prompt_filter: dict = {}
    if args.limit:
        prompt_filter["limit"] = args.limit
    if args.tag:
        prompt_filter["tags"] = args.tag
    if args.new_only:
        prompt_filter["without_model_responses"] = True
    job = client.generate(args.project_pos, args.model, n=args.n, task_kind=args.task_kind,
                          sampling=_json_arg(args.sampling, "--sampling"), prompt_filter=prompt_filter)
    if args.wait:
        return _wait(args, job)
    _emit(args, job.as_dict(), f"{job.ref} queued; follow it with `quorum jobs watch {job.ref} --project "
                               f"{job.project}`")
    return EXIT_OK


def cmd_feedback(args) -> int:
    client = _client(args)
    scope = _json_arg(args.scope, "--scope")
    if args.limit:
        scope["limit"] = args.limit
    job = client.feedback(args.project_pos, args.kind, args.model, scope=scope, rounds=args.rounds,
                          principles=args.principle or [], counts_toward_overlap=args.counts_toward_overlap)
    if args.wait:
        return _wait(args, job)
    _emit(args, job.as_dict(), f"{job.ref} queued; follow it with `quorum jobs watch {job.ref} --project "
                               f"{job.project}`")
    return EXIT_OK


def cmd_round(args) -> int:
    client = _client(args)
    job = client.start_round(args.project_pos, policy=args.policy, judge=args.judge, reward_model=args.reward_model,
                             label_mode=args.label_mode, rounds=args.rounds, human_quota=args.human_quota,
                             config=_json_arg(args.config, "--config"))
    if args.wait:
        return _wait(args, job)
    _emit(args, job.as_dict(), f"{job.ref} queued; follow it with `quorum jobs watch {job.ref} --project "
                               f"{job.project}`")
    return EXIT_OK


def cmd_jobs(args) -> int:
    client = _client(args)
    if args.action == "list":
        project = args.id or _project(args)
        jobs = (client.generation_jobs(project) + client.training_runs(project) + client.feedback_jobs(project)
                + client.rounds(project))
        jobs.sort(key=lambda j: (j.info.created_at if j.info else ""), reverse=True)
        rows = [{"ref": j.ref, "status": j.status, "progress": "%s/%s" % (j.progress()[0], j.progress()[1] or "?"),
                 "what": (getattr(j.info, "method", None) or getattr(j.info, "model", None)
                          or getattr(j.info, "stage", "")) + (f" {j.info.kind}" if j.kind == "feedback" else ""),
                 "created_at": j.info.created_at if j.info else ""} for j in jobs]
        _emit(args, [j.as_dict() for j in jobs], _table(rows, ["ref", "status", "progress", "what", "created_at"]))
        return EXIT_OK
    if not args.id:
        raise UsageError(f"jobs {args.action} ID (gen-ID or run-ID)")
    kind, job_id = _job_ref(args.id, args.kind)
    job = client.job(_project(args), kind, job_id)
    if args.action == "cancel":
        job.cancel()
        _emit(args, job.as_dict(), _job_line(job))
        return EXIT_OK
    if args.action == "show":
        _emit(args, job.as_dict(), _job_line(job) + (f"\nerror: {job.info.error}" if job.info.error else ""))
        return EXIT_OK
    return _wait(args, job)


# --- the parser -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON on stdout")
    common.add_argument("--url", default=argparse.SUPPRESS, help="server URL (default: from `quorum login`)")
    common.add_argument("--token", default=argparse.SUPPRESS, help="API token (default: from `quorum login`)")

    parser = argparse.ArgumentParser(prog="quorum", description=__doc__.split("\n\n")[0], parents=[common],
                                     epilog="Exit codes: 0 ok, 1 refused by the server, 2 usage, 3 no connection, "
                                            "4 a waited-for job failed.")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    parser.add_argument("--version", action="version", version=f"quorum {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help: str, project: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, parents=[common], description=help)
        p.set_defaults(func=func)
        if project:
            p.add_argument("project_pos", metavar="PROJECT", help="project slug")
        return p

    p = add("login", cmd_login, "store the server URL and a token in the config file")
    p.add_argument("--username", "-u")
    p.add_argument("--password", help="the password (prefer --password-stdin or the prompt)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--project", "-p", help="default project for later commands")

    p = add("logout", cmd_logout, "revoke the token and remove the config file")
    p.add_argument("--keep-token", action="store_true", help="only remove the file")

    p = add("projects", cmd_projects, "list projects, or create one (staff)")
    p.add_argument("action", nargs="?", choices=["list", "create"], default="list")
    p.add_argument("name", nargs="?")
    p.add_argument("slug", nargs="?")
    p.add_argument("--description")
    p.add_argument("--required", type=int, help="annotations required per task")

    p = add("push", cmd_push, "push rows from a JSONL, JSON, CSV or Parquet file ('-' for JSONL on stdin)")
    p.add_argument("what", choices=["prompts", "records", "responses", "tasks", "dataset"],
                   help="dataset: a .parquet/.arrow file or a save_to_disk directory, uploaded as it is")
    p.add_argument("file")
    p.add_argument("--project", "-p")
    p.add_argument("--format", choices=["preference", "unpaired", "stepwise", "sft", "prompts"],
                   help="records, dataset: the format (default: told from the keys)")
    p.add_argument("--split", help="dataset: the split of a DatasetDict")

    for name, help in (("models", "list the model registry"),):
        p = add(name, cmd_list, help)
        p.add_argument("--archived", action="store_true")
    for name, help in (("snapshots", "list a project's dataset snapshots"), ("prompts", "list a project's prompts"),
                       ("members", "list a project's members (admins)")):
        add(name, cmd_list, help, project=True)
    p = add("tasks", cmd_list, "list a project's tasks", project=True)
    p.add_argument("--kind")
    p.add_argument("--status")
    p = add("annotations", cmd_list, "list annotations (or write them as JSONL with -o)", project=True)
    p.add_argument("--all", action="store_true", help="include superseded edits")
    p.add_argument("-o", "--output")

    p = add("export", cmd_export, "write a dataset snapshot and download it", project=True)
    p.add_argument("--format", choices=["preference", "unpaired", "stepwise", "sft", "raw"])
    p.add_argument("--file-format", choices=["jsonl", "parquet"], default="jsonl")
    p.add_argument("--style", choices=["conversational", "standard"], default="conversational")
    p.add_argument("--sources", help="comma-separated: human,ai (default both)")
    p.add_argument("--aggregation", choices=["majority", "dawid_skene"], default="majority")
    p.add_argument("--snapshot", help="download this existing snapshot instead of writing one: " + SNAPSHOT_REF)
    p.add_argument("-o", "--output", default=None,
                   help="a directory (existing, or ending in /: gets data.<ext> and README.md, which "
                        "datasets.load_dataset(DIR) loads) or a file (README.md goes beside it); default: a name in "
                        "the current directory; '-' writes the data on stdout; '' writes nothing")
    p.add_argument("--card", metavar="PATH", help="write the dataset card there instead of beside the data")

    p = add("train", cmd_train, "launch a training run on a snapshot", project=True)
    p.add_argument("--method", required=True, choices=["sft", "reward", "dpo", "kto", "orpo", "ppo", "prm"])
    p.add_argument("--snapshot", required=True, help=SNAPSHOT_REF)
    p.add_argument("--base-model", required=True, help="registered model name")
    p.add_argument("--reward-model")
    p.add_argument("--hyperparameters", help="JSON object, or @file.json")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="one hyperparameter (repeatable)")
    _wait_args(p)

    p = add("generate", cmd_generate, "launch a generation job (candidates for new tasks)", project=True)
    p.add_argument("--model", required=True)
    p.add_argument("--n", type=int, default=2, help="samples per prompt")
    p.add_argument("--task-kind", default="pairwise", choices=["pairwise", "ranking", "rating", "none"])
    p.add_argument("--limit", type=int, help="at most this many prompts")
    p.add_argument("--tag", action="append", help="only prompts with this tag (repeatable)")
    p.add_argument("--new-only", action="store_true", help="only prompts without responses from this model")
    p.add_argument("--sampling", help="JSON object of sampling overrides")
    _wait_args(p)

    p = add("feedback", cmd_feedback, "launch AI feedback under the constitution (judge labels, or critique "
                                      "and revision)", project=True)
    p.add_argument("--kind", required=True, choices=["judge", "critique_revision"])
    p.add_argument("--model", required=True)
    p.add_argument("--scope", help="JSON object: a task filter (judge) or a prompt filter (critique_revision)")
    p.add_argument("--limit", type=int, help="at most this many items")
    p.add_argument("--rounds", type=int, default=1, help="critique-revision rounds per prompt")
    p.add_argument("--principle", action="append", help="sample from these principle keys (repeatable)")
    p.add_argument("--counts-toward-overlap", action="store_true", help="judge labels take a slot of each task")
    _wait_args(p)

    p = add("round", cmd_round, "start the loop: rounds of generate, label, train and evaluate", project=True)
    p.add_argument("--policy", help="the first round's policy (default: the last round's output model)")
    p.add_argument("--judge", help="AI judge model (label modes ai and both)")
    p.add_argument("--reward-model")
    p.add_argument("--label-mode", default="ai", help="ai, human or both (default ai)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--human-quota", type=int)
    p.add_argument("--config", help="JSON object of round settings, or @file.json")
    _wait_args(p)

    p = add("jobs", cmd_jobs, "list, show, watch or cancel generation jobs (gen-ID), training runs (run-ID), "
                              "feedback jobs (fb-ID) and rounds (round-NUMBER)")
    p.add_argument("action", choices=["list", "show", "watch", "cancel"])
    p.add_argument("id", nargs="?", help="gen-ID, run-ID, fb-ID or round-NUMBER (list: the project)")
    p.add_argument("--project", "-p")
    p.add_argument("--kind", choices=["generation", "training", "feedback", "round"],
                   help="for a bare numeric ID (default training)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between looks (default 2)")
    p.add_argument("--wait-timeout", "--timeout-after", type=float, default=None, dest="wait_timeout",
                   help="give up waiting after this many seconds (exit 4)")
    return parser


def _wait_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true", help="follow the job to its end (exit 4 unless it succeeds)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--poll", type=float, default=2.0)
    p.add_argument("--wait-timeout", type=float, default=None)


def _version() -> str:
    """The installed version: the client's own package, else the server's that ships it, else the source's."""
    from importlib.metadata import PackageNotFoundError, version

    for distribution in ("quorum-client", "quorum"):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    from . import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on bad usage
    for name, default in (("json", False), ("url", None), ("token", None)):
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return code
    except BrokenPipeError:
        # Python's note on SIGPIPE: point stdout at /dev/null, so that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_CLOSED_PIPE
    except UsageError as exc:
        print(f"quorum: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except ConnectionFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONNECTION
    except QuorumError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except ValueError as exc:
        print(f"quorum: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
