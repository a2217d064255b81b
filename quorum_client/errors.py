"""Exceptions raised by the client. Every refusal from the server carries its message and field errors."""

from __future__ import annotations

from typing import Any


class QuorumError(Exception):
    """Base class of everything the client raises on purpose."""


class ConnectionFailed(QuorumError):
    """The server could not be reached (refused, DNS, TLS) or did not answer in time, after the retries."""


class ChecksumMismatch(QuorumError):
    """A downloaded snapshot does not hash to the sha256 the server recorded for it."""


class AmbiguousSnapshot(QuorumError):
    """A sha256 prefix that starts the sha256 of different snapshots; `candidates` holds the newest of each."""

    def __init__(self, prefix: str, candidates: list):
        self.prefix, self.candidates = prefix, candidates
        named = ", ".join(f"{c.sha256[:16]} (id {c.id}, {c.format}, {c.created_at})" for c in candidates)
        super().__init__(f"sha256 prefix {prefix} is ambiguous: it matches {named}; give more digits")


class ApiError(QuorumError):
    """The server answered with an error status.

    Attributes: `status` (HTTP status), `code` (the server's stable error code, e.g. "invalid", "not_found"),
    `message` (the server's explanation), `fields` (field name -> list of messages, for bad input), `body`
    (the decoded response body).
    """

    def __init__(self, status: int, message: str, *, code: str = "", fields: dict[str, Any] | None = None,
                 body: Any = None, method: str = "", url: str = ""):
        self.status, self.message, self.code = status, message, code
        self.fields = fields or {}
        self.body, self.method, self.url = body, method, url
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"{self.status}: {self.message}"
        for name, problems in self.fields.items():
            for problem in _flatten(problems):
                line = f"{name}: {problem}"
                if line not in self.message:
                    text += f"\n  {line}"
        return text


class BadRequest(ApiError):
    """400 or 422: the input was refused; see `fields`."""


class Unauthorized(ApiError):
    """401: no token, or a token the server does not know (run `quorum login`)."""


class Forbidden(ApiError):
    """403: the token is valid but the caller's role in the project does not allow this."""


class NotFound(ApiError):
    """404: no such object, or one in a project the caller is not a member of."""


class Conflict(ApiError):
    """409: the request clashes with the current state (e.g. cancelling a finished run)."""


class RateLimited(ApiError):
    """429: too many requests (logins are rate-limited)."""


class ServerError(ApiError):
    """5xx: the server failed; idempotent requests were retried before this was raised."""


_BY_STATUS = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 422: BadRequest,
              429: RateLimited}


def _flatten(problems: Any, prefix: str = "") -> list[str]:
    """Field errors come as lists of strings, or nested (lists of objects for list inputs): make lines."""
    if isinstance(problems, str):
        return [prefix + problems]
    if isinstance(problems, list):
        if all(isinstance(p, str) for p in problems):
            return [prefix + p for p in problems]
        out = []
        for i, p in enumerate(problems):
            if p:
                out.extend(_flatten(p, f"{prefix}[{i}] "))
        return out
    if isinstance(problems, dict):
        out = []
        for k, v in problems.items():
            out.extend(_flatten(v, f"{prefix}{k}: "))
        return out
    return [prefix + str(problems)]


def error_from_response(status: int, body: Any, *, method: str = "", url: str = "", text: str = "") -> ApiError:
    """Build the exception for an error response. Quorum answers {"code", "detail", "fields"}; DRF's own
    validation answers {"field": ["message"]}; a proxy may answer HTML."""
    code, fields = "", {}
    if isinstance(body, dict):
        code = str(body.get("code") or "")
        if "detail" in body:
            message = str(body["detail"])
            fields = body.get("fields") or {}
        else:
            fields = body
            lines = [line for name, problems in body.items() for line in _flatten(problems, f"{name}: ")]
            message = "invalid input: " + "; ".join(lines) if lines else "invalid input"
    elif isinstance(body, list):
        message = "; ".join(_flatten(body)) or "request refused"
    else:
        message = (text or "").strip()[:500] or _REASONS.get(status, "error")
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(status, message, code=code, fields=fields if isinstance(fields, dict) else {}, body=body,
               method=method, url=url)


_REASONS = {500: "internal server error", 502: "bad gateway", 503: "service unavailable", 504: "gateway timeout"}
