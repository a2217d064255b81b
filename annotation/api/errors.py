"""Map domain errors to HTTP responses with a stable code; never a 500 for bad input."""

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..errors import DomainError


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        body = {"code": exc.code, "detail": exc.message}
        if exc.fields:
            body["fields"] = exc.fields
        return Response(body, status=exc.status)
    return drf_exception_handler(exc, context)
