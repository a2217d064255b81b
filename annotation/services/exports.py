"""Dataset snapshots: current annotations turned into the files training libraries load as they are.

Rows are streamed (server-side cursors on PostgreSQL), aggregated per task in SQL where a count
is enough (pairwise and thumb majorities) and merge-joined by task id otherwise, written as they
are read, hashed while written, then renamed into place read-only. Memory stays flat whatever the
size of the project.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Avg, Case, Count, Exists, FloatField, OuterRef, Q, Sum, TextField, Value, When
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, Coalesce

from common.errors import Conflict, Invalid

from ..models import (
    Annotation,
    AnnotationSource,
    ChatTurn,
    Conversation,
    DatasetSnapshot,
    Project,
    SnapshotFormat,
    Task,
    TaskKind,
    TaskResponse,
)
from ..rows import id_set
from .cards import snapshot_published
from .imports import standard_prompt_text

FILE_FORMATS = ("jsonl", "parquet")
AGGREGATIONS = ("majority", "dawid_skene")
STYLES = ("conversational", "standard")
# The formats written per task, so a selection of tasks can restrict them (conversations are per chat).
TASK_FORMATS = tuple(f for f in SnapshotFormat.values if f != SnapshotFormat.CONVERSATIONS)
CHUNK = 2000
JSONL_FLUSH_ROWS = 1000
PARQUET_ROW_GROUP = 10_000

PREFERENCE_AGGREGATION = (
    "pairwise tasks: majority over the task's current annotations (counts of A, B, tie and both_bad); "
    "a row only when the top count is unique and is A or B; ties, both-bad and tasks without a strict "
    "majority are dropped; margin = mean over the annotations that voted with the majority of their imported "
    "margin if they carry one, else their strength (1-3); score_chosen/score_rejected = mean of the imported "
    "scores of those annotations. Ranking tasks: every pair of responses, decided by majority "
    "over the annotators who ranked the two differently (equal counts dropped); margin = mean rank difference "
    "among the majority."
)
DAWID_SKENE_AGGREGATION = (
    "pairwise tasks: Dawid-Skene over the task's current annotations (each rater's confusion matrix "
    "over A, B, tie and both_bad estimated by EM, so reliable raters weigh more); a row when the "
    "posterior's most probable class is A or B, ties and both-bad dropped; margin = (P(chosen) - "
    "P(rejected)) x mean stated strength (1-3) of the votes for the chosen response. "
    "Ranking tasks: every pair of responses, decided by majority over the annotators who ranked the two "
    "differently (equal counts dropped); margin = mean rank difference among the majority."
)
MARGIN_RULE = (
    " The margin column is there only when every current A or B vote read states a strength (or was imported "
    "with a margin or scores); otherwise no row has a margin, since a constant one would change a reward "
    "model's loss (TRL's RewardTrainer subtracts it). Ranking margins come from the stated ranks."
)
REVIEW_RULE = (
    " Reviewer adjudication wins: a task with a current reviewer revision (is_review) in the selected "
    "sources is decided by the reviewer's revision alone (majority among reviewers if several), and the "
    "other annotations of that task do not vote."
)


# --- Writing ----------------------------------------------------------------------------------


class _HashingFile:
    """A write-only binary file that hashes and counts what goes through it."""

    def __init__(self, raw):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        data = bytes(data)
        self.sha.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True  # the underlying file is closed by its owner


_encode = json.JSONEncoder(ensure_ascii=False).encode  # one encoder, not one per row


class _JsonlSink:
    def __init__(self, out: _HashingFile):
        self.out = out
        self.rows = 0
        self._buffer: list[str] = []

    def write(self, row: dict | str) -> None:
        self._buffer.append(row if isinstance(row, str) else _encode(row))
        self.rows += 1
        if len(self._buffer) >= JSONL_FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self.out.write(("\n".join(self._buffer) + "\n").encode("utf-8"))
            self._buffer = []

    def close(self) -> None:
        self._flush()


class _ParquetSink:
    """Rows gathered into row groups of PARQUET_ROW_GROUP and written with one fixed schema."""

    def __init__(self, out: _HashingFile, schema):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        self.schema = schema
        self.writer = pq.ParquetWriter(out, schema)
        self.rows = 0
        self._buffer: list[dict] = []

    def write(self, row: dict) -> None:
        self._buffer.append(row)
        self.rows += 1
        if len(self._buffer) >= PARQUET_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self.writer.write_table(self._pa.Table.from_pylist(self._buffer, schema=self.schema))
            self._buffer = []

    def close(self) -> None:
        self._flush()
        self.writer.close()


def _parquet_schema(fmt: str, style: str, columns: list[str]):
    import pyarrow as pa

    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    text_or_messages = message if style == "conversational" else pa.string()
    types = {
        SnapshotFormat.PREFERENCE: {
            "prompt": text_or_messages,
            "chosen": text_or_messages,
            "rejected": text_or_messages,
            "margin": pa.float64(),
            "score_chosen": pa.float64(),
            "score_rejected": pa.float64(),
        },
        SnapshotFormat.UNPAIRED: {"prompt": text_or_messages, "completion": text_or_messages, "label": pa.bool_()},
        SnapshotFormat.STEPWISE: {
            "prompt": text_or_messages,
            "completions": pa.list_(pa.string()),
            "labels": pa.list_(pa.bool_()),
        },
        SnapshotFormat.SFT: {"messages": message},
        SnapshotFormat.RAW: {
            "annotation_id": pa.int64(),
            "task_id": pa.int64(),
            "kind": pa.string(),
            "prompt": message,
            "responses": pa.string(),
            "response_steps": pa.string(),
            "external_id": pa.string(),
            "metadata": pa.string(),
            "payload": pa.string(),
            "shown_order": pa.string(),
            "author": pa.string(),
            "source": pa.string(),
            "seconds_spent": pa.float64(),
            "guideline_version": pa.int64(),
            "constitution_version": pa.int64(),
            "rationale": pa.string(),
            "details": pa.string(),
            "client_id": pa.string(),
            "supersedes_id": pa.int64(),
            "is_current": pa.bool_(),
            "is_review": pa.bool_(),
            "created_at": pa.string(),
        },
        SnapshotFormat.CONVERSATIONS: {
            "conversation_id": pa.int64(),
            "mode": pa.string(),
            "status": pa.string(),
            "transcript": pa.string(),
            "messages": message,
            "rating": pa.int64(),
            "task_description": pa.string(),
            "principle": pa.string(),
            "annotator": pa.string(),
            "models": pa.list_(pa.string()),
            "turns": pa.string(),
            "guideline_version": pa.int64(),
            "constitution_version": pa.int64(),
            "created_at": pa.string(),
            "closed_at": pa.string(),
        },
    }[fmt]
    return pa.schema([(c, types[c]) for c in columns])


# --- Reading ----------------------------------------------------------------------------------


class _Follow:
    """Walks a stream of rows ordered by task id (first column), handing out one task's rows at a time.

    Asking for tasks in increasing id order skips the rows of tasks nobody asked for, so several
    streams ordered the same way can be merge-joined without holding any of them in memory.
    """

    def __init__(self, rows: Iterable[tuple]):
        self._rows = iter(rows)
        self._next = next(self._rows, None)

    def take(self, task_id: int) -> list[tuple]:
        rows, nxt = self._rows, self._next
        while nxt is not None and nxt[0] < task_id:
            nxt = next(rows, None)
        out = []
        while nxt is not None and nxt[0] == task_id:
            out.append(nxt)
            nxt = next(rows, None)
        self._next = nxt
        return out


def _messages(messages) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


class _Reader:
    """The streams one snapshot reads, all scoped to a project, current revisions and sources."""

    def __init__(
        self, *, project: Project, sources: list[str], style: str, aggregation: str = "majority", ai_weight: float = 1.0,
        task_ids: list[int] | None = None,
    ):
        self.project = project
        self.sources = sources
        self.style = style
        self.aggregation = aggregation
        self.ai_weight = ai_weight
        self.task_ids = task_ids

    def _project_tasks(self, kind: str):
        tasks = Task.objects.filter(project=self.project)
        if self.task_ids is not None:
            tasks = tasks.filter(pk__in=id_set(self.task_ids))
        return tasks.filter(kind=kind) if kind else tasks

    def annotations(self, kind: str, *, current: bool = True, adjudicated: bool = False):
        # `task_id IN (the project's tasks)` rather than a join: SQLite then walks the annotations
        # in (task, id) order from the index instead of sorting them all for ORDER BY task.
        qs = Annotation.objects.filter(task_id__in=self._project_tasks(kind).values("id"), source__in=self.sources)
        if not current:
            return qs
        qs = qs.filter(is_current=True)
        if adjudicated:
            # A task a reviewer has corrected is decided by the reviewer's revision alone.
            reviewed = Annotation.objects.filter(
                task_id=OuterRef("task_id"), is_current=True, is_review=True, source__in=self.sources
            )
            qs = qs.filter(Q(is_review=True) | ~Exists(reviewed))
        return qs

    def tasks(self, kind: str, *, current: bool = True):
        """The project's tasks of this kind with at least one annotation in scope."""
        votes = Annotation.objects.filter(task_id=OuterRef("pk"), source__in=self.sources)
        if current:
            votes = votes.filter(is_current=True)
        return self._project_tasks(kind).filter(Exists(votes))

    def prompts(self, kind: str, *, current: bool = True) -> _Follow:
        """task id -> prompt as the style wants it (message list, or the exact prompt string)."""
        qs = self.tasks(kind, current=current).order_by("id")
        if self.style == "conversational":
            rows = qs.values_list("id", "prompt__messages").iterator(chunk_size=CHUNK)
            return _Follow((task_id, _messages(messages)) for task_id, messages in rows)
        rows = qs.values_list(
            "id",
            "prompt__messages",
            KeyTextTransform("text", "prompt__metadata"),
            KeyTextTransform("prompt_text", "metadata"),
        ).iterator(chunk_size=CHUNK)
        return _Follow(
            (task_id, task_text or prompt_text or standard_prompt_text(messages))
            for task_id, messages, prompt_text, task_text in rows
        )

    def responses(self, kind: str, *, steps: bool = False, current: bool = True) -> _Follow:
        """(task id, content or steps), in canonical position order."""
        qs = TaskResponse.objects.filter(task_id__in=self.tasks(kind, current=current).values("id"))
        qs = qs.order_by("task_id", "position")
        column = "response__steps" if steps else "response__content"
        return _Follow(qs.values_list("task_id", column).iterator(chunk_size=CHUNK))


