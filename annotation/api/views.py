"""Thin API views: parse with an input serializer, call a service or selector, render."""

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.db.models import Prefetch
from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.authtoken.models import Token
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response as HttpResponse
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from quorum import login_limit

from .. import selectors, services
from ..errors import DomainError, Invalid, NotFound, TooLarge
from ..models import (
    Annotation,
    ConstitutionVersion,
    DatasetSnapshot,
    GuidelineVersion,
    Membership,
    Prompt,
    Response,
    Role,
    Task,
    TaskKind,
    TaskResponse,
    TaskStatus,
)
from . import serializers as s
from .errors import DomainAPIError
from .permissions import CanLabel, CanManageData, CanReadData, IsProjectAdmin, IsProjectMember, IsStaff


def _parse(serializer_class, request, **kwargs):
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


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


# --- auth ----------------------------------------------------------------------------------
class TokenView(APIView):
    """Exchange a username and password for an API token (rate-limited); DELETE revokes it."""

    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(request=s.TokenInput, responses={200: dict})
    def post(self, request):
        data = _parse(s.TokenInput, request)
        wait = login_limit.retry_after(request, data["username"])
        if wait:
            body = {"code": "too_many_failures", "detail": f"too many failed sign-ins; try again in {wait} s"}
            return HttpResponse(body, status=429, headers={"Retry-After": str(wait)})
        user = authenticate(request, username=data["username"], password=data["password"])
        if user is None:
            login_limit.failure_record(request, data["username"])
            return HttpResponse({"code": "bad_credentials", "detail": "wrong username or password"}, status=400)
        login_limit.success_record(request, data["username"])
        token, _ = Token.objects.get_or_create(user=user)
        return HttpResponse({"token": token.key})

    @extend_schema(request=None, responses={204: None})
    def delete(self, request):
        if not request.user.is_authenticated:
            return HttpResponse(status=401)
        Token.objects.filter(user=request.user).delete()
        return HttpResponse(status=204)

    def get_throttles(self):
        return super().get_throttles() if self.request.method == "POST" else []


# --- projects and members ------------------------------------------------------------------
class ProjectListView(ListModelMixin, GenericAPIView):
    serializer_class = s.ProjectOutput

    def get_queryset(self):
        return selectors.projects_for(user=self.request.user).select_related("current_guideline", "current_constitution")

    def get_permissions(self):
        return [IsAuthenticated(), IsStaff()] if self.request.method == "POST" else [IsAuthenticated()]

    def get(self, request):
        return self.list(request)

    @extend_schema(request=s.ProjectInput, responses={201: s.ProjectOutput})
    def post(self, request):
        project = services.project_create(created_by=request.user, **_parse(s.ProjectInput, request))
        return HttpResponse(s.ProjectOutput(project).data, status=201)


class ProjectDetailView(ProjectView):
    serializer_class = s.ProjectOutput
    permissions_by_method = {"*": [IsProjectMember], "PATCH": [IsProjectAdmin]}

    def get(self, request, slug):
        return HttpResponse(s.ProjectOutput(self.project).data)

    @extend_schema(request=s.ProjectUpdateInput, responses={200: s.ProjectOutput})
    def patch(self, request, slug):
        project = services.project_update(project=self.project, **_parse(s.ProjectUpdateInput, request, partial=True))
        return HttpResponse(s.ProjectOutput(project).data)


class MemberListView(ListModelMixin, ProjectView):
    serializer_class = s.MembershipOutput
    permissions_by_method = {"*": [IsProjectAdmin]}

    def get_queryset(self):
        return Membership.objects.filter(project=self.project).select_related("user").order_by("user__username")

    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=s.MemberInput, responses={201: s.MembershipOutput})
    def post(self, request, slug):
        data = _parse(s.MemberInput, request)
        user = get_user_model().objects.filter(username=data["username"]).first()
        if user is None:
            raise Invalid("no such user", fields={"username": ["no user with this name"]})
        membership = services.membership_set(project=self.project, user=user, role=data["role"])
        return HttpResponse(s.MembershipOutput(membership).data, status=201)


class MemberDetailView(ProjectView):
    serializer_class = s.MembershipOutput
    permissions_by_method = {"*": [IsProjectAdmin]}

    def _membership(self, user_id):
        membership = Membership.objects.select_related("user").filter(project=self.project, user_id=user_id).first()
        if membership is None:
            raise NotFound("no such member")
        return membership

    @extend_schema(request=s.MemberUpdateInput, responses={200: s.MembershipOutput})
    def patch(self, request, slug, user_id):
        membership = self._membership(user_id)
        data = _parse(s.MemberUpdateInput, request)
        membership = services.membership_set(project=self.project, user=membership.user, role=data["role"])
        return HttpResponse(s.MembershipOutput(membership).data)

    def delete(self, request, slug, user_id):
        services.membership_remove(project=self.project, user=self._membership(user_id).user)
        return HttpResponse(status=204)


