"""Domain errors raised by services; the API maps each to a status code and a stable `code`."""


class DomainError(Exception):
    status = 409
    code = "conflict"

    def __init__(self, message: str, *, code: str | None = None, fields: dict | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or {}


class Conflict(DomainError):
    status = 409


class NotAllowed(DomainError):
    status = 403
    code = "forbidden"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Invalid(DomainError):
    """Bad input found past the serializer (payload shape per task kind, import lines)."""

    status = 400
    code = "invalid"


class TooLarge(DomainError):
    """An upload declared larger than the limit (refused before its body is read)."""

    status = 413
    code = "too_large"