def _completion(text: str, style: str):
    return [{"role": "assistant", "content": text}] if style == "conversational" else text


def _float(value) -> float | None:
    return None if value is None else float(value)


def _pairwise_majorities(
    reader: _Reader, *, with_scores: bool = False
) -> Iterator[tuple[int, int, int, float, float | None, float | None]]:
    """(task id, winner position, loser position, margin, score_chosen, score_rejected) per task with a
    strict A/B majority, counted in SQL (one row per task comes back, not one per annotation)."""
    choice_a, choice_b = Q(payload__choice="A"), Q(payload__choice="B")
    strength = Cast(KeyTextTransform("strength", "payload"), FloatField())
    imported = KeyTransform("import", "details")
    margin = Coalesce(Cast(KeyTextTransform("margin", imported), FloatField()), strength)
    if reader.ai_weight == 1.0:
        vote = lambda condition: Count("id", filter=condition)  # noqa: E731
    else:
        # An AI label's vote weighs `ai_weight` against a person's 1.
        weight = Case(When(source=AnnotationSource.AI, then=Value(reader.ai_weight)), default=Value(1.0),
                      output_field=FloatField())
        vote = lambda condition: Coalesce(Sum(weight, filter=condition), Value(0.0))  # noqa: E731
    counts = {
        "a": vote(choice_a),
        "b": vote(choice_b),
        "tie": vote(Q(payload__choice="tie")),
        "bad": vote(Q(payload__choice="both_bad")),
        "margin_a": Avg(margin, filter=choice_a),
        "margin_b": Avg(margin, filter=choice_b),
    }
    if with_scores:
        score_chosen = Cast(KeyTextTransform("score_chosen", imported), FloatField())
        score_rejected = Cast(KeyTextTransform("score_rejected", imported), FloatField())
        counts.update(
            sc_a=Avg(score_chosen, filter=choice_a),
            sr_a=Avg(score_rejected, filter=choice_a),
            sc_b=Avg(score_chosen, filter=choice_b),
            sr_b=Avg(score_rejected, filter=choice_b),
        )
    rows = (
        reader.annotations(TaskKind.PAIRWISE, adjudicated=True)
        .values("task_id")
        .annotate(**counts)
        .order_by("task_id")
        .values_list("task_id", *counts)
        .iterator(chunk_size=CHUNK)
    )
    for task_id, a, b, tie, bad, margin_a, margin_b, *scores in rows:
        top = max(a, b, tie, bad)
        if top == 0 or (a, b, tie, bad).count(top) != 1 or top not in (a, b):
            continue
        sc_a, sr_a, sc_b, sr_b = scores or (None, None, None, None)
        if a == top:
            yield task_id, 0, 1, _float(margin_a), _float(sc_a), _float(sr_a)
        else:
            yield task_id, 1, 0, _float(margin_b), _float(sc_b), _float(sr_b)