# --- guidelines and constitutions ----------------------------------------------------------
class GuidelineListView(ListModelMixin, ProjectView):
    serializer_class = s.GuidelineOutput
    permissions_by_method = {"*": [IsProjectMember], "POST": [IsProjectAdmin]}

    def get_queryset(self):
        return GuidelineVersion.objects.filter(project=self.project).order_by("-number")

    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=s.GuidelineInput, responses={201: s.GuidelineOutput})
    def post(self, request, slug):
        version = services.guideline_version_create(
            project=self.project, created_by=request.user, **_parse(s.GuidelineInput, request)
        )
        return HttpResponse(s.GuidelineOutput(version).data, status=201)


class GuidelineDetailView(ProjectView):
    serializer_class = s.GuidelineOutput

    def get(self, request, slug, number):
        version = GuidelineVersion.objects.filter(project=self.project, number=number).first()
        if version is None:
            raise NotFound("no such guideline version")
        return HttpResponse(s.GuidelineOutput(version).data)


class ConstitutionListView(ListModelMixin, ProjectView):
    serializer_class = s.ConstitutionOutput
    permissions_by_method = {"*": [IsProjectMember], "POST": [IsProjectAdmin]}

    def get_queryset(self):
        return ConstitutionVersion.objects.filter(project=self.project).prefetch_related("principles").order_by("-number")

    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=s.ConstitutionInput, responses={201: s.ConstitutionOutput})
    def post(self, request, slug):
        data = _parse(s.ConstitutionInput, request)
        version = services.constitution_version_create(
            project=self.project, created_by=request.user, principles=data["principles"], note=data.get("note", "")
        )
        return HttpResponse(s.ConstitutionOutput(version).data, status=201)


class ConstitutionDetailView(ProjectView):
    serializer_class = s.ConstitutionOutput

    def get(self, request, slug, number):
        version = ConstitutionVersion.objects.filter(project=self.project, number=number).first()
        if version is None:
            raise NotFound("no such constitution version")
        return HttpResponse(s.ConstitutionOutput(version).data)


# --- prompts, responses, tasks -------------------------------------------------------------
class PromptListView(ListModelMixin, ProjectView):
    serializer_class = s.PromptOutput
    permissions_by_method = {"*": [CanReadData], "POST": [CanManageData]}

    def get_queryset(self):
        return Prompt.objects.filter(project=self.project).order_by("id")

    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=s.PromptInput, responses={201: s.PromptOutput})
    def post(self, request, slug):
        prompt = services.prompt_create(project=self.project, **_parse(s.PromptInput, request))
        return HttpResponse(s.PromptOutput(prompt).data, status=201)


class ResponseListView(ListModelMixin, ProjectView):
    serializer_class = s.ResponseOutput
    permissions_by_method = {"*": [CanReadData], "POST": [CanManageData]}

    def get_queryset(self):
        qs = Response.objects.filter(prompt__project=self.project).order_by("id")
        if "prompt" in self.request.query_params:
            qs = qs.filter(prompt_id=_int_param(self.request, "prompt"))
        return qs

    @extend_schema(parameters=[OpenApiParameter("prompt", int, description="only this prompt's responses")])
    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=s.ResponseInput, responses={201: s.ResponseOutput})
    def post(self, request, slug):
        data = _parse(s.ResponseInput, request)
        prompt = Prompt.objects.filter(project=self.project, pk=data.pop("prompt")).first()
        if prompt is None:
            raise Invalid("no such prompt in this project", fields={"prompt": ["no such prompt in this project"]})
        response = services.response_create(prompt=prompt, **data)
        return HttpResponse(s.ResponseOutput(response).data, status=201)


def _int_param(request, name: str) -> int:
    try:
        value = int(request.query_params[name])
    except (TypeError, ValueError):
        raise Invalid(f"{name} must be an integer", fields={name: ["must be an integer"]}) from None
    if not -(2**63) <= value < 2**63:  # past a 64-bit id: SQLite cannot even bind it
        raise Invalid(f"{name} is out of range", fields={name: ["out of range"]})
    return value


def _tasks(project):
    return Task.objects.filter(project=project).prefetch_related(
        Prefetch("task_responses", queryset=TaskResponse.objects.order_by("position").only("task_id", "response_id", "position"))
    )


