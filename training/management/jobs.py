"""What the commands that launch jobs (generate, feedback, train, loop) share: the options that say what to launch
on, finding the project and models they name, --wait / --timeout, and following a job to its end."""

import json
import time
from collections.abc import Callable

from django.core.management.base import CommandError

from annotation.models import Project
from common.errors import DomainError
from training.models import ACTIVE_STATUSES, Model


def add_launch_options(parser, *, items: str, ids_help: str, sampling_help: str) -> None:
    """The options a job launch takes: the project, which items (at most --limit, or --ids), sampling overrides."""
    parser.add_argument("--project", required=True, help="project slug")
    parser.add_argument("--limit", type=int, default=None, help=f"at most this many {items}")
    parser.add_argument("--ids", default="", help=ids_help)
    parser.add_argument("--sampling", default="{}", help=sampling_help)


def scope_of(options: dict) -> dict:
    """--limit and --ids as a job's scope (its prompt filter)."""
    ids = [int(i) for i in options["ids"].split(",") if i.strip()]
    return {**({"limit": options["limit"]} if options["limit"] else {}), **({"ids": ids} if ids else {})}


def sampling_of(options: dict) -> dict:
    try:
        return json.loads(options["sampling"])
    except ValueError as exc:
        raise CommandError(f"--sampling is not JSON: {exc}") from exc


def project_named(slug: str) -> Project:
    project = Project.objects.filter(slug=slug).first()
    if project is None:
        raise CommandError(f"no project {slug!r}")
    return project


def model_named(name: str, hint: str = "") -> Model:
    model = Model.objects.filter(name=name).first()
    if model is None:
        raise CommandError(f"no model {name!r}" + (f" ({hint})" if hint else ""))
    return model


def field_errors(exc: DomainError) -> str:
    """A refused launch's errors per field, a line each."""
    return "".join(f"\n  {field}: {'; '.join(messages)}" for field, messages in exc.fields.items())


def add_follow_options(parser, *, wait_help: str, timeout: float, timeout_help: str) -> None:
    parser.add_argument("--wait", action="store_true", help=wait_help)
    parser.add_argument("--timeout", type=float, default=timeout, help=timeout_help)


def follow(out, job_class, job_id: int, timeout: float, *, progress: Callable[[object], str],
           enough: Callable[[object], bool] = lambda job: False) -> None:
    """Print a job's `progress` line (with the seconds since the start) each time it changes, until the job ends (then
    its error, if any) or is `enough`; fail after `timeout` seconds."""
    t0, last = time.monotonic(), None
    while True:
        job = job_class.objects.get(pk=job_id)
        line = progress(job)
        if line != last:
            out.write(f"  [{time.monotonic() - t0:5.0f} s] {line}")
            out.flush()
            last = line
        if job.status not in ACTIVE_STATUSES:
            if job.error:
                out.write(f"  {job.error}")
            return
        if enough(job):
            return
        if time.monotonic() - t0 > timeout:
            raise CommandError(f"job {job_id} still {job.status} after {timeout:.0f} s")
        time.sleep(1)
