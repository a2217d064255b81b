"""Map domain errors to HTTP responses with a stable code; never a 500 for bad input."""

from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..errors import DomainError


class DomainAPIError(APIException):
    """A domain error raised where DRF only expects its own exceptions: permission checks. The browsable API
    checks them again to decide which forms to draw and lets anything else through as a 500."""

    def __init__(self, error: DomainError):
        super().__init__(error.message, error.code)
        self.status_code = error.status
        self.error = error


def exception_handler(exc, context):
    if isinstance(exc, DomainAPIError):
        exc = exc.error
    if isinstance(exc, DomainError):
        body = {"code": exc.code, "detail": exc.message}
        if exc.fields:
            body["fields"] = exc.fields
        return Response(body, status=exc.status)
    return drf_exception_handler(exc, context)
