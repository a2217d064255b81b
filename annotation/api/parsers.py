"""Request parsers refusing what PostgreSQL cannot store (NUL, unpaired surrogates) and JSON nested too deeply to
read, with a 400 instead of a database error or a RecursionError (a 500). Form and multipart fields too: a NUL in
a name looked up by a SlugRelatedField reached PostgreSQL.

DRF's own CharField already refuses both characters; JSON-valued fields (settings, sampling, hyperparameters,
payloads, metadata...) take any text, and PostgreSQL's jsonb rejects `\\u0000` while neither jsonb nor text can
hold a lone surrogate.
"""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import DataAndFiles, FormParser, JSONParser, MultiPartParser


def _bad_text(value: str) -> str | None:
    if "\x00" in value:
        return "text may not contain NUL (\\u0000) characters"
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        return "text may not contain unpaired surrogate characters"
    return None


def unstorable(data) -> str | None:
    """Why some key or string in this parsed JSON cannot be stored, or None. Iterative: depth costs no stack."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            problem = _bad_text(value)
            if problem:
                return problem
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
        problem = unstorable(data)
        if problem:
            raise ParseError(f"JSON parse error - {problem}")
        return data


def _form_problem(data) -> str | None:
    return unstorable([v for key in data for v in [key, *data.getlist(key)]])


class StrictFormParser(FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        problem = _form_problem(data)
        if problem:
            raise ParseError(f"Form parse error - {problem}")
        return data


class StrictMultiPartParser(MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        problem = _form_problem(parsed.data) or unstorable([f.name for f in parsed.files.values()])
        if problem:
            raise ParseError(f"Multipart form parse error - {problem}")
        return DataAndFiles(parsed.data, parsed.files)
