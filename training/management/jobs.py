"""What the commands that launch jobs (generate, feedback, train, loop) share: finding the project and models they
name, the --wait / --timeout options, and following a job to its end."""

import time
from collections.abc import Callable

from django.core.management.base import CommandError

from annotation.models import Project
from common.errors import DomainError
from training.models import ACTIVE_STATUSES, Model


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
