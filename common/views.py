"""What every API view shares: domain errors mapped to responses with a stable code (never a 500 for bad
input), input parsing, and the base of everything under /projects/{slug}/."""

from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotation import selectors

from .errors import DomainError, Invalid
from .permissions import IsProjectMember


def exception_handler(exc, context):
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
