"""The Quorum client: one object per server and token, one method per thing an engineer does.

    from quorum_client import Client

    client = Client("http://127.0.0.1:8000", token="...")      # or Client.login(url, username, password)
    client.push_prompts("my-project", ["What is 2+2?", "Name a prime."])
    df = client.annotations_df("my-project")
    snap = client.create_snapshot("my-project", format="preference")
    ds = client.snapshot_dataset("my-project", snap)             # a datasets.Dataset, sha256 checked
    run = client.train("my-project", method="dpo", base_model="smollm2", snapshot=snap.sha256)
    run.wait()                                                   # "succeeded", with a progress bar

Requests that are safe to repeat (reads, idempotent imports, submissions with a client id, bulk writes with
keys) are retried with exponential backoff on 5xx answers, timeouts and dropped connections; others are
retried only when the connection failed before anything was sent.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from . import data as _data
from .config import load_config
from .errors import (
    AmbiguousSnapshot,
    ApiError,
    ChecksumMismatch,
    ConnectionFailed,
    NotFound,
    QuorumError,
    ServerError,
    error_from_response,
)
from .jobs import Job
from .refs import snapshot_ref
from .types import (
    Annotation,
    ImportReport,
    LeasedTask,
    Membership,
    Model,
    Project,
    Prompt,
    Response,
    Snapshot,
    Task,
    from_dict,
)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({500, 502, 503, 504})
PAGE_SIZE = 500
IMPORT_CHUNK = 5000
BULK_CHUNK = 500


class Client:
    """A connection to one Quorum server with one API token.

    `url` and `token` default to `QUORUM_URL` / `QUORUM_TOKEN`, then to the file `quorum login` writes.
    `retries` is how many times a retryable request is repeated (with backoff starting at `backoff` seconds,
    doubling, with jitter); `timeout` is per request, in seconds.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 60.0,
                 retries: int = 3, backoff: float = 0.5, verify: bool = True):
        if url is None or token is None:
            cfg = load_config()
            # The stored token goes only to the server it was issued by.
            same_server = url is None or url.rstrip("/") == cfg.url.rstrip("/")
            url = url or cfg.url
            token = token if token is not None else (cfg.token if same_server else "")
        if not url:
            raise QuorumError("no server URL: pass url=, set QUORUM_URL or run `quorum login`")
        self.url = url.rstrip("/")
        self.token = token or ""
        self.retries, self.backoff = max(0, retries), backoff
        headers = {"Accept": "application/json", "User-Agent": "quorum-client/0.1"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        self._http = httpx.Client(base_url=self.url + "/api/v1/", headers=headers, timeout=timeout, verify=verify)

    # --- plumbing -----------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def request(self, method: str, path: str, *, params: dict | None = None, json: Any = None,
                files: dict | None = None, data: dict | None = None, retry: bool | None = None) -> httpx.Response:
        """Send one request under /api/v1/ and return the response, or raise.

        `retry` says whether the request may be repeated after a 5xx, a timeout or a dropped connection;
        by default only for GET/HEAD/OPTIONS/PUT/DELETE. Raises an `ApiError` subclass for 4xx/5xx (with the
        server's message and field errors) and `ConnectionFailed` when the server cannot be reached.
        """
        method = method.upper()
        retry = method in SAFE_METHODS if retry is None else retry
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path.lstrip("/"), params=params, json=json, files=files,
                                              data=data)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing reached the server: repeating is safe for any request.
                if attempt < self.retries:
                    attempt = self._sleep(attempt)
                    continue
                raise ConnectionFailed(f"cannot reach {self.url}: {exc or type(exc).__name__}") from exc
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if retry and attempt < self.retries:
                    attempt = self._sleep(attempt)
                    continue
                raise ConnectionFailed(f"no answer from {self.url}: {exc or type(exc).__name__}") from exc
            if response.status_code in RETRY_STATUSES and retry and attempt < self.retries:
                attempt = self._sleep(attempt)
                continue
            if response.status_code >= 400:
                raise self._error(response)
            return response

    def _sleep(self, attempt: int) -> int:
        time.sleep(self.backoff * (2 ** attempt) * (0.5 + random.random() / 2))
        return attempt + 1

    @staticmethod
    def _error(response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        return error_from_response(response.status_code, body, method=response.request.method,
                                   url=str(response.request.url), text=response.text if body is None else "")

    def _get(self, path: str, **params) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    def _launch(self, path: str, body: dict) -> Any:
        """Start a job, a run or a round. The request carries a client id made up here, so it is safe to retry: a
        retry the server already acted on returns the first launch instead of starting a second one."""
        return self._post(path, {**body, "client_id": str(uuid.uuid4())}, retry=True)

    def _post(self, path: str, body: Any = None, *, retry: bool | None = None) -> Any:
        response = self.request("POST", path, json=body if body is not None else {}, retry=retry)
        return response.json() if response.content else None

    def _pages(self, path: str, **params) -> Iterator[dict]:
        """Every item of a paginated list, page after page."""
        offset = 0
        params = {k: v for k, v in params.items() if v is not None}
        while True:
            page = self._get(path, **params, limit=PAGE_SIZE, offset=offset)
            if isinstance(page, list):  # an unpaginated list
                yield from page
                return
            results = page.get("results", [])
            yield from results
            offset += len(results)
            if not page.get("next") or not results:
                return

    @staticmethod
    def _p(project: str | Project) -> str:
        return f"projects/{project.slug if isinstance(project, Project) else project}/"

    # --- auth ---------------------------------------------------------------------------------
    @classmethod
    def login(cls, url: str, username: str, password: str, **kwargs) -> Client:
        """Exchange a username and password for a token and return a client that uses it (`client.token`)."""
        anonymous = cls(url, token="", **kwargs)
        try:
            token = anonymous._post("auth/token/", {"username": username, "password": password})["token"]
        finally:
            anonymous.close()
        return cls(url, token=token, **kwargs)

    def logout(self) -> None:
        """Revoke this client's token on the server."""
        self.request("DELETE", "auth/token/")

    # --- projects and members -----------------------------------------------------------------
    def projects(self) -> list[Project]:
        """The projects the caller is a member of."""
        return [from_dict(Project, p) for p in self._pages("projects/")]

    def project(self, slug: str) -> Project:
        return from_dict(Project, self._get(self._p(slug)))

    def create_project(self, name: str, slug: str, *, description: str = "", required_annotations: int | None = None,
                       lease_seconds: int | None = None, settings: dict | None = None) -> Project:
        """Create a project (staff only); the caller becomes its admin."""
        body = {"name": name, "slug": slug, "description": description, "required_annotations": required_annotations,
                "lease_seconds": lease_seconds, "settings": settings}
        return from_dict(Project, self._post("projects/", {k: v for k, v in body.items() if v is not None}))

    def update_project(self, project: str | Project, **changes) -> Project:
        """Change name, description, required_annotations, lease_seconds or settings (project admins)."""
        return from_dict(Project, self.request("PATCH", self._p(project), json=changes, retry=True).json())

    def members(self, project: str | Project) -> list[Membership]:
        return [from_dict(Membership, m) for m in self._pages(self._p(project) + "members/")]

    def add_member(self, project: str | Project, username: str, role: str) -> Membership:
        """Give `username` a role in the project: admin, engineer, reviewer or annotator (project admins)."""
        body = {"username": username, "role": role}
        return from_dict(Membership, self._post(self._p(project) + "members/", body, retry=True))

    def create_guideline(self, project: str | Project, body: str, *, note: str = "") -> dict:
        """Publish a new guideline version (markdown; project admins). Returns {number, body, note, ...}."""
        return self._post(self._p(project) + "guidelines/", {"body": body, "note": note})

    def create_constitution(self, project: str | Project, principles: list[dict], *, note: str = "") -> dict:
        """Publish a new constitution version (project admins): principles are dicts with key, name,
        critique_request, revision_request and comparison_question, in order."""
        return self._post(self._p(project) + "constitutions/", {"principles": principles, "note": note})

    # --- prompts, responses, tasks ------------------------------------------------------------
    def push_prompts(self, project: str | Project, data: Any, *, chunk_size: int = IMPORT_CHUNK) -> ImportReport:
        """Import prompts from a list of strings or dicts, a DataFrame or a Dataset.

        Each row has `prompt` (text or a message list) or `messages`, and optionally `external_id` (or `id`),
        `metadata` and `tags`. Idempotent: a prompt already in the project (same conversation) is counted in
        `prompts_existing`, not duplicated. Sent as JSON Lines through the import endpoint, `chunk_size` rows
        per request, each chunk all-or-nothing.
        """
        return self.push_records(project, data, format="prompts", chunk_size=chunk_size)

    def push_records(self, project: str | Project, data: Any, *, format: str | None = None,
                     chunk_size: int = IMPORT_CHUNK, filename: str = "records.jsonl") -> ImportReport:
        """Import labelled rows in a training format (preference, unpaired, stepwise, sft) or prompts.

        The rows become prompts, responses, tasks and annotations, as `manage.py import_data` does; the format
        is told from the keys when not given. Idempotent (see `push_prompts`).
        """
        total: ImportReport | None = None
        for chunk in _data.chunks(_data.iter_records(data), chunk_size):
            files = {"file": (filename, _data.jsonl_bytes(chunk), "application/jsonl")}
            body = self.request("POST", self._p(project) + "imports/", files=files,
                                data={"format": format} if format else None, retry=True).json()
            report = from_dict(ImportReport, body)
            total = report if total is None else total + report
        if total is None:
            raise ValueError("nothing to push")
        return total

    def import_file(self, project: str | Project, path: str | Path, *, format: str | None = None) -> ImportReport:
        """Upload a JSON Lines file as it is (idempotent, all-or-nothing)."""
        path = Path(path)
        with path.open("rb") as f:
            content = f.read()
        files = {"file": (path.name, content, "application/jsonl")}
        body = self.request("POST", self._p(project) + "imports/", files=files,
                            data={"format": format} if format else None, retry=True).json()
        return from_dict(ImportReport, body)

    def import_dataset(self, project: str | Project, path: str | Path, *, format: str | None = None,
                       split: str | None = None) -> ImportReport:
        """Upload a Hugging Face dataset as it is on disk: a .parquet or .arrow file, or a `save_to_disk`
        directory (zipped here on the fly); `split` picks one split of a DatasetDict. Rows are read as
        `push_records` reads them (formats and idempotence alike)."""
        import io
        import zipfile

        path = Path(path)
        if path.is_dir():
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for item in sorted(path.rglob("*")):
                    if item.is_file():
                        archive.write(item, Path(path.name) / item.relative_to(path))
            name, content = path.name + ".zip", buffer.getvalue()
        else:
            name, content = path.name, path.read_bytes()
        fields = {k: v for k, v in (("format", format), ("split", split)) if v}
        body = self.request("POST", self._p(project) + "imports/datasets/", files={"file": (name, content)},
                            data=fields or None, retry=True).json()
        return from_dict(ImportReport, body)

    def prompts(self, project: str | Project) -> list[Prompt]:
        return [from_dict(Prompt, p) for p in self._pages(self._p(project) + "prompts/")]

    def push_responses(self, project: str | Project, data: Any, *, chunk_size: int = BULK_CHUNK) -> list[Response]:
        """Add responses from rows with `prompt` (a prompt id) or `prompt_external_id`, and `content`; optional
        `origin` (imported, generated, demonstration), `model_name`, `steps`, `metadata` and `key`.

        A row with a `key` is written once: pushing it again returns the same response. Rows without keys get
        one from their prompt and content, so a retried push never duplicates. Each chunk is all-or-nothing.
        """
        rows = (_keyed(r, ("prompt", "prompt_external_id", "content")) for r in _data.iter_records(data))
        out: list[Response] = []
        for chunk in _data.chunks(rows, chunk_size):
            body = self._post(self._p(project) + "responses/bulk/", {"items": chunk}, retry=True)
            out.extend(from_dict(Response, r) for r in body["items"])
        return out

    def responses(self, project: str | Project, *, prompt: int | None = None) -> list[Response]:
        return [from_dict(Response, r) for r in self._pages(self._p(project) + "responses/", prompt=prompt)]

    def push_tasks(self, project: str | Project, data: Any, *, chunk_size: int = BULK_CHUNK) -> list[Task]:
        """Create tasks from existing responses: rows with `kind` (pairwise, ranking, rating, steps,
        demonstration), `prompt` (id) or `prompt_external_id`, `responses` (response ids in order), and optional
        `priority`, `required`, `gold`, `flags`, `metadata`, `key` (same idempotence as `push_responses`)."""
        rows = (_keyed(r, ("kind", "prompt", "prompt_external_id", "responses")) for r in _data.iter_records(data))
        out: list[Task] = []
        for chunk in _data.chunks(rows, chunk_size):
            body = self._post(self._p(project) + "tasks/bulk/", {"items": chunk}, retry=True)
            out.extend(from_dict(Task, t) for t in body["items"])
        return out

    def tasks(self, project: str | Project, *, kind: str | None = None, status: str | None = None,
              **filters: Any) -> list[Task]:
        """The project's tasks; `filters` as the task browser takes them (text, model, tag, agreement_min,
        agreement_max, ai_disagrees, gold, order)."""
        filters = {k: str(v).lower() if isinstance(v, bool) else v for k, v in filters.items()}
        return [from_dict(Task, t) for t in self._pages(self._p(project) + "tasks/", kind=kind, status=status,
                                                        **filters)]

    def task_action(self, project: str | Project, action: str, *, tasks: list[int] | None = None,
                    filter: dict | None = None, **options: Any) -> dict:
        """A bulk action (requeue, set_priority, mark_gold, unmark_gold, export) on task ids or on every task
        matching `filter`; returns its audit record (with the snapshot of an export)."""
        body = {"action": action, **options, **({"tasks": tasks} if tasks is not None else {"filter": filter or {}})}
        return self._post(self._p(project) + "tasks/actions/", body)

    def task(self, project: str | Project, task_id: int) -> Task:
        return from_dict(Task, self._get(self._p(project) + f"tasks/{task_id}/"))

    # --- labelling (what the web UI does, for scripts and bots) ---------------------------------
    def next_task(self, project: str | Project) -> LeasedTask | None:
        """Lease the next task for the caller (or the one already held); None when nothing is left."""
        response = self.request("POST", self._p(project) + "next-task/", retry=True)
        return None if response.status_code == 204 or not response.content else from_dict(LeasedTask, response.json())

    def submit(self, assignment: int | LeasedTask, payload: dict, *, client_id: str | uuid.UUID | None = None,
               seconds_spent: float | None = None, rationale: str = "") -> dict:
        """Answer a leased task. `payload` is in the positions shown (e.g. {"choice": "A", "strength": 2}).
        The client id makes a retried submission land once."""
        assignment_id = assignment.assignment if isinstance(assignment, LeasedTask) else int(assignment)
        body = {"payload": payload, "client_id": str(client_id or uuid.uuid4()), "rationale": rationale}
        if seconds_spent is not None:
            body["seconds_spent"] = seconds_spent
        return self._post(f"assignments/{assignment_id}/submit/", body, retry=True)

    def skip(self, assignment: int | LeasedTask, reason: str = "") -> dict:
        assignment_id = assignment.assignment if isinstance(assignment, LeasedTask) else int(assignment)
        return self._post(f"assignments/{assignment_id}/skip/", {"reason": reason}, retry=True)

    # --- annotations --------------------------------------------------------------------------
    def annotations(self, project: str | Project, *, current: bool = True, task: int | None = None) -> list[Annotation]:
        """Annotations the caller may see (annotators see only their own); `current` leaves out superseded
        edits."""
        params = {"current": "1" if current else None, "task": task}
        return [from_dict(Annotation, a) for a in self._pages(self._p(project) + "annotations/", **params)]

    def annotations_df(self, project: str | Project, *, current: bool = True, task: int | None = None):
        """The annotations as a pandas DataFrame, one row per annotation, with the payload's keys spread into
        `payload.<key>` columns beside the `payload` dict."""
        import pandas as pd

        rows = []
        for a in self.annotations(project, current=current, task=task):
            row = dict(a.raw)
            for key, value in (a.payload or {}).items():
                row[f"payload.{key}"] = value
            rows.append(row)
        columns = list(Annotation.__dataclass_fields__)[:-1]
        frame = pd.DataFrame(rows)
        return frame if rows else pd.DataFrame(columns=columns)

    # --- webhooks -----------------------------------------------------------------------------
    def webhooks(self, project: str | Project) -> list[dict]:
        """The project's webhooks (admins and engineers); the secret shows only as a hint."""
        return list(self._pages(self._p(project) + "webhooks/"))

    def create_webhook(self, project: str | Project, url: str, events: list[str], *, secret: str | None = None,
                       description: str = "", active: bool = True) -> dict:
        """Register a URL for events (task.completed, snapshot.created, run.finished, generation.finished,
        feedback.finished; project admins). The answer holds the signing `secret`, shown only this once; check
        deliveries with `quorum_client.webhooks.verify`."""
        body = {"url": url, "events": events, "description": description, "active": active}
        if secret is not None:
            body["secret"] = secret
        return self._post(self._p(project) + "webhooks/", body)

    def update_webhook(self, project: str | Project, webhook_id: int, **changes) -> dict:
        """Change url, events, active or description; `rotate_secret=True` returns a new secret."""
        return self.request("PATCH", self._p(project) + f"webhooks/{webhook_id}/", json=changes, retry=True).json()

    def delete_webhook(self, project: str | Project, webhook_id: int) -> None:
        self.request("DELETE", self._p(project) + f"webhooks/{webhook_id}/")

    def ping_webhook(self, project: str | Project, webhook_id: int) -> dict:
        """Send a test delivery (project admins); returns the delivery row."""
        return self._post(self._p(project) + f"webhooks/{webhook_id}/ping/")

    def deliveries(self, project: str | Project, *, webhook: int | None = None,
                   status: str | None = None) -> list[dict]:
        """Deliveries, newest first (status: pending, retrying, succeeded, failed)."""
        return list(self._pages(self._p(project) + "webhook-deliveries/", webhook=webhook, status=status))

    # --- snapshots ----------------------------------------------------------------------------
    def create_snapshot(self, project: str | Project, format: str, *, file_format: str = "jsonl",
                        style: str = "conversational", sources: Iterable[str] = ("human", "ai"),
                        aggregation: str = "majority") -> Snapshot:
        """Write an immutable dataset snapshot: `format` is preference, unpaired, stepwise, sft or raw;
        `file_format` jsonl or parquet; `aggregation` majority or dawid_skene (preference labels)."""
        body = {"format": format, "file_format": file_format, "style": style, "sources": sorted(sources),
                "aggregation": aggregation}
        return from_dict(Snapshot, self._post(self._p(project) + "snapshots/", body))

    def snapshots(self, project: str | Project) -> list[Snapshot]:
        return [from_dict(Snapshot, s) for s in self._pages(self._p(project) + "snapshots/")]

    def snapshot(self, project: str | Project, ref: int | str | Snapshot) -> Snapshot:
        """One of the project's snapshots by id or by sha256.

        An int, `"id:N"` or a string of fewer than 8 digits is an id; 8 to 64 hex digits (digits only too) are a
        sha256 prefix. Snapshots with the same sha256 hold the same bytes, so a prefix of theirs gives the newest;
        a prefix of different sha256s raises `AmbiguousSnapshot` (its `candidates` are the newest snapshot of
        each), a shorter one `ValueError`, none `NotFound`."""
        if isinstance(ref, Snapshot):
            return ref
        kind, value = snapshot_ref(ref)
        if kind == "id":
            return from_dict(Snapshot, self._get(self._p(project) + f"snapshots/{value}/"))
        newest: dict[str, Snapshot] = {}
        for item in self._pages(self._p(project) + "snapshots/", sha256_prefix=value):
            snap = from_dict(Snapshot, item)
            # The filter is the server's; checked again here, and the newest (highest id) kept per sha256.
            if snap.sha256.startswith(value) and (snap.sha256 not in newest or snap.id > newest[snap.sha256].id):
                newest[snap.sha256] = snap
        if not newest:
            raise NotFound(404, f"no snapshot of this project has a sha256 starting with {value}", code="not_found")
        if len(newest) > 1:
            raise AmbiguousSnapshot(value, sorted(newest.values(), key=lambda s: -s.id))
        return next(iter(newest.values()))

    def download_snapshot(self, project: str | Project, snapshot: int | str | Snapshot,
                          path: str | Path | None = None) -> Path:
        """Download the snapshot's file to `path` (a file, or a directory: one that exists or a name ending in
        "/"; default: the current directory) and check its sha256 against the one the server recorded. Returns the
        file's path."""
        snap = self.snapshot(project, snapshot)
        slug = project.slug if isinstance(project, Project) else project
        name = f"{slug}-{snap.format}-{snap.sha256[:12]}.{snap.file_format}"
        target = Path(path) if path is not None else Path(name)
        if _names_a_folder(path):
            target = target / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        attempt = 0
        while True:
            try:
                with partial.open("wb") as out:
                    digest = self._download(self._p(project) + f"snapshots/{snap.id}/download/", out)
                break
            except (ConnectionFailed, ServerError):
                if attempt >= self.retries:
                    partial.unlink(missing_ok=True)
                    raise
                attempt = self._sleep(attempt)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        if digest != snap.sha256:
            partial.unlink(missing_ok=True)
            raise ChecksumMismatch(f"snapshot {snap.id}: downloaded sha256 {digest} != recorded {snap.sha256}")
        partial.replace(target)
        return target

    def stream_snapshot(self, project: str | Project, snapshot: int | str | Snapshot, out: BinaryIO) -> Snapshot:
        """Write the snapshot's file to a binary stream (e.g. `sys.stdout.buffer`) as it arrives, then check its
        sha256: `ChecksumMismatch` comes after the bytes were written, and nothing is retried. Returns the
        snapshot."""
        snap = self.snapshot(project, snapshot)
        digest = self._download(self._p(project) + f"snapshots/{snap.id}/download/", out)
        out.flush()
        if digest != snap.sha256:
            raise ChecksumMismatch(f"snapshot {snap.id}: downloaded sha256 {digest} != recorded {snap.sha256}")
        return snap

    def _download(self, path: str, out: BinaryIO) -> str:
        sha = hashlib.sha256()
        try:
            with self._http.stream("GET", path) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                for block in response.iter_bytes(1 << 20):
                    sha.update(block)
                    _write_all(out, block)
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"download from {self.url} failed: {exc or type(exc).__name__}") from exc
        return sha.hexdigest()

    def snapshot_card(self, project: str | Project, snapshot: int | str | Snapshot, *,
                      data_file: str | None = None) -> str:
        """The snapshot's dataset card (a README.md in Hugging Face's style: fields, counts, aggregation,
        guideline and constitution versions, license), as markdown. Its `configs` name the data file `data_file`
        (default: `data.<ext>`), which `datasets.load_dataset(<folder>)` then loads from beside the card."""
        snap = self.snapshot(project, snapshot)
        params = {"data_file": data_file} if data_file else None
        return self.request("GET", self._p(project) + f"snapshots/{snap.id}/card/", params=params).text

    def save_snapshot(self, project: str | Project, snapshot: int | str | Snapshot,
                      path: str | Path | None = None, *, card: str | Path | None = None) -> tuple[Path, Path]:
        """Download the snapshot (sha256 checked) and write its dataset card beside it, so that
        `datasets.load_dataset(<folder>)` loads it as it is. `path` is a directory (one that exists, or a name
        ending in "/"), which gets `data.<ext>` and `README.md`, or a file name, which gets a README.md beside it
        naming that file; default: `<project>-<format>-<sha256 prefix>.<ext>` here. A README.md there that is
        not a Quorum card is left alone: the card is then written as `<data file>.README.md`. `card` puts the
        card elsewhere. Returns the paths of the data file and of the card."""
        snap = self.snapshot(project, snapshot)
        target = Path(path) / f"data.{snap.file_format}" if _names_a_folder(path) else path
        data_path = self.download_snapshot(project, snap, target)
        card_path = Path(card) if card else _card_beside(data_path)
        card_path.parent.mkdir(parents=True, exist_ok=True)
        card_path.write_text(self.snapshot_card(project, snap, data_file=data_path.name), encoding="utf-8")
        return data_path, card_path

    def snapshot_dataset(self, project: str | Project, snapshot: int | str | Snapshot,
                         cache_dir: str | Path | None = None):
        """The snapshot as a `datasets.Dataset` (downloaded and checked first), ready for TRL's trainers."""
        import datasets

        snap = self.snapshot(project, snapshot)
        cache = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "quorum" / "snapshots"
        cache.mkdir(parents=True, exist_ok=True)
        slug = project.slug if isinstance(project, Project) else project
        path = cache / f"{slug}-{snap.format}-{snap.sha256}.{snap.file_format}"
        if not path.exists() or _sha256(path) != snap.sha256:
            self.download_snapshot(project, snap, path)
        # Built as memory-mapped Arrow files beside the download, so a large snapshot is not held in memory.
        arrow_cache = str(cache / "arrow")
        if snap.file_format == "parquet":
            return datasets.Dataset.from_parquet(str(path), cache_dir=arrow_cache)
        return datasets.Dataset.from_json(str(path), cache_dir=arrow_cache)

    # --- models and jobs ----------------------------------------------------------------------
    def models(self, *, archived: bool = False) -> list[Model]:
        """The model registry (everyone signed in may read it)."""
        return [from_dict(Model, m) for m in self._pages("models/", archived="1" if archived else None)]

    def model(self, ref: int | str) -> Model:
        """A model by id or by name, with its lineage (base models, oldest last)."""
        if isinstance(ref, str) and not ref.isdigit():
            found = [m for m in self.models(archived=True) if m.name == ref]
            if not found:
                raise QuorumError(f"no model named {ref!r}")
            ref = found[0].id
        return from_dict(Model, self._get(f"models/{int(ref)}/"))

    def register_model(self, name: str, backend: str, *, path: str = "", base_url: str = "", served_name: str = "",
                       roles: list[str] | None = None, sampling: dict | None = None, description: str = "",
                       base_model: str | None = None, options: dict | None = None) -> Model:
        """Register a model (staff only): backend transformers/vllm with a `path` on the server, or openai
        with a `base_url`."""
        body = {"name": name, "backend": backend, "path": path, "base_url": base_url, "served_name": served_name,
                "roles": roles or [], "sampling": sampling or {}, "description": description,
                "base_model": base_model, "options": options or {}}
        return from_dict(Model, self._post("models/", body))

    def generate(self, project: str | Project, model: str, *, n: int = 2, prompt_filter: dict | None = None,
                 sampling: dict | None = None, task_kind: str = "pairwise", group_size: int | None = None,
                 task_priority: int = 0) -> Job:
        """Launch a generation job: `n` samples per prompt from `model` (a registered name), grouped into tasks
        of `task_kind` (pairwise, ranking, rating, none). `prompt_filter` may hold ids, external_ids, tags,
        limit, without_model_responses. Returns a `Job`; `.wait()` follows it."""
        body = {"model": model, "n": n, "prompt_filter": prompt_filter or {}, "sampling": sampling or {},
                "task_kind": task_kind, "group_size": group_size, "task_priority": task_priority}
        info = self._launch(self._p(project) + "generation-jobs/", body)
        return Job(self, project, "generation", info["id"], info)

    def train(self, project: str | Project, *, method: str, base_model: str, snapshot: int | str | Snapshot,
              hyperparameters: dict | None = None, reward_model: str | None = None) -> Job:
        """Launch a training run (sft, reward, dpo, kto, orpo, ppo, prm) of `base_model` on a snapshot given by
        id, sha256 prefix (read as `snapshot()` reads it) or object. Hyperparameters are checked by the trainer's
        own config before anything is queued (a 400 names the bad fields)."""
        # An id goes as a JSON number, a sha256 prefix as text: the server reads them as `snapshot()` does.
        _, ref = snapshot_ref(snapshot.id if isinstance(snapshot, Snapshot) else snapshot)
        body = {"method": method, "base_model": base_model, "snapshot": ref,
                "hyperparameters": hyperparameters or {}, "reward_model": reward_model}
        info = self._launch(self._p(project) + "training-runs/", body)
        return Job(self, project, "training", info["id"], info)

    def feedback(self, project: str | Project, kind: str, model: str, *, scope: dict | None = None,
                 rounds: int = 1, principles: list[str] | None = None, counts_toward_overlap: bool = False,
                 **options) -> Job:
        """Launch AI feedback under the project's constitution: kind "judge" (the model labels tasks; `scope` is
        a task filter) or "critique_revision" (critique and revise responses to prompts, exported as an SFT
        snapshot; `scope` is a prompt filter). Other options (cot, ranking_subset, export_pairs, seed,
        batch_items, critique_sampling, revision_sampling) pass through."""
        body = {"kind": kind, "model": model, "scope": scope or {}, "rounds": rounds, "principles": principles or [],
                "counts_toward_overlap": counts_toward_overlap, **options}
        info = self._launch(self._p(project) + "feedback-jobs/", body)
        return Job(self, project, "feedback", info["id"], info)

    def feedback_jobs(self, project: str | Project) -> list[Job]:
        jobs = self._pages(self._p(project) + "feedback-jobs/")
        return [Job(self, project, "feedback", j["id"], j) for j in jobs]

    def ai_agreement(self, project: str | Project) -> dict:
        """How often AI labels agree with people: overall, per principle, constitution version and judge."""
        return self._get(self._p(project) + "ai-agreement/")

    def start_round(self, project: str | Project, *, policy: str | None = None, judge: str | None = None,
                    reward_model: str | None = None, label_mode: str = "ai", rounds: int = 1,
                    human_quota: int | None = None, config: dict | None = None) -> Job:
        """Start the loop: `rounds` rounds of generate, select, label (AI judge, humans, or both: `label_mode`),
        export, train and evaluate, each round's trained model the next one's policy. `policy` defaults to the
        last round's output model. Returns the first round as a `Job` (kind "round", id = round number)."""
        body = {"policy": policy, "judge": judge, "reward_model": reward_model, "label_mode": label_mode,
                "rounds": rounds, "human_quota": human_quota, "config": config or {}}
        info = self._launch(self._p(project) + "rounds/", {k: v for k, v in body.items() if v is not None})
        return Job(self, project, "round", info["number"], info)

    def rounds(self, project: str | Project) -> list[Job]:
        return [Job(self, project, "round", r["number"], r) for r in self._pages(self._p(project) + "rounds/")]

    def job(self, project: str | Project, kind: str, job_id: int) -> Job:
        """An existing job: kind "generation", "training", "feedback" or "round" (by its number)."""
        job = Job(self, project, kind, int(job_id), {})
        job.refresh()
        return job

    def generation_jobs(self, project: str | Project) -> list[Job]:
        jobs = self._pages(self._p(project) + "generation-jobs/")
        return [Job(self, project, "generation", j["id"], j) for j in jobs]

    def training_runs(self, project: str | Project) -> list[Job]:
        return [Job(self, project, "training", r["id"], r) for r in self._pages(self._p(project) + "training-runs/")]