def _pairwise_dawid_skene(reader: _Reader) -> Iterator[tuple[int, int, int, float, None, None]]:
    """Like `_pairwise_majorities`, but each task's label is the argmax of its Dawid-Skene posterior
    (raters weighted by their estimated reliability); margin from the posterior and stated strength.
    A task a reviewer has corrected is still decided by the reviewer's revision alone."""
    from ..quality.aggregation import pairwise_soft_labels

    soft = pairwise_soft_labels(project=reader.project, sources=reader.sources)
    reviewed: dict[int, list[tuple[str, float | None]]] = {}
    rows = (
        reader.annotations(TaskKind.PAIRWISE)
        .filter(is_review=True)
        .order_by("task_id", "id")
        # The JSON value, not a cast of its text: SQLite casts a JSON null to 0.
        .values_list("task_id", KeyTextTransform("choice", "payload"), KeyTransform("strength", "payload"))
    )
    for task_id, choice, s in rows:
        reviewed.setdefault(task_id, []).append((choice, s))
    for task_id in sorted(set(soft) | set(reviewed)):
        if task_id in reviewed:
            votes = reviewed[task_id]
            counts = {c: sum(1 for v in votes if v[0] == c) for c in ("A", "B", "tie", "both_bad")}
            top = max(counts.values())
            if top == 0 or list(counts.values()).count(top) != 1 or counts["A"] != top and counts["B"] != top:
                continue
            label = "A" if counts["A"] == top else "B"
            stated = [v[1] for v in votes if v[0] == label and v[1] is not None]
            margin = sum(stated) / len(stated) if stated else 1.0
        else:
            label, margin = soft[task_id].label, soft[task_id].margin
            if label not in ("A", "B"):
                continue
        win = 0 if label == "A" else 1
        yield task_id, win, 1 - win, float(margin or 0.0), None, None


def _pairwise_decisions(reader: _Reader, *, with_scores: bool = False):
    if reader.aggregation == "dawid_skene":
        return _pairwise_dawid_skene(reader)
    return _pairwise_majorities(reader, with_scores=with_scores)


def _ranking_pairs(ranks: list[list[int]], n: int) -> Iterator[tuple[int, int, float]]:
    """(winner, loser, margin) for every pair a strict majority of those who separated them agrees on."""
    for i in range(n):
        for j in range(i + 1, n):
            i_better = [r[j] - r[i] for r in ranks if r[i] < r[j]]
            j_better = [r[i] - r[j] for r in ranks if r[j] < r[i]]
            if len(i_better) > len(j_better):
                yield i, j, sum(i_better) / len(i_better)
            elif len(j_better) > len(i_better):
                yield j, i, sum(j_better) / len(j_better)


