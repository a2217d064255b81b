"""Importing Hugging Face `datasets` data: a `save_to_disk` directory, a Parquet file or an Arrow file.

Each row goes through the same per-record path as a JSON Lines import (`imports.data_import`): the
same formats and format detection, the same checks, all or nothing, idempotent. Problems are
reported by row number ("line 3" is the third row). Rows are read in batches, never the whole table.
A null value is taken as an absent key (Arrow gives every row every column of the table).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Iterator

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from common.errors import Invalid

from ..models import Project
from .imports import ImportReport, data_import

BATCH = 1000
DATASET_SUFFIXES = (".parquet", ".arrow", ".zip", ".tar", ".tar.gz", ".tgz")


def is_dataset_path(path: str | Path) -> bool:
    """A directory (save_to_disk) or a file this module reads, rather than JSON Lines."""
    path = Path(path)
    return path.is_dir() or path.name.lower().endswith(DATASET_SUFFIXES)


def _bad(message: str) -> Invalid:
    return Invalid(message, code="invalid_file", fields={"file": [message]})


def _lines(batches: Iterator[list[dict]]) -> Iterator[str]:
    for rows in batches:
        for row in rows:
            yield json.dumps({k: v for k, v in row.items() if v is not None}, ensure_ascii=False, default=str)


def _parquet_batches(path: Path) -> Iterator[list[dict]]:
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise _bad(f"{path.name}: not a readable Parquet file ({exc})") from None
    for batch in reader.iter_batches(batch_size=BATCH):
        yield batch.to_pylist()


def _arrow_batches(path: Path) -> Iterator[list[dict]]:
    import pyarrow as pa

    try:
        # save_to_disk writes the Arrow streaming format; the file format is tried second.
        source = pa.memory_map(str(path))
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i).to_pylist()
            return
    except (pa.ArrowInvalid, OSError) as exc:
        raise _bad(f"{path.name}: not a readable Arrow file ({exc})") from None
    for batch in reader:
        yield batch.to_pylist()


def _disk_batches(path: Path, split: str | None) -> Iterator[list[dict]]:
    from datasets import DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise _bad(f"{path.name}: not a directory written by Dataset.save_to_disk ({exc})") from None
    if isinstance(loaded, DatasetDict):
        names = list(loaded)
        if split is None:
            split = "train" if "train" in loaded else names[0] if len(names) == 1 else None
        if split not in loaded:
            raise Invalid(
                f"choose a split: {', '.join(names)}", code="invalid_split", fields={"split": [f"one of {', '.join(names)}"]}
            )
        loaded = loaded[split]
    elif split is not None and split != "train":
        raise Invalid("this dataset has no splits", code="invalid_split", fields={"split": ["this dataset has no splits"]})
    for start in range(0, loaded.num_rows, BATCH):
        yield loaded.data.slice(start, BATCH).to_pylist()


def _safe_extract(archive: Path, into: Path, max_bytes: int) -> Path:
    """Unpack a .zip or .tar(.gz) of a save_to_disk directory, refusing paths outside `into` and bombs."""
    name = archive.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            if sum(i.file_size for i in z.infolist()) > max_bytes:
                raise _bad(f"{archive.name}: unpacks to more than the import limit of {max_bytes:,} bytes")
            for info in z.infolist():
                if info.filename.startswith("/") or ".." in Path(info.filename).parts:
                    raise _bad(f"{archive.name}: unsafe path {info.filename!r}")
            z.extractall(into)
    else:
        with tarfile.open(archive) as t:
            if sum(m.size for m in t.getmembers()) > max_bytes:
                raise _bad(f"{archive.name}: unpacks to more than the import limit of {max_bytes:,} bytes")
            t.extractall(into, filter="data")  # refuses absolute paths, `..`, links out and devices
    # The dataset is the directory holding state.json or dataset_dict.json (the archive's top folder or its root).
    for marker in ("dataset_dict.json", "state.json"):
        found = sorted(into.rglob(marker), key=lambda p: len(p.parts))
        if found:
            return found[0].parent
    raise _bad(f"{archive.name}: no dataset inside (a folder written by Dataset.save_to_disk, zipped or tarred)")


@contextlib.contextmanager
def _rows(path: Path, split: str | None, max_bytes: int):
    name = path.name.lower()
    if path.is_dir():
        yield _disk_batches(path, split)
    elif name.endswith(".parquet"):
        yield _parquet_batches(path)
    elif name.endswith(".arrow"):
        yield _arrow_batches(path)
    elif name.endswith((".zip", ".tar", ".tar.gz", ".tgz")):
        tmp = Path(tempfile.mkdtemp(prefix="quorum-import-"))
        try:
            try:
                root = _safe_extract(path, tmp, max_bytes)
            except (zipfile.BadZipFile, tarfile.TarError) as exc:
                raise _bad(f"{path.name}: not a readable archive ({exc})") from None
            yield _disk_batches(root, split)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        raise _bad(f"{path.name}: expected a save_to_disk directory, .parquet, .arrow, .zip or .tar.gz")


def dataset_import(
    *,
    project: Project,
    path: str | Path,
    format: str | None = None,
    split: str | None = None,
    created_by: AbstractBaseUser | None = None,
    max_bytes: int | None = None,
) -> ImportReport:
    """Import a `datasets` directory, Parquet or Arrow file (or an archive of a directory) into `project`.

    Columns are the JSON Lines formats' keys (prompt/chosen/rejected, prompt/completion/label,
    prompt/completions/labels, messages, prompt): a snapshot exported by Quorum comes back as it was.
    """
    path = Path(path)
    max_bytes = settings.IMPORT_MAX_BYTES if max_bytes is None else max_bytes
    if not path.exists():
        raise _bad(f"{path}: no such file or directory")
    with _rows(path, split, max_bytes) as batches:
        return data_import(
            project=project, stream=_lines(batches), filename=path.name, format=format, created_by=created_by, max_bytes=max_bytes
        )


def dataset_upload_import(
    *,
    project: Project,
    upload: IO,
    filename: str,
    format: str | None = None,
    split: str | None = None,
    created_by: AbstractBaseUser | None = None,
) -> ImportReport:
    """The API's way in: an uploaded Parquet/Arrow file or a zipped/tarred save_to_disk directory."""
    if not filename.lower().endswith(DATASET_SUFFIXES):
        raise _bad(f"{filename}: expected a .parquet or .arrow file, or a save_to_disk folder as .zip or .tar.gz")
    size = getattr(upload, "size", None)
    if isinstance(size, int) and size > settings.IMPORT_MAX_BYTES:
        raise _bad(f"the file is larger than the import limit of {settings.IMPORT_MAX_BYTES:,} bytes")
    with tempfile.TemporaryDirectory(prefix="quorum-upload-") as tmp:
        local = Path(tmp) / Path(filename).name
        with local.open("wb") as out:
            shutil.copyfileobj(upload, out, 1024 * 1024)
        return dataset_import(project=project, path=local, format=format, split=split, created_by=created_by)