class TaskListView(ListModelMixin, ProjectView):
    serializer_class = s.TaskOutput
    permissions_by_method = {"*": [CanReadData], "POST": [CanManageData]}

    def get_queryset(self):
        qs = _tasks(self.project).order_by("id")
        for name, choices in (("kind", TaskKind.values), ("status", TaskStatus.values)):
            value = self.request.query_params.get(name)
            if value is not None:
                if value not in choices:
                    raise Invalid(f"unknown {name}", fields={name: [f"one of {', '.join(choices)}"]})
                qs = qs.filter(**{name: value})
        return qs

    @extend_schema(parameters=[OpenApiParameter("kind", str, enum=TaskKind.values),
                               OpenApiParameter("status", str, enum=TaskStatus.values)])
    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=s.TaskInput, responses={201: s.TaskOutput})
    def post(self, request, slug):
        data = _parse(s.TaskInput, request)
        prompt = Prompt.objects.filter(project=self.project, pk=data.pop("prompt")).first()
        if prompt is None:
            raise Invalid("no such prompt in this project", fields={"prompt": ["no such prompt in this project"]})
        ids = data.pop("responses", [])
        found = {r.pk: r for r in Response.objects.filter(prompt=prompt, pk__in=ids)}
        if len(found) != len(set(ids)) or len(set(ids)) != len(ids):
            raise Invalid("responses must be distinct responses to this prompt", fields={"responses": ["unknown or repeated"]})
        task = services.task_create(project=self.project, prompt=prompt, responses=[found[i] for i in ids], **data)
        return HttpResponse(s.TaskOutput(_tasks(self.project).get(pk=task.pk)).data, status=201)


class TaskDetailView(ProjectView):
    serializer_class = s.TaskOutput
    permissions_by_method = {"*": [CanReadData]}

    def get(self, request, slug, task_id):
        task = _tasks(self.project).filter(pk=task_id).first()
        if task is None:
            raise NotFound("no such task")
        return HttpResponse(s.TaskOutput(task).data)


# --- the queue -----------------------------------------------------------------------------
class NextTaskView(ProjectView):
    """Lease the next task for the caller (or return the one they hold). 204 when none is left."""

    serializer_class = s.LeasedTaskOutput
    permissions_by_method = {"*": [CanLabel]}

    @extend_schema(request=None, responses={200: s.LeasedTaskOutput, 204: None})
    def post(self, request, slug):
        project = self.project
        assignment = services.task_next_for(annotator=request.user, project=project)
        if assignment is None:
            return HttpResponse(status=204)
        view = selectors.task_view(assignment=assignment)
        view["guideline_version"] = project.current_guideline.number if project.current_guideline_id else None
        return HttpResponse(view)


class _AssignmentAction(GenericAPIView):
    def assignment(self, request, assignment_id):
        return selectors.assignment_for(user=request.user, assignment_id=assignment_id)


class SubmitView(_AssignmentAction):
    serializer_class = s.AnnotationOutput

    @extend_schema(request=s.SubmitInput, responses={201: s.AnnotationOutput})
    def post(self, request, assignment_id):
        data = _parse(s.SubmitInput, request)
        annotation = services.annotation_submit(
            assignment=assignment_id,
            annotator=request.user,
            payload=data["payload"],
            client_id=data["client_id"],
            seconds_spent=data.get("seconds_spent"),
            rationale=data.get("rationale", ""),
        )
        return HttpResponse(
            {"id": annotation.pk, "task": annotation.task_id, "client_id": str(annotation.client_id), "payload": annotation.payload},
            status=201,
        )


class SkipView(_AssignmentAction):
    serializer_class = s.SkipInput

    @extend_schema(request=s.SkipInput, responses={200: dict})
    def post(self, request, assignment_id):
        data = _parse(s.SkipInput, request)
        assignment = services.assignment_skip(
            assignment=self.assignment(request, assignment_id), annotator=request.user, reason=data.get("reason", "")
        )
        return HttpResponse({"assignment": assignment.pk, "state": assignment.state})


# --- annotations ---------------------------------------------------------------------------
def _annotations():
    return Annotation.objects.select_related("author", "guideline_version", "constitution_version")