# --- Formats ----------------------------------------------------------------------------------


def _margins_stated(reader: _Reader) -> bool:
    """True when every current A/B vote in scope states a strength (an import states one when it has a
    margin or scores)."""
    votes = reader.annotations(TaskKind.PAIRWISE).filter(payload__choice__in=["A", "B"])
    return not votes.filter(Q(payload__strength=None) | Q(payload__strength__isnull=True)).exists()


def _preference_rows(reader: _Reader, with_scores: bool, with_margin: bool) -> Iterator[dict]:
    style = reader.style
    prompts = reader.prompts(TaskKind.PAIRWISE)
    responses = reader.responses(TaskKind.PAIRWISE)
    for task_id, win, lose, margin, sc, sr in _pairwise_decisions(reader, with_scores=with_scores):
        texts = [r[1] for r in responses.take(task_id)]
        prompt = prompts.take(task_id)
        if len(texts) != 2 or not prompt:
            continue
        row = {
            "prompt": prompt[0][1],
            "chosen": _completion(texts[win], style),
            "rejected": _completion(texts[lose], style),
        }
        if with_margin:
            row["margin"] = margin
        if with_scores:
            row["score_chosen"], row["score_rejected"] = sc, sr
        yield row

    if not reader.annotations(TaskKind.RANKING).exists():
        return
    prompts = reader.prompts(TaskKind.RANKING)
    responses = reader.responses(TaskKind.RANKING)
    ranks = (
        reader.annotations(TaskKind.RANKING, adjudicated=True)
        .order_by("task_id", "id")
        .values_list("task_id", KeyTransform("ranks", "payload"))
        .iterator(chunk_size=CHUNK)
    )
    for task_id, group in _grouped(ranks):
        texts = [r[1] for r in responses.take(task_id)]
        prompt = prompts.take(task_id)
        if not prompt:
            continue
        votes = [r for r in (g[1] for g in group) if isinstance(r, list) and len(r) == len(texts)]
        for win, lose, margin in _ranking_pairs(votes, len(texts)):
            row = {"prompt": prompt[0][1], "chosen": _completion(texts[win], style), "rejected": _completion(texts[lose], style)}
            if with_margin:
                row["margin"] = float(margin)
            yield row


def _grouped(rows: Iterable[tuple]) -> Iterator[tuple[int, list[tuple]]]:
    """Consecutive rows with the same task id (first column), as (task id, rows)."""
    current, group = None, []
    for row in rows:
        if row[0] != current:
            if group:
                yield current, group
            current, group = row[0], []
        group.append(row)
    if group:
        yield current, group


def _unpaired_rows(reader: _Reader, pairwise: bool) -> Iterator[dict]:
    style = reader.style
    prompts = reader.prompts(TaskKind.RATING)
    responses = reader.responses(TaskKind.RATING)
    thumbs = (
        reader.annotations(TaskKind.RATING, adjudicated=True)
        .values("task_id")
        .annotate(up=Count("id", filter=Q(payload__thumb="up")), down=Count("id", filter=Q(payload__thumb="down")))
        .order_by("task_id")
        .values_list("task_id", "up", "down")
        .iterator(chunk_size=CHUNK)
    )
    for task_id, up, down in thumbs:
        if up == down:
            continue
        texts = [r[1] for r in responses.take(task_id)]
        prompt = prompts.take(task_id)
        if len(texts) != 1 or not prompt:
            continue
        yield {"prompt": prompt[0][1], "completion": _completion(texts[0], style), "label": up > down}
    if not pairwise:
        return
    prompts = reader.prompts(TaskKind.PAIRWISE)
    responses = reader.responses(TaskKind.PAIRWISE)
    for task_id, win, lose, *_ in _pairwise_decisions(reader):
        texts = [r[1] for r in responses.take(task_id)]
        prompt = prompts.take(task_id)
        if len(texts) != 2 or not prompt:
            continue
        yield {"prompt": prompt[0][1], "completion": _completion(texts[win], style), "label": True}
        yield {"prompt": prompt[0][1], "completion": _completion(texts[lose], style), "label": False}


def _stepwise_rows(reader: _Reader, neutral_is_correct: bool) -> Iterator[dict]:
    prompts = reader.prompts(TaskKind.STEPS)
    steps = reader.responses(TaskKind.STEPS, steps=True)
    labels = (
        reader.annotations(TaskKind.STEPS, adjudicated=True)
        .order_by("task_id", "id")
        .values_list("task_id", KeyTransform("labels", "payload"))
        .iterator(chunk_size=CHUNK)
    )
    for task_id, group in _grouped(labels):
        found = steps.take(task_id)
        prompt = prompts.take(task_id)
        if len(found) != 1 or not prompt:
            continue
        completions = found[0][1]
        if not completions:
            continue  # a record that labels no step (a PRM800K bad problem) has nothing to train on
        votes = [g[1] for g in group if isinstance(g[1], list) and len(g[1]) == len(completions)]
        if not votes:
            continue
        merged = []
        for step in range(len(completions)):
            good = sum(1 for v in votes if v[step] == 1 or (v[step] == 0 and neutral_is_correct))
            bad = len(votes) - good
            if good == bad:
                merged = None
                break
            merged.append(good > bad)
        if merged is None:
            continue
        yield {"prompt": prompt[0][1], "completions": list(completions), "labels": merged}


