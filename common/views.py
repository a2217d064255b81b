"""What every API view shares: domain errors mapped to responses with a stable code (never a 500 for bad
input), input parsing, and the base of everything under /projects/{slug}/."""

from rest_framework.exceptions import APIException
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotation import selectors

from .errors import DomainError, Invalid
from .permissions import IsProjectMember


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


def parse_input(serializer_class, request, **kwargs):
    """The request body validated by `serializer_class` (a 400 naming the fields otherwise)."""
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def int_param(request, name: str) -> int:
    try:
        value = int(request.query_params[name])
    except (TypeError, ValueError):
        raise Invalid(f"{name} must be an integer", fields={name: ["must be an integer"]}) from None
    if not -(2**63) <= value < 2**63:  # past a 64-bit id: SQLite cannot even bind it
        raise Invalid(f"{name} is out of range", fields={name: ["out of range"]})
    return value


class ProjectView(GenericAPIView):
    """Base for everything under /projects/{slug}/: resolves the project and the caller's role once."""

    # method -> permission classes; "*" is the fallback.
    permissions_by_method: dict = {"*": [IsProjectMember]}

    def get_permissions(self):
        classes = self.permissions_by_method.get(self.request.method, self.permissions_by_method["*"])
        return [IsAuthenticated(), *(c() for c in classes)]

    def check_permissions(self, request):
        # Resolving the project raises NotFound for a non-member: as a DRF exception it stays a 404 everywhere.
        try:
            super().check_permissions(request)
        except DomainError as exc:
            raise DomainAPIError(exc) from exc

    def project_role(self, request) -> str:
        if not hasattr(request, "_quorum_role"):
            request._quorum_project, request._quorum_role = selectors.project_with_role(
                user=request.user, slug=self.kwargs["slug"]
            )
        return request._quorum_role

    @property
    def project(self):
        self.project_role(self.request)
        return self.request._quorum_project
