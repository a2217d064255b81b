"""Turn what users hold (lists of dicts, pandas DataFrames, `datasets.Dataset`, files) into records, and back."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def records(data: Any) -> list[dict]:
    """Rows as plain dicts from a list of dicts (or of strings, taken as single-turn prompts), a pandas
    DataFrame, a `datasets.Dataset`, or any iterable of mappings. Missing values (NaN, None) are dropped."""
    return list(iter_records(data))


def iter_records(data: Any) -> Iterator[dict]:
    """`records`, one row at a time (a `datasets.Dataset` is read row by row from its Arrow files)."""
    if data is None:
        return
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas.DataFrame
        rows: Iterable = data.to_dict(orient="records")
    elif isinstance(data, dict):
        raise TypeError("pass a list of rows, a DataFrame or a Dataset, not one dict")
    else:
        rows = data  # lists, generators, datasets.Dataset (iterating yields dicts)
    for row in rows:
        if isinstance(row, str):
            yield {"prompt": row}
        elif hasattr(row, "items"):
            yield {str(k): _plain(v) for k, v in row.items() if not _missing(v)}
        else:
            raise TypeError(f"a row must be a mapping or a string, not {type(row).__name__}")


def _missing(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, float) and math.isnan(value)


def _plain(value: Any) -> Any:
    """numpy scalars and arrays (what pandas hands back) as plain Python values, for JSON."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _plain(value.tolist())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def read_file(path: str | Path) -> list[dict]:
    """Rows from a JSON Lines, JSON (a list), CSV or Parquet file, or a `save_to_disk` directory."""
    path = Path(path)
    if path.is_dir():
        import datasets

        return records(datasets.load_from_disk(str(path)))
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return records(pq.read_table(path).to_pylist())
    if suffix == ".csv":
        import csv

        with path.open(newline="", encoding="utf-8") as f:
            return records(csv.DictReader(f))
    text = path.read_text(encoding="utf-8")
    if suffix == ".json" and text.lstrip().startswith("["):
        return records(json.loads(text))
    return list(iter_jsonl(text.splitlines(), source=str(path)))


def iter_jsonl(lines: Iterable[str], source: str = "input") -> Iterator[dict]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{source} line {number}: not JSON ({exc.msg})") from None
        if isinstance(row, str):
            row = {"prompt": row}
        if not isinstance(row, dict):
            raise ValueError(f"{source} line {number}: expected an object")
        yield row


def jsonl_bytes(rows: Iterable[dict]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in rows)


def chunks(rows: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of at most `size` items, without reading ahead of the one being filled."""
    batch: list = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