def _sft_rows(reader: _Reader) -> Iterator[dict]:
    prompts = reader.prompts(TaskKind.DEMONSTRATION)
    texts = (
        reader.annotations(TaskKind.DEMONSTRATION)
        .order_by("task_id", "id")
        .values_list("task_id", KeyTextTransform("text", "payload"))
        .iterator(chunk_size=CHUNK)
    )
    for task_id, group in _grouped(texts):
        prompt = prompts.take(task_id)
        if not prompt:
            continue
        for _, text in group:
            if text:
                yield {"messages": [*prompt[0][1], {"role": "assistant", "content": text}]}


def _dashed(hex32: str) -> str:
    """A UUID stored as 32 hex digits (SQLite) in its usual 8-4-4-4-12 form."""
    return hex32 if len(hex32) == 36 else f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def _iso_utc(text: str) -> str:
    """A stored UTC timestamp as text ("2026-01-02 03:04:05.6+00" on PostgreSQL, no offset on
    SQLite) in ISO 8601 with its offset."""
    text = text.replace(" ", "T", 1)
    if text.endswith("+00"):
        return text + ":00"
    return text if "+" in text[10:] else text + "+00:00"


_json_string = json.encoder.encode_basestring  # the C encoder for one string, non-ASCII kept


def _raw_rows(reader: _Reader, *, as_lines: bool = False) -> Iterator[dict | str]:
    """Every annotation revision with its task, prompt and responses; as dicts, or as finished
    JSON lines (built from per-task pieces: a million rows would otherwise spend most of their
    time re-encoding the same prompt)."""
    tasks = reader.tasks("", current=False)
    # The prompt with its external id and metadata, the responses with their steps (JSON as stored).
    prompts = _Follow(
        tasks.order_by("id")
        .values_list("id", "prompt__messages", "prompt__external_id", Cast("prompt__metadata", TextField()))
        .iterator(chunk_size=CHUNK)
    )
    responses = _Follow(
        TaskResponse.objects.filter(task_id__in=tasks.values("id"))
        .order_by("task_id", "position")
        .values_list("task_id", "response__content", Cast("response__steps", TextField()))
        .iterator(chunk_size=CHUNK)
    )
    rows = (
        reader.annotations("", current=False)
        .order_by("task_id", "id")
        .values_list(
            "task_id",
            "id",
            "kind",
            # JSON columns, ids and times as the stored text: raw writes them as text, so
            # converting them to Python objects and back per row would only cost time.
            Cast("payload", TextField()),
            Cast("shown_order", TextField()),
            "author__username",
            "source",
            "seconds_spent",
            "guideline_version__number",
            "constitution_version__number",
            "rationale",
            Cast("details", TextField()),
            Cast("client_id", TextField()),
            "supersedes_id",
            "is_current",
            "is_review",
            Cast("created_at", TextField()),
        )
        .iterator(chunk_size=CHUNK)
    )
    for task_id, group in _grouped(rows):
        found = responses.take(task_id)
        prompt = prompts.take(task_id)
        _, messages, external_id, metadata = prompt[0] if prompt else (task_id, [], "", "{}")
        messages = _messages(messages)
        responses_json = json.dumps([r[1] for r in found], ensure_ascii=False)
        steps_json = "[" + ", ".join(r[2] or "[]" for r in found) + "]"  # one list of steps per response
        metadata = metadata or "{}"
        if as_lines:
            task_part = (
                f'"task_id": {task_id}, "prompt": {json.dumps(messages, ensure_ascii=False)}, '
                f'"responses": {_json_string(responses_json)}, "response_steps": {_json_string(steps_json)}, '
                f'"external_id": {_json_string(external_id)}, "metadata": {_json_string(metadata)}'
            )
        for (
            _,
            annotation_id,
            kind,
            payload,
            shown_order,
            author,
            source,
            seconds,
            guideline,
            constitution,
            rationale,
            details,
            client_id,
            supersedes,
            is_current,
            is_review,
            created_at,
        ) in group:
            seconds = -1.0 if seconds is None else float(seconds)
            if as_lines:
                # kind and source are checked choices, ids are numbers, client id and time are
                # plain ASCII: only free text goes through the encoder.
                yield (
                    f'{{"annotation_id": {annotation_id}, {task_part}, "kind": "{kind}", '
                    f'"payload": {_json_string(payload)}, "shown_order": {_json_string(shown_order or "[]")}, '
                    f'"author": {_json_string(author or "")}, "source": "{source}", "seconds_spent": {seconds!r}, '
                    f'"guideline_version": {guideline or 0}, "constitution_version": {constitution or 0}, '
                    f'"rationale": {_json_string(rationale)}, "details": {_json_string(details or "{}")}, '
                    f'"client_id": "{_dashed(client_id)}", "supersedes_id": {supersedes or 0}, '
                    f'"is_current": {"true" if is_current else "false"}, "is_review": {"true" if is_review else "false"}, '
                    f'"created_at": "{_iso_utc(created_at)}"}}'
                )
                continue
            yield {
                "annotation_id": annotation_id,
                "task_id": task_id,
                "prompt": messages,
                "responses": responses_json,
                "response_steps": steps_json,
                "external_id": external_id,
                "metadata": metadata,
                "kind": kind,
                "payload": payload,
                "shown_order": shown_order or "[]",
                "author": author or "",
                "source": source,
                "seconds_spent": seconds,
                "guideline_version": guideline or 0,
                "constitution_version": constitution or 0,
                "rationale": rationale,
                "details": details or "{}",
                "client_id": _dashed(client_id),
                "supersedes_id": supersedes or 0,
                "is_current": bool(is_current),
                "is_review": bool(is_review),
                "created_at": _iso_utc(created_at),
            }


