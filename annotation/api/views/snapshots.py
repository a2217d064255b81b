"""Dataset snapshots: export one, list and read them, download the file."""

from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.mixins import ListModelMixin
from rest_framework.response import Response as HttpResponse

from common.errors import Invalid, NotFound
from common.permissions import CanManageData
from common.views import ProjectView, parse_input

from ... import selectors
from ...models import DatasetSnapshot
from .. import serializers as s


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
        from ...services.exports import snapshot_create

        data = parse_input(s.SnapshotInput, request)
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
