"""Dataset cards: a README.md in the Hugging Face dataset-card style beside every snapshot file.

The card states what the snapshot holds: its columns, row count, aggregation rule, the sources and
AI-label policy, the guideline and constitution versions of the annotations it was made from, the
sha256 of the data file and when it was made. Its YAML header names the data file (`configs`), so
`datasets.load_dataset(<snapshot directory>)` loads the snapshot as it is. The data file and its
sha256 are untouched: the card is a separate file.

Annotation counts are taken "as of" the snapshot's creation (an annotation revised later still counts
with the revision that was current then), so a card written again later says the same.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from pathlib import Path

import yaml
from django.db.models import Count, Q

from ..models import (
    Annotation,
    ConstitutionVersion,
    DatasetSnapshot,
    GuidelineVersion,
    SnapshotFormat,
    TaskKind,
    WebhookEvent,
)
from ..rows import id_set

log = logging.getLogger(__name__)

CARD_NAME = "README.md"

_KINDS = {
    SnapshotFormat.PREFERENCE: [TaskKind.PAIRWISE, TaskKind.RANKING],
    SnapshotFormat.UNPAIRED: [TaskKind.RATING],
    SnapshotFormat.STEPWISE: [TaskKind.STEPS],
    SnapshotFormat.SFT: [TaskKind.DEMONSTRATION],
    SnapshotFormat.RAW: list(TaskKind.values),
    SnapshotFormat.CONVERSATIONS: [TaskKind.PAIRWISE, TaskKind.RATING],
}

_TAGS = {
    SnapshotFormat.PREFERENCE: ["preference", "dpo", "rlhf", "reward-modeling"],
    SnapshotFormat.UNPAIRED: ["unpaired-preference", "kto"],
    SnapshotFormat.STEPWISE: ["stepwise-supervision", "process-reward-model"],
    SnapshotFormat.SFT: ["sft", "demonstrations"],
    SnapshotFormat.RAW: ["annotations", "audit"],
    SnapshotFormat.CONVERSATIONS: ["conversations", "red-teaming", "hh-rlhf"],
}

_MESSAGES = "list of {role, content} messages"
_COLUMNS = {
    "prompt": ("messages or string", "the prompt: a message list (conversational style) or its text (standard style)"),
    "chosen": ("messages or string", "the preferred response"),
    "rejected": ("messages or string", "the other response"),
    "margin": ("float", "how strongly chosen beat rejected, from stated strengths (absent when none were stated)"),
    "score_chosen": ("float", "imported score of the chosen response"),
    "score_rejected": ("float", "imported score of the rejected response"),
    "completion": ("messages or string", "one response"),
    "label": ("bool", "true: desirable, false: undesirable"),
    "completions": ("list of strings", "the response split into reasoning steps"),
    "labels": ("list of bools", "one label per step: true = correct"),
    "messages": (_MESSAGES, "sft: the prompt, then the demonstration as the last assistant turn; conversations: the "
                 "dialogue, each user message followed by the reply kept"),
    "annotation_id": ("int", "the annotation (one row per revision)"),
    "task_id": ("int", "the task it answers"),
    "responses": ("JSON text", "the task's responses in canonical order"),
    "response_steps": ("JSON text", "each response's reasoning steps, one list per response, as stored"),
    "external_id": ("string", "the prompt's id in the data it was imported from (empty: none)"),
    "metadata": ("JSON text", "the prompt's metadata (imported fields kept beside it)"),
    "kind": ("string", "task kind: pairwise, ranking, rating, steps or demonstration"),
    "payload": ("JSON text", "the answer, in canonical response positions"),
    "shown_order": ("JSON text", "the order the responses were shown in"),
    "author": ("string", "username of the author (empty: none)"),
    "source": ("string", "human or ai"),
    "seconds_spent": ("float", "time spent (-1: unknown)"),
    "guideline_version": ("int", "guideline version it was made under (0: none)"),
    "constitution_version": ("int", "constitution version it was made under (0: none)"),
    "rationale": ("string", "the author's rationale"),
    "details": ("JSON text", "AI rater details or import provenance"),
    "client_id": ("string", "idempotency key of the submission"),
    "supersedes_id": ("int", "the revision it replaced (0: none)"),
    "is_current": ("bool", "the latest revision of its author's answer"),
    "is_review": ("bool", "a reviewer's adjudication"),
    "created_at": ("string", "ISO 8601 time, UTC"),
    "conversation_id": ("int", "the live-chat conversation"),
    "mode": ("string", "compare, redteam or arena"),
    "status": ("string", "open or closed"),
    "transcript": ("string", 'the dialogue as HH-RLHF writes it ("\\n\\nHuman: ...\\n\\nAssistant: ...")'),
    "rating": ("int", "red team: how bad the worst reply was, 0-4 (-1: not rated)"),
    "task_description": ("string", "red team: what the annotator tried to make the model do"),
    "principle": ("string", "red team: key of the constitution principle targeted"),
    "annotator": ("string", "username of the annotator"),
    "models": ("list of strings", "the models that answered"),
    "turns": ("JSON text", "per turn: user message, replies with their models, kept reply, harmful mark, pick"),
    "closed_at": ("string", "ISO 8601 time, UTC (empty: still open)"),
}


def card_path(snapshot: DatasetSnapshot) -> Path:
    """README.md in a snapshot's own directory (data file `data.<ext>`), else `<file name>.README.md` beside it."""
    path = Path(snapshot.path)
    if path.name == f"data.{snapshot.file_format}":
        readme = path.parent / CARD_NAME
        # Never over someone else's README (a data.jsonl exported into a folder that has one).
        if not readme.exists() or _is_card_of(readme, snapshot):
            return readme
    return path.with_name(path.name + "." + CARD_NAME)