CONVERSATION_COLUMNS = [
    "conversation_id", "mode", "status", "transcript", "messages", "rating", "task_description", "principle",
    "annotator", "models", "turns", "guideline_version", "constitution_version", "created_at", "closed_at",
]  # fmt: skip


def _transcript(messages: list[dict]) -> str:
    """The dialogue as HH-RLHF writes it: "\n\nHuman: ...\n\nAssistant: ..."."""
    speaker = {"user": "Human", "assistant": "Assistant", "system": "System"}
    return "".join(f"\n\n{speaker[m['role']]}: {m['content']}" for m in messages)


def _conversation_rows(project: Project) -> Iterator[dict]:
    """One row per conversation with a labelled turn: the dialogue as it went (each turn's user message and the
    reply kept), every turn's candidates with their models and labels, and the red-team fields."""
    turns = _Follow(
        ChatTurn.objects.filter(conversation__project=project, state="labelled")
        .order_by("conversation_id", "index")
        .values_list("conversation_id", "index", "message", "partial", "sides", "kept", "harmful", "annotation__payload")
        .iterator(chunk_size=CHUNK)
    )
    conversations = (
        Conversation.objects.filter(project=project, turns__state="labelled")
        .distinct()
        .order_by("id")
        .values_list("id", "mode", "status", "rating", "task_description", "principle", "annotator__username", "sides",
                     "guideline_version__number", "constitution_version__number", "created_at", "closed_at")
        .iterator(chunk_size=CHUNK)
    )
    for cid, mode, status, rating, description, principle, annotator, sides, guideline, constitution, created, closed in conversations:
        messages, per_turn = [], []
        for _, index, message, texts, turn_sides, kept, harmful, payload in turns.take(cid):
            reply = texts[kept or 0]
            messages += [{"role": "user", "content": message}, {"role": "assistant", "content": reply}]
            per_turn.append({
                "index": index, "user": message,
                "replies": [{"model": side["model"], "text": text} for side, text in zip(turn_sides, texts)],
                "kept": kept, "harmful": harmful, "choice": payload.get("choice") if payload else None,
                "strength": payload.get("strength") if payload else None,
            })
        yield {
            "conversation_id": cid, "mode": mode, "status": status, "transcript": _transcript(messages),
            "messages": messages, "rating": -1 if rating is None else rating, "task_description": description,
            "principle": principle, "annotator": annotator, "models": [side["model"] for side in sides],
            "turns": json.dumps(per_turn, ensure_ascii=False), "guideline_version": guideline or 0,
            "constitution_version": constitution or 0, "created_at": created.isoformat(),
            "closed_at": closed.isoformat() if closed else "",
        }


# --- The service ------------------------------------------------------------------------------


def _target_path(project: Project, fmt: str, file_format: str, out_path) -> Path:
    if out_path is not None:
        path = Path(out_path).resolve()
        if DatasetSnapshot.objects.filter(path=str(path)).exists():
            raise Conflict(
                f"{path} is an earlier snapshot; snapshots are immutable, choose another path", code="snapshot_exists"
            )
        return path
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    # One directory per snapshot: the data file and its dataset card (README.md), loadable by `datasets` as is.
    return Path(settings.SNAPSHOT_DIR).resolve() / project.slug / f"{fmt}-{stamp}" / f"data.{file_format}"


