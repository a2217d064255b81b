"""The JSON request parser, refusing what PostgreSQL cannot store (NUL, unpaired surrogates) and JSON nested too
deeply to read, with a 400 instead of a database error or a RecursionError (a 500).

DRF's own CharField already refuses both characters; JSON-valued fields (settings, sampling, hyperparameters,
payloads, metadata...) take any text, and PostgreSQL's jsonb rejects `\\u0000` while neither jsonb nor text can
hold a lone surrogate.
"""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


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