class AnnotationListView(ListModelMixin, ProjectView):
    serializer_class = s.AnnotationOutput

    def get_queryset(self):
        request = self.request
        qs = selectors.annotations_visible_to(user=request.user, project=self.project, role=self.project_role(request))
        qs = qs.select_related("author", "guideline_version", "constitution_version").order_by("id")
        if "task" in request.query_params:
            qs = qs.filter(task_id=_int_param(request, "task"))
        if request.query_params.get("current") in ("1", "true"):
            qs = qs.filter(is_current=True)
        return qs

    @extend_schema(parameters=[OpenApiParameter("task", int, description="only this task's annotations"),
                               OpenApiParameter("current", str, enum=["1", "true"], description="only current versions")])
    def get(self, request, slug):
        return self.list(request)


class AnnotationDetailView(GenericAPIView):
    serializer_class = s.AnnotationOutput

    def get(self, request, annotation_id):
        annotation, _ = selectors.annotation_for(user=request.user, annotation_id=annotation_id)
        return HttpResponse(s.AnnotationOutput(_annotations().get(pk=annotation.pk)).data)


class AnnotationReviseView(GenericAPIView):
    serializer_class = s.AnnotationOutput

    @extend_schema(request=s.ReviseInput, responses={201: s.AnnotationOutput})
    def post(self, request, annotation_id):
        annotation, role = selectors.annotation_for(user=request.user, annotation_id=annotation_id)
        data = _parse(s.ReviseInput, request)
        own = annotation.author_id == request.user.pk
        revision = services.annotation_revise(
            annotation=annotation,
            author=request.user,
            as_reviewer=not own and role in (Role.REVIEWER, Role.ADMIN),
            **data,
        )
        return HttpResponse(s.AnnotationOutput(_annotations().get(pk=revision.pk)).data, status=201)


# --- import and snapshots ------------------------------------------------------------------
class ImportView(ProjectView):
    permissions_by_method = {"*": [CanManageData]}
    serializer_class = s.ImportInput

    @extend_schema(request={"multipart/form-data": s.ImportInput}, responses={201: dict})
    def post(self, request, slug):
        from ..services.imports import data_import

        # Refuse an upload declared larger than the limit before reading (and spooling) its body.
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if declared.isascii() and declared.isdigit() and int(declared) > settings.IMPORT_MAX_BYTES + 64 * 1024:
            message = f"the upload is larger than the import limit of {settings.IMPORT_MAX_BYTES:,} bytes"
            raise TooLarge(message, code="too_large", fields={"file": [message]})
        data = _parse(s.ImportInput, request)
        upload = data["file"]
        report = data_import(
            project=self.project,
            stream=upload.file,
            filename=upload.name,
            format=data.get("format"),
            created_by=request.user,
        )
        return HttpResponse(report.as_dict(), status=201)


class SnapshotListView(ListModelMixin, ProjectView):
    serializer_class = s.SnapshotOutput
    permissions_by_method = {"*": [CanManageData]}

    def get_queryset(self):
        prefix = self.request.query_params.get("sha256_prefix")
        if prefix is None:
            return DatasetSnapshot.objects.filter(project=self.project).order_by("-id")
        try:
            return selectors.snapshots_with_sha256_prefix(project=self.project, prefix=prefix)
        except Invalid as exc:
            raise Invalid(exc.message, fields={"sha256_prefix": [exc.message]}) from None

    @extend_schema(parameters=[OpenApiParameter(
        "sha256_prefix", str, description="only snapshots whose sha256 starts with these 8 to 64 hex digits")])
    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=s.SnapshotInput, responses={201: s.SnapshotOutput})
    def post(self, request, slug):
        from ..services.exports import snapshot_create

        data = _parse(s.SnapshotInput, request)
        snapshot = snapshot_create(
            project=self.project,
            format=data["format"],
            file_format=data["file_format"],
            style=data["style"],
            sources=tuple(sorted(data["sources"])),
            created_by=request.user,
            aggregation=data["aggregation"],
        )
        return HttpResponse(s.SnapshotOutput(snapshot).data, status=201)


class SnapshotDetailView(ProjectView):
    serializer_class = s.SnapshotOutput
    permissions_by_method = {"*": [CanManageData]}

    def _snapshot(self, snapshot_id):
        snapshot = DatasetSnapshot.objects.filter(project=self.project, pk=snapshot_id).first()
        if snapshot is None:
            raise NotFound("no such snapshot")
        return snapshot

    def get(self, request, slug, snapshot_id):
        return HttpResponse(s.SnapshotOutput(self._snapshot(snapshot_id)).data)


class SnapshotDownloadView(SnapshotDetailView):
    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request, slug, snapshot_id):
        snapshot = self._snapshot(snapshot_id)
        filename = f"{self.project.slug}-{snapshot.format}-{snapshot.sha256[:12]}.{snapshot.file_format}"
        return FileResponse(open(snapshot.path, "rb"), as_attachment=True, filename=filename)
