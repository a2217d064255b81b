"""Imports of prompts, responses and labels from an uploaded file (the formats docs/formats.md describes)."""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response as HttpResponse

from common.errors import TooLarge
from common.permissions import CanManageData
from common.views import ProjectView, parse_input

from .. import serializers as s


class ImportView(ProjectView):
    permissions_by_method = {"*": [CanManageData]}
    serializer_class = s.ImportInput

    @extend_schema(request={"multipart/form-data": s.ImportInput}, responses={201: dict})
    def post(self, request, slug):
        from ...services.imports import data_import

        # Refuse an upload declared larger than the limit before reading (and spooling) its body.
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if declared.isascii() and declared.isdigit() and int(declared) > settings.IMPORT_MAX_BYTES + 64 * 1024:
            message = f"the upload is larger than the import limit of {settings.IMPORT_MAX_BYTES:,} bytes"
            raise TooLarge(message, code="too_large", fields={"file": [message]})
        data = parse_input(s.ImportInput, request)
        upload = data["file"]
        report = data_import(
            project=self.project,
            stream=upload.file,
            filename=upload.name,
            format=data.get("format"),
            created_by=request.user,
        )
        return HttpResponse(report.as_dict(), status=201)