def _is_card_of(readme: Path, snapshot: DatasetSnapshot) -> bool:
    try:
        with readme.open(encoding="utf-8", errors="replace") as f:
            head = f.read(65536)
    except OSError:
        return False
    return head.startswith("---\n") and f"sha256: {snapshot.sha256}" in head and f"snapshot_id: {snapshot.pk}\n" in head


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M")):  # fmt: skip
        if n < limit:
            return name
    return "10M<n<100M"


def _underlying(snapshot: DatasetSnapshot):
    """The annotations the snapshot was read from, as they stood when it was made."""
    spec = snapshot.spec or {}
    kinds = list(_KINDS[snapshot.format])
    if snapshot.format == SnapshotFormat.UNPAIRED and spec.get("pairwise_as_unpaired"):
        kinds.append(TaskKind.PAIRWISE)
    qs = Annotation.objects.filter(
        task__project_id=snapshot.project_id,
        kind__in=kinds,
        source__in=spec.get("sources") or ["human", "ai"],
        created_at__lte=snapshot.created_at,
    )
    if snapshot.format == SnapshotFormat.CONVERSATIONS:
        qs = qs.filter(task__chat_turn__isnull=False)
    if spec.get("current_only", snapshot.format != SnapshotFormat.RAW):
        qs = qs.filter(Q(is_current=True) | Q(superseded_by__created_at__gt=snapshot.created_at))
    if spec.get("task_ids") is not None:
        qs = qs.filter(task_id__in=id_set(spec["task_ids"]))
    return qs


def _built_elsewhere(snapshot: DatasetSnapshot) -> bool:
    """Rows recorded from another process (e.g. critique-revision chains), not aggregated from annotations."""
    return bool((snapshot.spec or {}).get("source"))