def snapshot_create(
    *,
    project: Project,
    format: str,
    file_format: str = "jsonl",
    style: str = "conversational",
    sources: Iterable[str] = ("human", "ai"),
    created_by: AbstractBaseUser | None = None,
    out_path: str | os.PathLike | None = None,
    neutral_step_correct: bool = True,
    pairwise_as_unpaired: bool = False,
    aggregation: str = "majority",
    ai_weight: float = 1.0,
    task_ids: Iterable[int] | None = None,
) -> DatasetSnapshot:
    """Write a dataset file from the project's current annotations and record it as a snapshot.

    preference/unpaired/stepwise/sft use current revisions only; raw has every revision. `sources`
    keeps annotations by source (human, ai). Stepwise: +1 -> true, -1 -> false, 0 -> true unless
    `neutral_step_correct` is False. Unpaired: thumbs on rating tasks, plus, with
    `pairwise_as_unpaired`, each pairwise majority as one desirable and one undesirable row.
    `ai_weight` (majority aggregation, pairwise votes): an AI label's vote against a person's 1; 0 < w <= 1.
    `task_ids` keeps these tasks only (a selection in the task browser); they are recorded in the spec.
    """
    if format not in SnapshotFormat.values:
        raise Invalid(f"unknown dataset format {format!r}", fields={"format": [f"must be one of {', '.join(SnapshotFormat.values)}"]})
    if task_ids is not None and format not in TASK_FORMATS:
        raise Invalid("a selection of tasks exports in a task format, not as chat conversations",
                      fields={"format": [f"must be one of {', '.join(TASK_FORMATS)}"]})
    if file_format not in FILE_FORMATS:
        raise Invalid(f"unknown file format {file_format!r}", fields={"file_format": [f"must be one of {', '.join(FILE_FORMATS)}"]})
    if style not in STYLES:
        raise Invalid(f"unknown style {style!r}", fields={"style": [f"must be one of {', '.join(STYLES)}"]})
    if aggregation not in AGGREGATIONS:
        raise Invalid(
            f"unknown aggregation {aggregation!r}", fields={"aggregation": [f"must be one of {', '.join(AGGREGATIONS)}"]}
        )
    try:
        ai_weight = float(ai_weight)
    except (TypeError, ValueError):
        ai_weight = -1.0
    if not 0 < ai_weight <= 1:
        raise Invalid("ai_weight must be in (0, 1]", fields={"ai_weight": ["a number in (0, 1]"]})
    if ai_weight != 1.0 and aggregation != "majority":
        raise Invalid("ai_weight applies to majority aggregation", fields={"ai_weight": ["only with majority"]})
    sources = sorted(set(sources))
    if not sources or not set(sources) <= set(AnnotationSource.values):
        raise Invalid("sources must name human and/or ai", fields={"sources": [f"choose from {', '.join(AnnotationSource.values)}"]})
    if format in (SnapshotFormat.SFT, SnapshotFormat.RAW, SnapshotFormat.CONVERSATIONS):
        style = "conversational"  # messages either way

    if task_ids is not None:
        task_ids = sorted({int(i) for i in task_ids})
    reader = _Reader(project=project, sources=sources, style=style, aggregation=aggregation, ai_weight=ai_weight,
                     task_ids=task_ids)
    spec: dict = {"format": format, "file_format": file_format, "style": style, "sources": sources}
    if task_ids is not None:
        spec["task_ids"] = task_ids
    if format in (SnapshotFormat.PREFERENCE, SnapshotFormat.UNPAIRED):
        spec["aggregation_method"] = aggregation
        if AnnotationSource.AI in sources:
            spec["ai_weight"] = ai_weight
    if format == SnapshotFormat.PREFERENCE:
        # Scores only when every row can have them: a column that is null in the first rows and a
        # number later does not load with `datasets` (its type is taken from the first block).
        imported = KeyTransform("import", "details")
        pairwise = reader.annotations(TaskKind.PAIRWISE).annotate(
            sc=KeyTextTransform("score_chosen", imported), sr=KeyTextTransform("score_rejected", imported)
        )
        with_scores = (
            aggregation == "majority"
            and pairwise.exists()
            and not pairwise.filter(Q(sc__isnull=True) | Q(sr__isnull=True)).exists()
            and not reader.annotations(TaskKind.RANKING).exists()
        )
        with_margin = _margins_stated(reader)
        columns = (
            ["prompt", "chosen", "rejected"]
            + (["margin"] if with_margin else [])
            + (["score_chosen", "score_rejected"] if with_scores else [])
        )
        rows = _preference_rows(reader, with_scores, with_margin)
        spec.update(
            current_only=True,
            aggregation=(
                PREFERENCE_AGGREGATION
                + " score_chosen/score_rejected are included only when every selected pairwise annotation "
                "carries imported scores and there are no ranking tasks."
                if aggregation == "majority"
                else DAWID_SKENE_AGGREGATION + " No score columns."
            )
            + MARGIN_RULE
            + REVIEW_RULE,
            labels=(
                "chosen = the response the majority preferred, rejected = the other"
                if aggregation == "majority"
                else "chosen = the response the Dawid-Skene posterior ranks most probable, rejected = the other"
            ),
        )
    elif format == SnapshotFormat.UNPAIRED:
        columns = ["prompt", "completion", "label"]
        rows = _unpaired_rows(reader, pairwise_as_unpaired)
        spec.update(
            current_only=True,
            aggregation="rating tasks: majority thumb over the task's current annotations (Likert-only "
            "annotations do not vote); an even split is dropped"
            + (
                (
                    "; pairwise tasks with a strict A/B majority give the chosen response as label true and the "
                    "rejected one as label false"
                    if aggregation == "majority"
                    else "; pairwise tasks whose Dawid-Skene label (most probable class of the posterior, raters "
                    "weighted by estimated reliability) is A or B give the chosen response as label true and the "
                    "rejected one as label false"
                )
                if pairwise_as_unpaired
                else "; pairwise tasks are not included"
            )
            + "."
            + REVIEW_RULE,
            labels="thumb up -> true, thumb down -> false",
            pairwise_as_unpaired=pairwise_as_unpaired,
        )
    elif format == SnapshotFormat.STEPWISE:
        columns = ["prompt", "completions", "labels"]
        rows = _stepwise_rows(reader, neutral_step_correct)
        spec.update(
            current_only=True,
            aggregation="per-step majority over the task's current annotations after mapping each label to "
            "true/false; a task with any evenly split step is dropped." + REVIEW_RULE,
            labels="+1 -> true, -1 -> false, 0 -> "
            + ("true (a neutral step is not an error)" if neutral_step_correct else "false (a neutral step counts as an error)"),
            neutral_step_correct=neutral_step_correct,
        )
    elif format == SnapshotFormat.SFT:
        columns = ["messages"]
        rows = _sft_rows(reader)
        spec.update(
            current_only=True,
            aggregation="every current demonstration annotation is one row: the prompt messages plus the "
            "demonstration as the assistant turn",
            labels="none",
        )
    elif format == SnapshotFormat.CONVERSATIONS:
        columns = CONVERSATION_COLUMNS
        rows = _conversation_rows(project)
        spec.update(
            current_only=True,
            sources=["human"],
            aggregation="none: one row per live-chat conversation with at least one labelled turn, its turns in "
            "order; the dialogue keeps each turn's user message and the reply kept (the one picked, A on a tie or "
            "both bad; the only one in red team)",
            labels="turns[].harmful: the red-teamer's mark of each reply; rating: how bad the worst reply was, 0 "
            "(not at all) to 4 (very), as in HH-RLHF's red-team attempts; turns[].choice: the pairwise pick (A/B as "
            "shown)",
            json_columns=["turns"],
            missing_values={"rating": -1, "guideline_version": 0, "constitution_version": 0, "closed_at": ""},
        )
    else:
        columns = [
            "annotation_id", "task_id", "prompt", "responses", "response_steps", "external_id", "metadata", "kind",
            "payload", "shown_order", "author",
            "source", "seconds_spent", "guideline_version", "constitution_version", "rationale", "details",
            "client_id", "supersedes_id", "is_current", "is_review", "created_at",
        ]  # fmt: skip
        rows = _raw_rows(reader, as_lines=file_format == "jsonl")
        spec.update(
            current_only=False,
            aggregation="none: every annotation revision, ordered by task and id",
            labels="as stored (steps keep -1/0/+1; choices and orders in canonical response positions)",
            # Every column keeps one type in every row, so the file loads with `datasets`: values
            # whose shape varies by kind are JSON text, and a missing value is a stated sentinel.
            json_columns=["responses", "response_steps", "metadata", "payload", "shown_order", "details"],
            missing_values={
                "author": "",
                "seconds_spent": -1.0,
                "guideline_version": 0,
                "constitution_version": 0,
                "supersedes_id": 0,
            },
        )
    spec["columns"] = columns
    return _write(project=project, format=format, file_format=file_format, style=style, columns=columns, rows=rows,
                  spec=spec, created_by=created_by, out_path=out_path)


