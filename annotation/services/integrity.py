"""Checking that dataset snapshots are still what was exported: the file's sha256 and size against the row.

A snapshot is immutable once written, and a training run names it by its sha256; a file edited, truncated,
replaced or lost afterwards is found here (`manage.py verify_snapshots`, and before every training run).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

from ..models import DatasetSnapshot, Project

CHUNK = 1 << 20


@dataclass(frozen=True)
class SnapshotCheck:
    snapshot_id: int
    path: str
    ok: bool
    problem: str = ""  # "missing", "size" or "sha256" when not ok
    expected_sha256: str = ""
    actual_sha256: str = ""
    expected_size: int = 0
    actual_size: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        if self.ok:
            return f"snapshot {self.snapshot_id}: ok ({self.expected_sha256[:12]}, {self.path})"
        if self.problem == "missing":
            return f"snapshot {self.snapshot_id}: file missing ({self.path})"
        return (f"snapshot {self.snapshot_id}: {self.path} changed since export: sha256 {self.actual_sha256[:12]} "
                f"instead of {self.expected_sha256[:12]}, {self.actual_size} bytes instead of {self.expected_size}")


def file_sha256(path: str | Path) -> tuple[str, int]:
    """sha256 and size of a file, read in chunks (memory stays flat whatever the size)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def snapshot_verify(*, snapshot: DatasetSnapshot) -> SnapshotCheck:
    """Hash the snapshot's file and compare it with the sha256 (and size) recorded when it was exported."""
    common = dict(snapshot_id=snapshot.pk, path=snapshot.path, expected_sha256=snapshot.sha256,
                  expected_size=snapshot.size_bytes)
    try:
        actual, size = file_sha256(snapshot.path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return SnapshotCheck(ok=False, problem="missing", **common)
    if actual != snapshot.sha256:
        return SnapshotCheck(ok=False, problem="sha256", actual_sha256=actual, actual_size=size, **common)
    # Rows recorded before sizes were kept have size 0; the hash alone decides for them.
    if snapshot.size_bytes and size != snapshot.size_bytes:
        return SnapshotCheck(ok=False, problem="size", actual_sha256=actual, actual_size=size, **common)
    return SnapshotCheck(ok=True, actual_sha256=actual, actual_size=size, **common)


def snapshots_verify(*, project: Project | None = None) -> list[SnapshotCheck]:
    """Every snapshot (of `project` when given), oldest first."""
    snapshots = DatasetSnapshot.objects.order_by("id")
    if project is not None:
        snapshots = snapshots.filter(project=project)
    return [snapshot_verify(snapshot=s) for s in snapshots.iterator(chunk_size=500)]