def _keyed(row: dict, fields: tuple[str, ...]) -> dict:
    """Give a row without a key one derived from its content, so that a retried push writes it once."""
    if row.get("key"):
        return row
    import json

    basis = json.dumps({k: row.get(k) for k in fields}, sort_keys=True, ensure_ascii=False)
    return {**row, "key": "h:" + hashlib.sha256(basis.encode("utf-8")).hexdigest()[:40]}


def _names_a_folder(path: str | Path | None) -> bool:
    return path is not None and (Path(path).is_dir() or str(path).endswith(("/", os.sep)))


def _card_beside(data_path: Path) -> Path:
    """README.md beside the data file, unless a README.md that is not a Quorum card is there already."""
    readme = data_path.with_name("README.md")
    if readme.exists():
        with readme.open(encoding="utf-8", errors="replace") as f:
            head = f.read(65536)
        if not (head.startswith("---\n") and "\nquorum:\n" in head.split("\n---\n", 1)[0]):
            return data_path.with_name(data_path.name + ".README.md")
    return readme


def _write_all(out: BinaryIO, block: bytes) -> None:
    # A buffered pipe may take part of a large block (its reader went away mid-write); the rest is written
    # again, so that the loss surfaces as BrokenPipeError instead of a silently short copy.
    view = memoryview(block)
    while view:
        written = out.write(view)
        view = view[len(view) if written is None else written:]


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()