def snapshot_from_rows(
    *,
    project: Project,
    format: str,
    rows: Iterable[dict],
    spec: dict,
    created_by: AbstractBaseUser | None = None,
    out_path: str | os.PathLike | None = None,
) -> DatasetSnapshot:
    """Record rows built elsewhere (e.g. AI revisions as SFT data) as a JSONL snapshot, written, hashed and
    published exactly as `snapshot_create` does. `spec` says where the rows came from."""
    columns = {SnapshotFormat.SFT: ["messages"], SnapshotFormat.PREFERENCE: ["prompt", "chosen", "rejected"]}.get(format)
    if columns is None:
        raise Invalid(f"rows can be recorded as sft or preference, not {format!r}", fields={"format": ["sft or preference"]})
    spec = {"format": format, "file_format": "jsonl", "style": "conversational", **spec, "columns": columns}
    return _write(project=project, format=format, file_format="jsonl", style="conversational", columns=columns,
                  rows=rows, spec=spec, created_by=created_by, out_path=out_path)


def _write(*, project, format, file_format, style, columns, rows, spec, created_by, out_path) -> DatasetSnapshot:
    target = _target_path(project, format, file_format, out_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as raw_file:
            out = _HashingFile(raw_file)
            sink = _ParquetSink(out, _parquet_schema(format, style, columns)) if file_format == "parquet" else _JsonlSink(out)
            with _consistent_read():
                for row in rows:
                    sink.write(row)
            sink.close()
            raw_file.flush()
            os.fsync(raw_file.fileno())
        os.chmod(tmp_name, 0o444)
        os.replace(tmp_name, target)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    try:
        snapshot = DatasetSnapshot.objects.create(
            project=project,
            format=format,
            file_format=file_format,
            spec=spec,
            row_count=sink.rows,
            sha256=out.sha.hexdigest(),
            path=str(target),
            size_bytes=out.size,
            created_by=created_by,
        )
    except BaseException:
        target.unlink(missing_ok=True)  # no file without its record
        raise
    snapshot_published(snapshot=snapshot)  # dataset card beside the file; snapshot.created webhooks
    return snapshot


class _consistent_read:
    """On PostgreSQL, read every stream from one snapshot of the database (REPEATABLE READ).

    Inside an outer transaction (or on SQLite, where a transaction would take the write lock) the
    streams read as they are: the merge by task id tolerates rows that appear in one and not the other.
    """

    def __enter__(self):
        self._atomic = None
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            self._atomic = transaction.atomic()
            self._atomic.__enter__()
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                # The streams are long scans whose plans are cheap to make; compiling them
                # (JIT) costs more than it saves.
                cursor.execute("SET LOCAL jit = off")
        return self

    def __exit__(self, *exc):
        if self._atomic is not None:
            return self._atomic.__exit__(*exc)
        return False
