"""Generation jobs, training runs, AI feedback jobs and rounds as one `Job` handle: refresh, wait with a
progress bar, cancel."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .types import TERMINAL_STATUSES, FeedbackJob, GenerationJob, Round, TrainingRun, from_dict

if TYPE_CHECKING:
    from .client import Client

KINDS = {"generation": "generation-jobs", "training": "training-runs", "feedback": "feedback-jobs", "round": "rounds"}
PREFIXES = {"generation": "gen", "training": "run", "feedback": "fb", "round": "round"}
INFO = {"generation": GenerationJob, "training": TrainingRun, "feedback": FeedbackJob, "round": Round}
ROUND_STAGES = ("generate", "select", "label", "export", "train", "evaluate", "done")


class JobTimeout(TimeoutError):
    """`Job.wait(timeout=...)` ran out before the job finished (the job goes on)."""


class Job:
    """A background job on the server. `kind` is "generation", "training", "feedback" or "round" (a round's id
    is its number); `info` is the latest state (`GenerationJob`, `TrainingRun`, `FeedbackJob` or `Round`),
    `status` its status (queued, running, succeeded, failed, cancelled; a round may also be waiting)."""

    def __init__(self, client: Client, project: Any, kind: str, job_id: int, data: dict):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        self.client, self.kind, self.id = client, kind, int(job_id)
        self.project = getattr(project, "slug", project)
        self.info: GenerationJob | TrainingRun | FeedbackJob | Round | None = None
        if data:
            self._set(data)

    def __repr__(self) -> str:
        return f"Job({self.kind} {self.id} in {self.project}: {self.status})"

    @property
    def ref(self) -> str:
        """A short reference the command line accepts: gen-<id>, run-<id>, fb-<id> or round-<number>."""
        return f"{PREFIXES[self.kind]}-{self.id}"

    @property
    def path(self) -> str:
        return f"projects/{self.project}/{KINDS[self.kind]}/{self.id}/"

    @property
    def status(self) -> str:
        return self.info.status if self.info else "unknown"

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def _set(self, data: dict) -> None:
        self.info = from_dict(INFO[self.kind], data)

    def refresh(self) -> Job:
        self._set(self.client._get(self.path))
        return self

    def cancel(self) -> Job:
        """Ask the server to stop the job (a training run saves a checkpoint first)."""
        self._set(self.client._post(self.path + "cancel/", retry=True))
        return self

    def relaunch(self) -> Job:
        """Queue a failed or cancelled training run again; it resumes from its last checkpoint."""
        if self.kind != "training":
            raise ValueError("only training runs can be relaunched")
        self._set(self.client._post(self.path + "relaunch/"))
        return self

    def progress(self) -> tuple[int, int | None]:
        """(done, total): generated samples or judged items of all, trainer steps of max_steps (None when
        unknown), or a round's stages."""
        info = self.info
        if isinstance(info, Round):
            stage = ROUND_STAGES.index(info.stage) if info.stage in ROUND_STAGES else 0
            return stage, len(ROUND_STAGES) - 1
        if isinstance(info, (GenerationJob, FeedbackJob)):
            return info.done, info.total or None
        if isinstance(info, TrainingRun):
            total = info.hyperparameters.get("max_steps") if info.hyperparameters else None
            return max(info.step or 0, 0), total if isinstance(total, int) and total > 0 else None
        return 0, None

    def wait(self, *, timeout: float | None = None, poll_interval: float = 1.0, progress: bool | None = None) -> str:
        """Poll until the job finishes and return its final status (succeeded, failed or cancelled).

        A tqdm progress bar shows on stderr when `progress` is true, or by default when stderr is a terminal
        (tqdm must be installed). Raises `JobTimeout` after `timeout` seconds; the job goes on regardless.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = self._bar(progress)
        try:
            while True:
                self.refresh()
                if bar is not None:
                    done, total = self.progress()
                    if total and bar.total != total:
                        bar.total = total
                    bar.n = min(done, total) if total else done
                    bar.set_postfix_str(self.status, refresh=False)
                    bar.refresh()
                if self.done:
                    return self.status
                if deadline is not None and time.monotonic() >= deadline:
                    raise JobTimeout(f"{self.kind} job {self.id} is still {self.status} after {timeout} s")
                time.sleep(poll_interval)
        finally:
            if bar is not None:
                bar.close()

    def _bar(self, progress: bool | None):
        if progress is False:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            if progress:
                raise
            return None
        unit = {"generation": "sample", "training": "step", "feedback": "item", "round": "stage"}[self.kind]
        return tqdm(total=None, unit=unit, desc=f"{self.kind} {self.id}", disable=None if progress is None else False,
                    leave=True)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "ref": self.ref, "project": self.project, **(self.info.raw if self.info else {})}