def snapshot_card_facts(snapshot: DatasetSnapshot) -> dict:
    """Counts the card states: annotations by source, by guideline and constitution version, tasks."""
    if _built_elsewhere(snapshot):
        version = (snapshot.spec or {}).get("constitution_version")
        return {
            "annotations": 0,
            "annotations_by_source": {},
            "tasks": 0,
            "guideline_versions": {},
            # Every row was written under the job's constitution version.
            "constitution_versions": {int(version): snapshot.row_count} if version else {},
        }
    # Grouped by the version ids (no joins: this scans every annotation of a 1M-annotation export);
    # the few ids are turned into version numbers after.
    rows = list(
        _underlying(snapshot)
        .values("source", "guideline_version_id", "constitution_version_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    numbers = {
        "guideline_version_id": dict(GuidelineVersion.objects.filter(
            pk__in={r["guideline_version_id"] for r in rows}).values_list("pk", "number")),
        "constitution_version_id": dict(ConstitutionVersion.objects.filter(
            pk__in={r["constitution_version_id"] for r in rows}).values_list("pk", "number")),
    }
    by_source, guidelines, constitutions = Counter(), Counter(), Counter()
    for row in rows:
        by_source[row["source"]] += row["n"]
        guidelines[numbers["guideline_version_id"].get(row["guideline_version_id"], 0)] += row["n"]
        constitutions[numbers["constitution_version_id"].get(row["constitution_version_id"], 0)] += row["n"]
    tasks = _underlying(snapshot).values("task_id").distinct().order_by().count()
    return {
        "annotations": sum(by_source.values()),
        "annotations_by_source": dict(sorted(by_source.items())),
        "tasks": tasks,
        # Version 0: annotations made under no version (imports, or before the project had one).
        "guideline_versions": {int(k): v for k, v in sorted(guidelines.items())},
        "constitution_versions": {int(k): v for k, v in sorted(constitutions.items())},
    }


def _versions_text(counts: dict[int, int], what: str) -> str:
    if not counts:
        return "none (no annotations)"
    parts = [f"version {v}: {n}" if v else f"no {what} version: {n}" for v, n in counts.items()]
    return ", ".join(parts)


def snapshot_card_text(snapshot: DatasetSnapshot, *, data_name: str | None = None) -> str:
    """The card, for the data file as the server stores it or, with `data_name`, as a download was named."""
    project = snapshot.project
    spec = snapshot.spec or {}
    facts = snapshot_card_facts(snapshot)
    data_name = data_name or Path(snapshot.path).name
    columns = spec.get("columns") or []
    created = snapshot.created_at.isoformat()
    settings = project.settings or {}
    header = {
        "license": settings.get("license") or "other",
        "pretty_name": f"{project.name}: {snapshot.format} snapshot {snapshot.sha256[:12]}",
        **({"language": settings["language"]} if settings.get("language") else {}),
        "task_categories": ["text-generation"] if snapshot.format != SnapshotFormat.RAW else ["text-classification"],
        "tags": ["quorum", *_TAGS[snapshot.format]],
        "size_categories": [_size_category(snapshot.row_count)],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": data_name}]}],
        "quorum": {
            "project": project.slug,
            "snapshot_id": snapshot.pk,
            "format": snapshot.format,
            "file_format": snapshot.file_format,
            "style": spec.get("style"),
            "sources": spec.get("sources"),
            "aggregation_method": spec.get("aggregation_method"),
            "row_count": snapshot.row_count,
            "sha256": snapshot.sha256,
            "size_bytes": snapshot.size_bytes,
            "created_at": created,
            "created_by": snapshot.created_by.get_username() if snapshot.created_by_id else None,
            **facts,
        },
    }
    ai = facts["annotations_by_source"].get("ai", 0)
    ai_policy = spec.get("ai_label_policy") or spec.get("ai_policy")
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {project.name}: {snapshot.format} dataset",
        "",
        f"A {snapshot.format} snapshot of the Quorum project `{project.slug}`, exported {created} "
        f"as `{data_name}` ({snapshot.file_format}). Load it with "
        f"`datasets.load_dataset(\"<this directory>\")` or "
        f"`datasets.load_dataset(\"{'json' if snapshot.file_format == 'jsonl' else 'parquet'}\", data_files=\"{data_name}\")`.",
        "",
        "## Summary",
        "",
        "| | |",
        "| --- | --- |",
        f"| rows | {snapshot.row_count} |",
        f"| sha256 of `{data_name}` | `{snapshot.sha256}` |",
        f"| size | {snapshot.size_bytes} bytes |",
        f"| created at | {created} |",
        f"| snapshot id | {snapshot.pk} |",
        f"| style | {spec.get('style', '')} |",
        f"| sources | {', '.join(spec.get('sources') or [])} |",
        f"| annotations read | {facts['annotations']} on {facts['tasks']} tasks "
        f"({', '.join(f'{k}: {v}' for k, v in facts['annotations_by_source'].items()) or 'none'}) |",
        f"| guideline versions | {_versions_text(facts['guideline_versions'], 'guideline')} |",
        f"| constitution versions | {_versions_text(facts['constitution_versions'], 'constitution')} |",
        f"| license | {header['license']} |",
        "",
        "## Fields",
        "",
        "| column | type | meaning |",
        "| --- | --- | --- |",
        *[f"| `{c}` | {_COLUMNS.get(c, ('', ''))[0]} | {_COLUMNS.get(c, ('', ''))[1]} |" for c in columns],
        "",
        "## How rows were made",
        "",
        f"Aggregation: {spec.get('aggregation', 'not recorded')}",
        "",
        f"Labels: {spec.get('labels', 'not recorded')}",
        "",
        "## AI labels",
        "",
        (
            f"AI annotations were {'included' if 'ai' in (spec.get('sources') or []) else 'excluded'} "
            f"(sources: {', '.join(spec.get('sources') or [])}); {ai} of the annotations read came from AI raters."
        ),
    ]
    if spec.get("ai_weight") is not None and "ai" in (spec.get("sources") or []):
        lines += ["", f"In pairwise majorities an AI label's vote weighs {spec['ai_weight']} against a person's 1."]
    if ai_policy:
        lines += ["", f"Policy: {ai_policy}"]
    if _built_elsewhere(snapshot):
        origin = ", ".join(
            f"{k.replace('_', ' ')} {spec[k]}" for k in ("feedback_job", "model", "constitution_version", "rounds") if spec.get(k)
        )
        lines += [
            "",
            f"These rows were not aggregated from annotations: they were written by `{spec['source']}`"
            + (f" ({origin})" if origin else "")
            + ", so every row is AI-written.",
        ]
    lines += [
        "",
        "## Versions",
        "",
        "Every annotation records the guideline and constitution version it was made under. Counts of the "
        "annotations read for this snapshot, as they stood when it was made, by version:",
        "",
        f"- guidelines: {_versions_text(facts['guideline_versions'], 'guideline')}",
        f"- constitution: {_versions_text(facts['constitution_versions'], 'constitution')}",
        "",
    ]
    return "\n".join(lines)


