"""Importing JSON Lines files of prompts and labelled data, the way public datasets ship them.

One file is one transaction: it is read line by line (never whole; a gzip file, told by its first
bytes, is decompressed as it is read), every line is checked, and
on any problem nothing is written and the problems come back numbered by line. Importing the
same file again creates nothing new: prompts are keyed by their content hash, responses, tasks
and annotations by keys derived from their content.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import uuid
import zlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import IO, Iterator

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import F, JSONField, Max, UUIDField, Value
from django.db.models.constants import OnConflict
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Greatest
from django.utils import timezone

from common.errors import Invalid

from ..hashing import canonical_json
from ..models import (
    Annotation,
    AnnotationSource,
    Project,
    Prompt,
    Response,
    ResponseOrigin,
    Task,
    TaskKind,
    TaskResponse,
    TaskStatus,
)
from ..payloads import validate_payload
from ..steps import split_steps
from .content import prompt_hash, task_shape, validate_messages

IMPORT_FORMATS = ("prompts", "preference", "unpaired", "stepwise", "sft", "prm800k")
BATCH_ROWS = 500
MAX_ERRORS = 50
EXTERNAL_ID_MAX = 200
# Namespace for the client ids of imported annotations (uuid5 over project, task key and payload).
IMPORT_NAMESPACE = uuid.UUID("6f1d7c3e-6a52-5a8e-9a43-2b7d0f3c9e11")

HH_ASSISTANT = "\n\nAssistant:"
_HH_MARKER = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


# --- Anthropic HH-style transcripts ------------------------------------------------------------


def looks_like_transcript(text: str) -> bool:
    """True for "\\n\\nHuman: ...\\n\\nAssistant: ..." text, the way Anthropic HH-RLHF ships."""
    return text.startswith(("\n\nHuman:", "Human:")) or ("\n\nHuman:" in text and HH_ASSISTANT in text)


def transcript_to_messages(text: str) -> list[dict]:
    """Human -> user, Assistant -> assistant; a trailing empty "Assistant:" (the cue) is dropped.

    Text before the first marker, if any, becomes a system message. Contents are stripped; the
    exact string is kept elsewhere by the caller when it must be reproduced.
    """
    parts = _HH_MARKER.split(text)
    messages = []
    lead = parts[0].strip()
    if lead:
        messages.append({"role": "system", "content": lead})
    for i in range(1, len(parts), 2):
        messages.append({"role": _HH_ROLES[parts[i]], "content": parts[i + 1].strip()})
    if len(messages) > 1 and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages


def standard_prompt_text(messages: list[dict]) -> str:
    """The prompt as one string: a lone user turn as it is, anything else as an HH transcript."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    out = []
    for m in messages:
        if m["role"] == "system":
            out.append(m["content"])
        elif m["role"] == "user":
            out.append(f"\n\nHuman: {m['content']}")
        else:
            out.append(f"\n\nAssistant: {m['content']}")
    out.append(HH_ASSISTANT)
    return "".join(out)


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def split_implicit_prompt(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two transcripts into (prompt, chosen completion, rejected completion).

    The prompt is their longest common prefix, backed off to the end of the last "\\n\\nAssistant:"
    inside it, so the prompt ends with the assistant cue and each completion is the rest exactly
    (" Sure..."). Without such a cue, TRL's rule applies: the common prefix, less a final space.
    """
    n = _common_prefix_len(chosen, rejected)
    cue = chosen.rfind(HH_ASSISTANT, 0, n)
    if cue >= 0:
        cut = cue + len(HH_ASSISTANT)
    else:
        cut = n - 1 if n > 0 and chosen[n - 1] == " " else n
    return chosen[:cut], chosen[cut:], rejected[cut:]


# --- The report -------------------------------------------------------------------------------


@dataclass
class ImportReport:
    format: str
    filename: str = ""
    lines: int = 0
    records: int = 0
    prompts_created: int = 0
    prompts_existing: int = 0
    responses_created: int = 0
    responses_existing: int = 0
    tasks_created: int = 0
    tasks_existing: int = 0
    annotations_created: int = 0
    annotations_existing: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        parts = [f"{self.filename or 'file'}: {self.format}, {self.lines} lines, {self.records} records"]
        for name in ("prompts", "responses", "tasks", "annotations"):
            created, existing = getattr(self, f"{name}_created"), getattr(self, f"{name}_existing")
            parts.append(f"{name}: {created} created, {existing} already there")
        return "\n".join(parts)


# --- Parsing one record -----------------------------------------------------------------------


class _LineError(Exception):
    pass


@dataclass(slots=True)
class _Row:
    line: int
    messages: list
    phash: str
    text: str | None  # the prompt exactly as given, when it came as a string that must be reproduced
    external_id: str = ""
    record_id: str = ""  # the id of this record, unique within a file ("" when it has none)
    metadata: dict = field(default_factory=dict)
    tags: list = field(default_factory=list)
    kind: str | None = None
    responses: list = field(default_factory=list)  # [(content, steps | None, dedupe_key)]
    payload: dict | None = None
    values: dict = field(default_factory=dict)  # source values kept for a lossless round trip


def _kind_of(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _prompt_field(value, name: str = "prompt") -> tuple[list, str | None]:
    """(messages, exact text to keep or None) from a string or a message list."""
    if isinstance(value, str):
        if not value.strip():
            raise _LineError(f"{name} is empty")
        if looks_like_transcript(value):
            messages = transcript_to_messages(value)
            if not messages:
                raise _LineError(f"{name} has no turns")
            return messages, value
        return [{"role": "user", "content": value}], None
    if isinstance(value, list):
        return _messages(value, name), None
    raise _LineError(f"{name} must be text or a list of messages, not {_kind_of(value)}")


def _messages(value, name: str) -> list:
    try:
        return validate_messages(value, field=name)
    except Invalid as e:
        raise _LineError(e.message) from None


def _completion(value, name: str) -> str:
    if isinstance(value, str):
        return value
    if (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], dict)
        and value[0].get("role") == "assistant"
        and isinstance(value[0].get("content"), str)
    ):
        return value[0]["content"]
    raise _LineError(f'{name} must be text or one assistant message [{{"role": "assistant", "content": ...}}]')


def _number(obj: dict, key: str) -> float | int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _LineError(f"{key} must be a number, not {_kind_of(value)}")
    return value


def _common(obj: dict) -> dict:
    """external_id, record_id, metadata and tags, accepted on every format.

    "external_id" and "id" name the record; "prompt_id" and "question_id" name its prompt, which several
    records may share (several answers judged per question), so only the first two must be unique in a file.
    """
    key = next((k for k in ("external_id", "id", "prompt_id", "question_id") if obj.get(k) is not None), None)
    external_id = "" if key is None else obj[key]
    if isinstance(external_id, bool) or not isinstance(external_id, (str, int)):
        raise _LineError("id must be text or an integer")
    external_id = str(external_id)
    if len(external_id) > EXTERNAL_ID_MAX:
        raise _LineError(f"id is longer than {EXTERNAL_ID_MAX} characters")
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _LineError("metadata must be an object")
    tags = obj.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise _LineError("tags must be a list of text")
    record_id = external_id if key in ("external_id", "id") else ""
    return {"external_id": external_id, "record_id": record_id, "metadata": dict(metadata), "tags": tags}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _response_key(content: str) -> str:
    return "import:" + _sha(content)


def _steps_key(steps: list[str]) -> str:
    return "import-steps:" + _sha(canonical_json(steps))


def _row(line: int, messages: list, text: str | None, common: dict, **rest) -> _Row:
    metadata = common["metadata"]
    if text is not None:
        metadata.setdefault("text", text)
    return _Row(line=line, messages=messages, phash=prompt_hash(messages), text=text, **common, **rest)


def _payload(kind: str, payload: dict, n_responses: int, n_steps: int = 0) -> dict:
    try:
        return validate_payload(kind, payload, n_responses=n_responses, n_steps=n_steps)
    except Invalid as e:
        raise _LineError(e.message) from None


def _shape(kind: str, steps_per_response: list[list]) -> None:
    try:
        task_shape(kind, [SimpleNamespace(steps=s) for s in steps_per_response])
    except Invalid as e:
        raise _LineError(e.message) from None


def _parse_prompts(obj: dict, line: int) -> _Row:
    common = _common(obj)
    common["record_id"] = common["external_id"]  # the record is the prompt
    if "turns" in obj or ("question_id" in obj and "text" in obj):
        # MT-Bench / Vicuna-bench: the first turn is the user message, the rest is kept.
        turns = obj.get("turns") if "turns" in obj else [obj.get("text")]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise _LineError("turns must be a non-empty list of text")
        if not turns[0].strip():
            raise _LineError("the first turn is empty")
        meta = common["metadata"]
        for key in ("category", "reference"):
            if obj.get(key) is not None:
                meta[key] = obj[key]
        if len(turns) > 1:
            meta["turns"] = turns[1:]
        return _row(line, [{"role": "user", "content": turns[0]}], None, common)
    if "messages" in obj:
        messages = _messages(obj["messages"], "messages")
        text = None
    elif "prompt" in obj:
        messages, text = _prompt_field(obj["prompt"])
    else:
        raise _LineError('a prompt needs "prompt", "messages" or "turns"')
    if messages[-1]["role"] == "assistant":
        raise _LineError("the conversation ends with an assistant turn; import demonstrations with format sft")
    return _row(line, messages, text, common)


def _strength(margin, score_chosen, score_rejected) -> int | None:
    """Annotation strength (1..3) from a margin, else from the score difference; None when neither is stated."""
    value = margin if margin is not None else (
        score_chosen - score_rejected if score_chosen is not None and score_rejected is not None else None
    )
    if value is None:
        return None
    if value < 1.5:
        return 1
    return 2 if value < 2.5 else 3


def _parse_preference(obj: dict, line: int) -> _Row:
    for key in ("chosen", "rejected"):
        if key not in obj:
            raise _LineError(f'"{key}" is missing')
    chosen, rejected = obj["chosen"], obj["rejected"]
    common = _common(obj)
    if obj.get("prompt") is None:
        if isinstance(chosen, str) and isinstance(rejected, str):
            text, chosen_text, rejected_text = split_implicit_prompt(chosen, rejected)
            if not text.strip():
                raise _LineError("chosen and rejected share no prompt; give one in \"prompt\"")
            # A transcript keeps its exact text; a plain string is its own single user turn.
            messages, text = _prompt_field(text)
        elif isinstance(chosen, list) and isinstance(rejected, list):
            chosen_messages = _messages(chosen, "chosen")
            rejected_messages = _messages(rejected, "rejected")
            if (
                chosen_messages[-1]["role"] != "assistant"
                or rejected_messages[-1]["role"] != "assistant"
                or chosen_messages[:-1] != rejected_messages[:-1]
                or len(chosen_messages) < 2
            ):
                raise _LineError("chosen and rejected must be the same conversation up to a final assistant turn")
            messages, text = chosen_messages[:-1], None
            chosen_text, rejected_text = chosen_messages[-1]["content"], rejected_messages[-1]["content"]
        else:
            raise _LineError("chosen and rejected must both be text or both be message lists")
    else:
        messages, text = _prompt_field(obj["prompt"])
        chosen_text = _completion(chosen, "chosen")
        rejected_text = _completion(rejected, "rejected")
    margin = _number(obj, "margin")
    score_chosen = _number(obj, "score_chosen")
    score_rejected = _number(obj, "score_rejected")
    values = {k: v for k, v in (("margin", margin), ("score_chosen", score_chosen), ("score_rejected", score_rejected)) if v is not None}
    payload = _payload(TaskKind.PAIRWISE, {"choice": "A", "strength": _strength(margin, score_chosen, score_rejected)}, 2)
    return _row(
        line,
        messages,
        text,
        common,
        kind=TaskKind.PAIRWISE,
        responses=[(chosen_text, None, _response_key(chosen_text)), (rejected_text, None, _response_key(rejected_text))],
        payload=payload,
        values=values,
    )


def _parse_unpaired(obj: dict, line: int) -> _Row:
    for key in ("prompt", "completion", "label"):
        if key not in obj:
            raise _LineError(f'"{key}" is missing')
    messages, text = _prompt_field(obj["prompt"])
    completion = _completion(obj["completion"], "completion")
    label = obj["label"]
    if not isinstance(label, bool):
        raise _LineError(f"label must be true or false, not {_kind_of(label)}")
    payload = _payload(TaskKind.RATING, {"thumb": "up" if label else "down"}, 1)
    return _row(
        line,
        messages,
        text,
        _common(obj),
        kind=TaskKind.RATING,
        responses=[(completion, None, _response_key(completion))],
        payload=payload,
    )


def _parse_stepwise(obj: dict, line: int) -> _Row:
    for key in ("prompt", "completions", "labels"):
        if key not in obj:
            raise _LineError(f'"{key}" is missing')
    messages, text = _prompt_field(obj["prompt"])
    steps, labels = obj["completions"], obj["labels"]
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise _LineError("completions must be a non-empty list of text, one per step")
    if not isinstance(labels, list) or len(labels) != len(steps):
        raise _LineError(f"labels must be a list of {len(steps)} labels, one per step")
    if all(isinstance(x, bool) for x in labels):
        label_type, ints = "bool", [1 if x else -1 for x in labels]
    elif all(isinstance(x, int) and not isinstance(x, bool) and x in (-1, 0, 1) for x in labels):
        label_type, ints = "int", list(labels)
    else:
        raise _LineError("labels must be all true/false, or all -1, 0 or 1")
    _shape(TaskKind.STEPS, [steps])
    payload = _payload(TaskKind.STEPS, {"labels": ints}, 1, n_steps=len(steps))
    return _row(
        line,
        messages,
        text,
        _common(obj),
        kind=TaskKind.STEPS,
        responses=[("\n".join(steps), list(steps), _steps_key(steps))],
        payload=payload,
        values={"label_type": label_type},
    )


# --- PRM800K (openai/prm800k), as it ships --------------------------------------------------------


def _prm_step(step, number: int) -> tuple[str, int] | None:
    """(text, label) of the step the solution went on with: the chosen completion, else the labeler's own
    (human_completion), else the first completion (where labelling stopped). A null rating is a step the
    labeler wrote, which PRM800K counts as +1. None for a step with nothing to label (no completion, none
    chosen, none written: where a labeler gave up)."""
    where = f"label.steps[{number}]"
    if not isinstance(step, dict):
        raise _LineError(f"{where} must be an object")
    completions = step.get("completions")
    chosen, human = step.get("chosen_completion"), step.get("human_completion")
    if completions in (None, []) and chosen is None and human is None:
        return None
    if not isinstance(completions, list) or (not completions and human is None):
        raise _LineError(f"{where}.completions must be a non-empty list")
    for i, c in enumerate(completions):
        if not isinstance(c, dict) or not isinstance(c.get("text"), str):
            raise _LineError(f"{where}.completions[{i}] needs a text")
        if c.get("rating") not in (-1, 0, 1, None) or isinstance(c.get("rating"), bool):
            raise _LineError(f"{where}.completions[{i}].rating must be -1, 0, 1 or null")
    if chosen is not None:
        if not isinstance(chosen, int) or isinstance(chosen, bool) or not 0 <= chosen < len(completions):
            raise _LineError(f"{where}.chosen_completion must be an index into its {len(completions)} completions, or null")
        picked = completions[chosen]
    elif human is not None:
        picked = {"text": human, "rating": 1} if isinstance(human, str) else human
        if not isinstance(picked, dict) or not isinstance(picked.get("text"), str):
            raise _LineError(f"{where}.human_completion must be text, an object with a text, or null")
    else:
        picked = completions[0]
    rating = picked.get("rating")
    return picked["text"], 1 if rating is None else rating


def _prm_steps(label) -> list[tuple[str, int]]:
    """(text, label) of each labelled step; none where the record labels nothing (a bad problem, a labeler
    who gave up before the first step, no label at all). Steps with nothing to label may only trail."""
    if label is None:
        return []
    if not isinstance(label, dict):
        raise _LineError(f"label must be an object or null, not {_kind_of(label)}")
    steps = label.get("steps")
    if steps is None:
        return []
    if not isinstance(steps, list):
        raise _LineError(f"label.steps must be a list or null, not {_kind_of(steps)}")
    parsed = [_prm_step(step, i) for i, step in enumerate(steps)]
    labelled = len(parsed)
    while labelled and parsed[labelled - 1] is None:
        labelled -= 1
    if None in parsed[:labelled]:
        empty = parsed.index(None)
        raise _LineError(f"label.steps[{empty}] has no completion but a later step has one")
    return parsed[:labelled]


def _parse_prm800k(obj: dict, line: int) -> _Row:
    """One labelled solution: the problem is the prompt, the solution as it went on is one response split
    into its steps, the step ratings are one steps annotation; the rest of the record (alternatives,
    ratings, flags, labeler, times) is kept as it came in the annotation's import details. A record that
    labels no step still keeps its record, on a steps task with no steps (which nothing serves or counts)."""
    question = obj.get("question")
    if not isinstance(question, dict) or not isinstance(question.get("problem"), str) or not question["problem"].strip():
        raise _LineError("question.problem must be non-empty text")
    labelled = _prm_steps(obj.get("label"))
    steps, labels = [text for text, _ in labelled], [rating for _, rating in labelled]
    if steps:
        _shape(TaskKind.STEPS, [steps])
    common = _common(obj)
    if question.get("ground_truth_answer") is not None:
        common["metadata"].setdefault("ground_truth_answer", question["ground_truth_answer"])
    record = {**obj, "question": {k: v for k, v in question.items() if k != "problem"}}
    return _row(
        line,
        [{"role": "user", "content": question["problem"]}],
        None,
        common,
        kind=TaskKind.STEPS,
        responses=[("\n".join(steps), steps, _steps_key(steps))],
        payload=_payload(TaskKind.STEPS, {"labels": labels}, 1, n_steps=len(steps)),
        values={"record": record},
    )


def prm800k_record(raw_row: dict) -> dict:
    """The PRM800K record an imported annotation came from, from its row of a raw export."""
    record = json.loads(raw_row["details"])["import"]["record"]
    return {**record, "question": {"problem": raw_row["prompt"][0]["content"], **record["question"]}}


def _parse_sft(obj: dict, line: int) -> _Row:
    if "messages" not in obj and {"prompt", "completion"} <= set(obj):
        # TRL's prompt-completion form of the same thing.
        messages, text = _prompt_field(obj["prompt"])
        completion = _completion(obj["completion"], "completion")
        payload = _payload(TaskKind.DEMONSTRATION, {"text": completion}, 0)
        return _row(line, messages, text, _common(obj), kind=TaskKind.DEMONSTRATION, payload=payload)
    if "messages" not in obj:
        raise _LineError('"messages" (or "prompt" and "completion") is missing')
    messages = _messages(obj["messages"], "messages")
    if messages[-1]["role"] != "assistant":
        raise _LineError("the conversation must end with an assistant turn (the demonstration)")
    if len(messages) < 2:
        raise _LineError("the conversation needs a prompt before the assistant turn")
    payload = _payload(TaskKind.DEMONSTRATION, {"text": messages[-1]["content"]}, 0)
    return _row(line, messages[:-1], None, _common(obj), kind=TaskKind.DEMONSTRATION, payload=payload)


_PARSERS = {
    "prompts": _parse_prompts,
    "preference": _parse_preference,
    "unpaired": _parse_unpaired,
    "stepwise": _parse_stepwise,
    "sft": _parse_sft,
    "prm800k": _parse_prm800k,
}


def detect_format(obj: dict) -> str | None:
    keys = set(obj)
    if {"question", "label"} <= keys and (
        isinstance(obj["label"], dict) and "steps" in obj["label"]
        or isinstance(obj["question"], dict) and "problem" in obj["question"]
    ):
        return "prm800k"
    if {"chosen", "rejected"} <= keys:
        return "preference"
    if {"completions", "labels"} <= keys:
        return "stepwise"
    if {"completion", "label"} <= keys:
        return "unpaired"
    if {"prompt", "completion"} <= keys:
        return "sft"
    if "turns" in keys or "question_id" in keys:
        return "prompts"
    if "messages" in keys:
        messages = obj["messages"]
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
            return "sft"
        return "prompts"
    if "prompt" in keys:
        return "prompts"
    return None


# --- Reading ----------------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


# Magic bytes of the compressed formats public datasets ship in; only gzip is read as it is.
COMPRESSED_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"PK\x03\x04", "zip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


def compression_of(head: bytes) -> str | None:
    """The compressed format these first bytes announce (gzip, zip, bz2, xz, zstd), or None."""
    return next((name for magic, name in COMPRESSED_MAGIC if head.startswith(magic)), None)


def _decompressed(stream):
    """A gzip stream (told by its first bytes, whatever the file is called) read through gzip;
    any other stream as it is. Only a seekable binary stream is looked at."""
    if not (hasattr(stream, "read") and getattr(stream, "seekable", lambda: False)()):
        return stream
    start = stream.tell()
    head = stream.read(2)
    stream.seek(start)
    if isinstance(head, bytes) and compression_of(head) == "gzip":
        return gzip.GzipFile(fileobj=stream, mode="rb")
    return stream


def _read_lines(stream: IO, max_bytes: int) -> Iterator[tuple[int, bytes | str]]:
    """(line number, raw line) without holding more than one line; stops past max_bytes."""
    total = 0
    number = 0
    readline = getattr(stream, "readline", None)
    if readline is None:  # a plain iterable of lines
        for raw in stream:
            total += len(raw)
            if total > max_bytes:
                raise _TooLarge
            number += 1
            yield number, raw
        return
    while True:
        # At most what is left under the cap, plus one byte to notice the overflow.
        raw = readline(max_bytes - total + 1)
        if not raw:
            return
        total += len(raw)
        if total > max_bytes:
            raise _TooLarge
        number += 1
        yield number, raw


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _bad_text(value) -> str | None:
    """Why a decoded value cannot be stored (NUL characters, unpaired surrogates), or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character (\\u0000), which cannot be stored"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains an unpaired surrogate (\\ud800-\\udfff escape), which is not text"
        return None
    if isinstance(value, list):
        return next((r for r in map(_bad_text, value) if r), None)
    if isinstance(value, dict):
        return next((r for r in map(_bad_text, [*value.keys(), *value.values()]) if r), None)
    return None


def _text_chars(value) -> int:
    """Characters of text in a decoded value (its strings, nested ones included)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(map(_text_chars, value))
    if isinstance(value, dict):
        return sum(map(_text_chars, value.values()))
    return 0


def _check_field_sizes(obj: dict, max_chars: int) -> None:
    for name, value in obj.items():
        chars = _text_chars(value)
        if chars > max_chars:
            raise _LineError(
                f"field {name!r} has {chars:,} characters of text, more than the limit of {max_chars:,} per field "
                "(QUORUM_IMPORT_MAX_FIELD_CHARS)"
            )


def _decode(number: int, raw, max_field_chars: int) -> dict | None:
    """The record on this line, None for a blank line; raises _LineError."""
    if number == 1 and isinstance(raw, bytes):
        compression = compression_of(raw)
        if compression is not None:
            raise _LineError(
                f"this file is {compression}-compressed; decompress it first"
                + ("" if compression == "gzip" else ", or compress it with gzip (a .jsonl.gz file is read as it is)")
            )
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _LineError(
                f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1}); save the file as UTF-8"
            ) from None
    else:
        text = raw
    if number == 1 and text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        return None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        detail = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)
        raise _LineError(f"not valid JSON ({detail})") from None
    except RecursionError:
        raise _LineError("JSON nested too deeply to read") from None
    if not isinstance(obj, dict):
        raise _LineError(f"expected a JSON object {{...}}, got {_kind_of(obj)}")
    if "\\u" in text:
        problem = _bad_text(obj)
        if problem:
            raise _LineError(problem)
    if len(text) > max_field_chars:  # no field can hold more text than its line
        _check_field_sizes(obj, max_field_chars)
    return obj


# --- Writing a batch --------------------------------------------------------------------------


def _insert_ignore(model, rows: list[dict], returning: tuple[str, ...] = ()) -> list[tuple] | None:
    """INSERT ... ON CONFLICT DO NOTHING of many rows (all dicts with the same keys).

    Returns the `returning` columns of the rows actually inserted, or None where the database
    cannot say (then the caller looks them up). Building model instances and letting bulk_create
    prepare every value costs several times the insert itself, so values are prepared per column
    here; columns a row does not name get the field's default, as bulk_create would give them.
    """
    if not rows:
        return []
    ops = connection.ops
    postgres = connection.vendor == "postgresql"
    given = set(rows[0])
    now = timezone.now()
    fields, preparers = [], []
    for f in model._meta.concrete_fields:
        if f.primary_key:
            continue
        fields.append(f)
        if f.attname in given:
            if postgres:
                prepare = str if isinstance(f, UUIDField) else None
            elif isinstance(f, JSONField):
                prepare = lambda v, e=f.encoder: ops.adapt_json_value(v, e)  # noqa: E731
            elif isinstance(f, UUIDField):
                prepare = lambda v, f=f: f.get_db_prep_value(v, connection)  # noqa: E731
            else:
                prepare = None
            preparers.append((f.attname, prepare))
        else:
            value = now if getattr(f, "auto_now_add", False) or getattr(f, "auto_now", False) else f.get_default()
            if postgres:
                value = value.isoformat() if hasattr(value, "isoformat") else str(value) if isinstance(value, uuid.UUID) else value
            else:
                value = f.get_db_prep_save(value, connection)
            preparers.append((None, value))
    table = ops.quote_name(model._meta.db_table)
    columns = ", ".join(ops.quote_name(f.column) for f in fields)
    tail = " " + ops.on_conflict_suffix_sql([], OnConflict.IGNORE, None, None)
    can_return = bool(returning) and connection.features.can_return_rows_from_bulk_insert
    if can_return:
        tail += " RETURNING " + ", ".join(ops.quote_name(model._meta.get_field(c).column) for c in returning)

    def values(row):
        return [
            (prep(row[name]) if prep is not None else row[name]) if name is not None else prep
            for name, prep in preparers
        ]

    inserted: list[tuple] = []
    with connection.cursor() as cursor:
        if postgres:
            # The whole batch as one JSON document turned into rows by the server: one short
            # statement and one string to send, instead of thousands of placeholders to parse,
            # quote and plan.
            names = [f.column for f in fields]
            document = json.dumps([dict(zip(names, values(row))) for row in rows], ensure_ascii=False)
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM json_populate_recordset(NULL::{table}, %s::json){tail}",
                [document],
            )
            if can_return:
                inserted = cursor.fetchall()
        else:
            head = f"{ops.insert_statement(on_conflict=OnConflict.IGNORE)} {table} ({columns}) VALUES "
            placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
            per_statement = max(1, min(500, (connection.features.max_query_params or 999) // len(fields)))
            for start in range(0, len(rows), per_statement):
                chunk = rows[start : start + per_statement]
                params = [v for row in chunk for v in values(row)]
                cursor.execute(head + ", ".join([placeholder] * len(chunk)) + tail, params)
                if can_return:
                    inserted.extend(cursor.fetchall())
    return inserted if can_return else None


def _by_key(model, scope: str, scope_id: int, key: str, keys: list[str], extra: str = "") -> list[tuple]:
    """(key, id[, extra]) of the rows of `model` with scope = scope_id and key in keys.

    On PostgreSQL each key is looked up on its own (a LATERAL subquery the planner cannot merge),
    which always takes the unique (scope, key) index: as one IN list, a planner whose statistics
    predate the rows this import added may instead read every row of the project per batch.
    """
    if connection.vendor != "postgresql":
        columns = [key, "id"] + ([KeyTextTransform(extra, "metadata")] if extra else [])
        return list(model.objects.filter(**{scope: scope_id, f"{key}__in": keys}).values_list(*columns))
    q = connection.ops.quote_name
    extra_sql = f", r.metadata ->> '{extra}'" if extra else ""
    sql = (
        f"SELECT k.value, r.id{extra_sql} FROM json_array_elements_text(%s::json) AS k "
        f"CROSS JOIN LATERAL (SELECT id, metadata FROM {q(model._meta.db_table)} "
        f"WHERE {q(scope)} = %s AND {q(key)} = k.value LIMIT 1) AS r"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(keys), scope_id])
        return cursor.fetchall()


def _keyed_payload(payload: dict) -> dict:
    """The payload as imported annotations' client ids were made from when a strength not stated was
    stored as 1: a file imported then finds its annotations again instead of adding new ones."""
    if payload.get("choice") in ("A", "B") and payload.get("strength") is None:
        return {**payload, "strength": 1}
    return payload


def _imported_status(kind: str, n_steps: int) -> str:
    """Imported tasks come labelled, so complete; a steps task with no steps (a PRM800K record that labels
    nothing) is archived: it only keeps its record, and no queue or judge has anything to ask of it."""
    if kind == TaskKind.STEPS and n_steps == 0:
        return TaskStatus.ARCHIVED.value
    return TaskStatus.COMPLETE.value


class _Writer:
    """Writes batches of parsed rows with a few set-based queries per batch, not per row."""

    def __init__(self, *, project: Project, report: ImportReport, filename: str, created_by):
        self.project = project
        self.report = report
        self.filename = filename
        self.by = getattr(created_by, "username", None)
        # Rows with ids above these were written by this import (or at the same moment): a later
        # batch meeting them again does not count them as already there.
        self.marks = {
            model: model.objects.aggregate(m=Max("id"))["m"] or 0 for model in (Prompt, Response, Task, Annotation)
        }

    def write(self, rows: list[_Row]) -> None:
        prompts = self._prompts(rows)
        labelled = [r for r in rows if r.kind is not None]
        if not labelled:
            return
        responses = self._responses(labelled, prompts)
        self._tasks_and_annotations(labelled, prompts, responses)

    def _tally(self, model, name: str, found: dict, created: int) -> None:
        mark = self.marks[model]
        report = self.report
        setattr(report, f"{name}_existing", getattr(report, f"{name}_existing") + sum(1 for i in found.values() if i <= mark))
        setattr(report, f"{name}_created", getattr(report, f"{name}_created") + created)

    def _prompts(self, rows: list[_Row]) -> dict[str, tuple[int, str]]:
        """content hash -> (prompt id, the prompt string a standard-style export gives)."""
        first: dict[str, _Row] = {}
        for r in rows:
            first.setdefault(r.phash, r)

        def lookup(hashes):
            return {h: (pk, text) for h, pk, text in _by_key(Prompt, "project_id", self.project.pk, "content_hash", hashes, "text")}

        found = lookup(list(first))
        missing = [h for h in first if h not in found]
        known = dict(found)
        created = 0
        if missing:
            inserted = _insert_ignore(
                Prompt,
                [
                    {
                        "project_id": self.project.pk,
                        "messages": first[h].messages,
                        "external_id": first[h].external_id,
                        "content_hash": h,
                        "metadata": first[h].metadata,
                        "tags": first[h].tags,
                    }
                    for h in missing
                ],
                returning=("content_hash", "id"),
            )
            if inserted is not None:
                created = len(inserted)
                known.update((h, (pk, first[h].metadata.get("text"))) for h, pk in inserted)
            if len(known) < len(first):
                after = lookup([h for h in missing if h not in known])
                if inserted is None:
                    created = sum(1 for pk, _ in after.values() if pk > self.marks[Prompt])
                known.update(after)
        self._tally(Prompt, "prompts", {h: v[0] for h, v in found.items()}, created)
        return {
            h: (pk, text if text is not None else standard_prompt_text(first[h].messages)) for h, (pk, text) in known.items()
        }

    def _responses(self, rows: list[_Row], prompts: dict) -> dict[tuple[int, str], int]:
        """(prompt id, dedupe key) -> response id."""
        wanted: dict[tuple[int, str], tuple[str, list | None]] = {}
        for r in rows:
            pid = prompts[r.phash][0]
            for content, steps, key in r.responses:
                wanted.setdefault((pid, key), (content, steps))
        pids = {p for p, _ in wanted}

        def lookup():
            # By prompt only: IN lists on both columns make SQLite probe every combination.
            return {
                (p, k): pk
                for p, k, pk in Response.objects.filter(prompt_id__in=pids, dedupe_key__startswith="import").values_list(
                    "prompt_id", "dedupe_key", "id"
                )
                if (p, k) in wanted
            }

        found = lookup()
        missing = [pk for pk in wanted if pk not in found]
        known = dict(found)
        created = 0
        if missing:
            inserted = _insert_ignore(
                Response,
                [
                    {
                        "prompt_id": p,
                        "content": wanted[(p, k)][0],
                        "steps": wanted[(p, k)][1] if wanted[(p, k)][1] is not None else split_steps(wanted[(p, k)][0]),
                        "origin": ResponseOrigin.IMPORTED.value,
                        "dedupe_key": k,
                    }
                    for p, k in missing
                ],
                returning=("prompt_id", "dedupe_key", "id"),
            )
            if inserted is not None:
                created = len(inserted)
                known.update(((p, k), pk) for p, k, pk in inserted)
            if len(known) < len(wanted):
                after = lookup()
                if inserted is None:
                    created = sum(1 for m in missing if after[m] > self.marks[Response])
                known = after
        self._tally(Response, "responses", found, created)
        return known

    def _tasks_and_annotations(self, rows: list[_Row], prompts: dict, responses: dict) -> None:
        project = self.project
        tasks: dict[str, dict] = {}  # task key -> what to create
        annotations: dict[uuid.UUID, tuple[str, _Row]] = {}
        for r in rows:
            pid, standard_text = prompts[r.phash]
            # The row spells the prompt differently from the stored prompt with the same
            # conversation: keep the row's own string on the task.
            override = r.text if r.text is not None and r.text != standard_text else None
            response_keys = [key for _, _, key in r.responses]
            key = "import:" + _sha("\n".join([r.kind, r.phash, *response_keys, override or ""]))
            if key not in tasks:
                n_steps = len(r.responses[0][1]) if r.kind == TaskKind.STEPS else 0
                tasks[key] = {
                    "kind": r.kind,
                    "prompt_id": pid,
                    "responses": [responses[(pid, k)] for k in response_keys],
                    "n_steps": n_steps,
                    "status": _imported_status(r.kind, n_steps),
                    "metadata": {"prompt_text": override} if override is not None else {},
                }
            client_id = uuid.uuid5(
                IMPORT_NAMESPACE,
                "\n".join([str(project.pk), key, canonical_json(_keyed_payload(r.payload)), canonical_json(r.values)]),
            )
            annotations.setdefault(client_id, (key, r))

        existing_clients = set(
            Annotation.objects.filter(client_id__in=list(annotations)).values_list("client_id", flat=True)
        )
        new_per_key: dict[str, int] = defaultdict(int)
        for client_id, (key, _) in annotations.items():
            if client_id not in existing_clients:
                new_per_key[key] += 1

        def lookup(keys):
            return dict(_by_key(Task, "project_id", project.pk, "dedupe_key", keys))

        found = lookup(list(tasks))
        missing = [k for k in tasks if k not in found]
        task_ids = dict(found)
        fresh: list[str] = []  # tasks this batch created, which still need their responses linked
        if missing:
            inserted = _insert_ignore(
                Task,
                [
                    {
                        "project_id": project.pk,
                        "kind": tasks[k]["kind"],
                        "prompt_id": tasks[k]["prompt_id"],
                        "n_responses": len(tasks[k]["responses"]),
                        "n_steps": tasks[k]["n_steps"],
                        "required": max(1, new_per_key.get(k, 0)),
                        "open_slots": 0,
                        "submitted_count": new_per_key.get(k, 0),
                        "status": tasks[k]["status"],
                        "dedupe_key": k,
                        "metadata": tasks[k]["metadata"],
                    }
                    for k in missing
                ],
                returning=("dedupe_key", "id"),
            )
            if inserted is not None:
                task_ids.update(inserted)
                fresh = [k for k, _ in inserted]
            if len(task_ids) < len(tasks):
                after = lookup([k for k in missing if k not in task_ids])
                if inserted is None:
                    fresh = [k for k, pk in after.items() if pk > self.marks[Task]]
                task_ids.update(after)
            _insert_ignore(
                TaskResponse,
                [
                    {"task_id": task_ids[k], "response_id": rid, "position": i}
                    for k in fresh
                    for i, rid in enumerate(tasks[k]["responses"])
                ],
            )
        self._tally(Task, "tasks", found, len(fresh))

        # Tasks that were already there and receive more annotations: raise their counts.
        grow: dict[tuple[int, str], list[int]] = defaultdict(list)
        for k, n in new_per_key.items():
            if k in found:
                grow[(n, tasks[k]["status"])].append(found[k])
        for (n, status), ids in grow.items():
            Task.objects.filter(id__in=ids).update(
                submitted_count=F("submitted_count") + n,
                required=Greatest(F("required"), F("submitted_count") + n),
                open_slots=Value(0),
                status=status,
            )

        new_annotations = []
        for client_id, (key, r) in annotations.items():
            if client_id in existing_clients:
                continue
            details = {"file": self.filename, "line": r.line, "format": self.report.format, **r.values}
            if self.by:
                details["by"] = self.by
            new_annotations.append(
                {
                    "task_id": task_ids[key],
                    "kind": r.kind,
                    "source": AnnotationSource.HUMAN.value,
                    "payload": r.payload,
                    "shown_order": list(range(len(r.responses))),
                    "details": {"import": details},
                    "client_id": client_id,
                }
            )
        _insert_ignore(Annotation, new_annotations)
        self.report.annotations_created += len(new_annotations)
        self.report.annotations_existing += len(existing_clients)


# --- The service ------------------------------------------------------------------------------


def data_import(
    *,
    project: Project,
    stream: IO,
    filename: str = "",
    format: str | None = None,
    created_by: AbstractBaseUser | None = None,
    max_bytes: int | None = None,
    max_field_chars: int | None = None,
) -> ImportReport:
    """Import one JSON Lines file into `project`, all or nothing.

    The format is told from the keys of the first record unless `format` names it. On any
    problem nothing is written and Invalid is raised with fields={"file": ["line 3: ...", ...]}.
    """
    if format is not None and format not in IMPORT_FORMATS:
        raise Invalid(
            f"unknown import format {format!r}", fields={"format": [f"must be one of {', '.join(IMPORT_FORMATS)}"]}
        )
    max_bytes = settings.IMPORT_MAX_BYTES if max_bytes is None else max_bytes
    max_field_chars = settings.IMPORT_MAX_FIELD_CHARS if max_field_chars is None else max_field_chars
    filename = filename or str(getattr(stream, "name", "") or "").rsplit("/", 1)[-1]
    too_large = f"the file is larger than the import limit of {max_bytes:,} bytes"
    size = getattr(stream, "size", None)
    if isinstance(size, int) and size > max_bytes:
        raise Invalid(too_large, code="too_large", fields={"file": [too_large]})

    stream = _decompressed(stream)
    report = ImportReport(format=format or "", filename=filename)
    errors: list[str] = []
    first_line_of: dict[str, int] = {}  # record id -> the line it was first seen on
    parse = _PARSERS.get(format) if format else None
    batch: list[_Row] = []
    with transaction.atomic():
        seqscan = None
        if connection.vendor == "postgresql":
            # The file is written inside one transaction, so the planner's statistics lag behind
            # tables that grow by the import itself and it may pick sequential scans for the
            # per-batch lookups, which are all by indexed keys: keep it on the indexes (put back
            # below, for a caller whose transaction goes on; a rollback puts it back by itself).
            with connection.cursor() as cursor:
                cursor.execute("SHOW enable_seqscan")
                seqscan = cursor.fetchone()[0]
                cursor.execute("SET LOCAL enable_seqscan = off")
        writer = _Writer(project=project, report=report, filename=filename, created_by=created_by)
        try:
            for number, raw in _read_lines(stream, max_bytes):
                report.lines = number
                try:
                    obj = _decode(number, raw, max_field_chars)
                    if obj is None:
                        continue
                    if parse is None:
                        detected = detect_format(obj)
                        if detected is None:
                            errors.append(
                                f"line {number}: cannot tell the format from the keys {sorted(obj)}; "
                                f"name it ({', '.join(IMPORT_FORMATS)})"
                            )
                            break
                        report.format, parse = detected, _PARSERS[detected]
                    row = parse(obj, number)
                    if row.record_id:
                        first = first_line_of.setdefault(row.record_id, number)
                        if first != number:
                            raise _LineError(f"id {row.record_id!r} is also the id of line {first}; ids must be unique in a file")
                except _LineError as e:
                    errors.append(f"line {number}: {e}")
                    if len(errors) >= MAX_ERRORS:
                        errors.append(f"stopped reading after {MAX_ERRORS} problems")
                        break
                    continue
                report.records += 1
                if errors:
                    continue  # keep checking, stop writing
                batch.append(row)
                if len(batch) >= BATCH_ROWS:
                    writer.write(batch)
                    batch = []
        except _TooLarge:
            errors.append(too_large)
            raise Invalid(too_large, code="too_large", fields={"file": errors}) from None
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            errors.append(f"line {report.lines + 1}: the gzip data is damaged or cut short ({e})")
        if not errors and report.records == 0:
            errors.append("the file has no records")
        if errors:
            shown = "; ".join(errors[:3]) + ("; ..." if len(errors) > 3 else "")
            raise Invalid(f"{filename or 'the file'}: nothing was imported: {shown}", code="invalid_file", fields={"file": errors})
        if batch:
            writer.write(batch)
        if seqscan is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('enable_seqscan', %s, true)", [seqscan])
    return report