def snapshot_card_write(*, snapshot: DatasetSnapshot) -> Path:
    """Write the card beside the snapshot's data file (read-only, like the data) and return its path."""
    target = card_path(snapshot)
    text = snapshot_card_text(snapshot)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def snapshot_card(*, snapshot: DatasetSnapshot, data_name: str | None = None) -> str:
    """The card's text: the file beside the snapshot, written now if it is missing; made afresh for a download
    named `data_name` (its `configs` must name the file beside it)."""
    if data_name and data_name != Path(snapshot.path).name:
        return snapshot_card_text(snapshot, data_name=data_name)
    path = card_path(snapshot)
    if path.is_file():
        return path.read_text(encoding="utf-8")
    try:
        snapshot_card_write(snapshot=snapshot)
    except OSError:
        log.exception("snapshot %s: cannot write its card at %s", snapshot.pk, path)
        return snapshot_card_text(snapshot)
    return path.read_text(encoding="utf-8")


def snapshot_published(*, snapshot: DatasetSnapshot) -> None:
    """After a snapshot is recorded: write its card and report `snapshot.created` to the project's webhooks."""
    from django.urls import NoReverseMatch, reverse

    from .webhooks import webhook_emit

    try:
        snapshot_card_write(snapshot=snapshot)
    except OSError:
        # The snapshot stands without it; the card endpoint writes it when first asked.
        log.exception("snapshot %s: cannot write its card", snapshot.pk)
    kwargs = {"slug": snapshot.project.slug, "snapshot_id": snapshot.pk}
    try:
        links = {"download": reverse("api-snapshot-download", kwargs=kwargs), "card": reverse("api-snapshot-card", kwargs=kwargs)}
    except NoReverseMatch:
        links = {}
    data = {
        "snapshot": {
            "id": snapshot.pk,
            "format": snapshot.format,
            "file_format": snapshot.file_format,
            "row_count": snapshot.row_count,
            "sha256": snapshot.sha256,
            "size_bytes": snapshot.size_bytes,
            "created_at": snapshot.created_at.isoformat(),
            **links,
        }
    }
    webhook_emit(project=snapshot.project, event=WebhookEvent.SNAPSHOT_CREATED, key=f"snapshot.created:{snapshot.pk}", data=data)
