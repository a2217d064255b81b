"""API for webhooks (admins manage them; engineers read them and their deliveries), dataset cards
and imports of `datasets` data (Parquet, Arrow, a zipped save_to_disk directory)."""

from django.http import HttpResponse as PlainResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.mixins import ListModelMixin
from rest_framework.response import Response as HttpResponse

from common.errors import Invalid, NotFound
from common.permissions import CanManageData, IsProjectAdmin
from common.views import ProjectView, parse_input

from ...models import DatasetSnapshot, DeliveryStatus, Webhook, WebhookDelivery
from ...services import webhooks as hooks
from ...services.cards import snapshot_card
from ...services.dataset_imports import dataset_upload_import
from ...services.imports import IMPORT_FORMATS


# --- serializers ---------------------------------------------------------------------------
class WebhookInput(serializers.Serializer):
    url = serializers.URLField(max_length=500)
    events = serializers.ListField(child=serializers.ChoiceField(choices=hooks.EVENTS), allow_empty=False)
    secret = serializers.CharField(min_length=16, max_length=200, required=False, trim_whitespace=False)
    active = serializers.BooleanField(default=True)
    description = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class WebhookUpdateInput(serializers.Serializer):
    url = serializers.URLField(max_length=500, required=False)
    events = serializers.ListField(child=serializers.ChoiceField(choices=hooks.EVENTS), allow_empty=False, required=False)
    active = serializers.BooleanField(required=False)
    description = serializers.CharField(max_length=300, required=False, allow_blank=True)
    rotate_secret = serializers.BooleanField(required=False, default=False)


class WebhookOutput(serializers.ModelSerializer):
    secret_hint = serializers.SerializerMethodField()

    class Meta:
        model = Webhook
        fields = ["id", "url", "events", "active", "description", "secret_hint", "created_at"]

    def get_secret_hint(self, obj) -> str:
        return "…" + obj.secret[-4:]


class WebhookWithSecretOutput(WebhookOutput):
    """Only in the answer to a create or a secret rotation: the secret is not shown again."""

    class Meta(WebhookOutput.Meta):
        fields = [*WebhookOutput.Meta.fields, "secret"]


class DeliveryOutput(serializers.ModelSerializer):
    # Plain text in the schema: an enum here would share the name "Status" with the jobs' status enum.
    status = serializers.CharField(read_only=True, help_text="pending, retrying, succeeded or failed")

    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "webhook", "event", "key", "status", "attempts", "response_code", "last_error",
            "created_at", "last_attempt_at", "next_attempt_at", "finished_at", "payload",
        ]  # fmt: skip


class DatasetImportInput(serializers.Serializer):
    file = serializers.FileField(help_text="A .parquet or .arrow file, or a save_to_disk folder as .zip or .tar.gz")
    format = serializers.ChoiceField(choices=list(IMPORT_FORMATS), required=False, allow_null=True)
    split = serializers.CharField(max_length=100, required=False, allow_null=True)


# --- webhooks ------------------------------------------------------------------------------
class WebhookListView(ListModelMixin, ProjectView):
    serializer_class = WebhookOutput
    permissions_by_method = {"*": [CanManageData], "POST": [IsProjectAdmin]}

    def get_queryset(self):
        return hooks.webhooks_of(project=self.project)

    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=WebhookInput, responses={201: WebhookWithSecretOutput})
    def post(self, request, slug):
        webhook = hooks.webhook_create(project=self.project, created_by=request.user, **parse_input(WebhookInput, request))
        return HttpResponse(WebhookWithSecretOutput(webhook).data, status=201)


class _OneWebhook(ProjectView):
    def _webhook(self, webhook_id) -> Webhook:
        webhook = hooks.webhooks_of(project=self.project).filter(pk=webhook_id).first()
        if webhook is None:
            raise NotFound("no such webhook")
        return webhook


class WebhookDetailView(_OneWebhook):
    serializer_class = WebhookOutput
    permissions_by_method = {"*": [CanManageData], "PATCH": [IsProjectAdmin], "DELETE": [IsProjectAdmin]}

    def get(self, request, slug, webhook_id):
        return HttpResponse(WebhookOutput(self._webhook(webhook_id)).data)

    # The secret is in the answer only when the update rotated it; the documented shape is the one without it.
    @extend_schema(request=WebhookUpdateInput, responses={200: WebhookOutput})
    def patch(self, request, slug, webhook_id):
        data = parse_input(WebhookUpdateInput, request)
        webhook = hooks.webhook_update(webhook=self._webhook(webhook_id), **data)
        out = WebhookWithSecretOutput if data.get("rotate_secret") else WebhookOutput
        return HttpResponse(out(webhook).data)

    def delete(self, request, slug, webhook_id):
        hooks.webhook_delete(webhook=self._webhook(webhook_id))
        return HttpResponse(status=204)


class WebhookPingView(_OneWebhook):
    serializer_class = DeliveryOutput
    permissions_by_method = {"*": [IsProjectAdmin]}

    @extend_schema(request=None, responses={201: DeliveryOutput})
    def post(self, request, slug, webhook_id):
        delivery = hooks.webhook_ping(webhook=self._webhook(webhook_id))
        return HttpResponse(DeliveryOutput(delivery).data, status=201)


class DeliveryListView(ListModelMixin, ProjectView):
    """The project's deliveries, newest first; ?webhook=ID and ?status=pending|retrying|succeeded|failed filter."""

    serializer_class = DeliveryOutput
    permissions_by_method = {"*": [CanManageData]}

    def get_queryset(self):
        params = self.request.query_params
        webhook_id = params.get("webhook")
        if webhook_id is not None and not (webhook_id.isascii() and webhook_id.isdigit() and len(webhook_id) <= 18):
            raise Invalid("webhook must be an integer", fields={"webhook": ["must be an integer"]})
        status = params.get("status")
        if status and status not in DeliveryStatus.values:
            raise Invalid("unknown status", fields={"status": [f"one of {', '.join(DeliveryStatus.values)}"]})
        return hooks.deliveries_of(project=self.project, webhook_id=int(webhook_id) if webhook_id else None, status=status)

    def get(self, request, slug):
        return self.list(request)


class DeliveryRedeliverView(ProjectView):
    serializer_class = DeliveryOutput
    permissions_by_method = {"*": [IsProjectAdmin]}

    @extend_schema(request=None, responses={200: DeliveryOutput})
    def post(self, request, slug, delivery_id):
        delivery = hooks.deliveries_of(project=self.project).filter(pk=delivery_id).first()
        if delivery is None:
            raise NotFound("no such delivery")
        return HttpResponse(DeliveryOutput(hooks.webhook_delivery_redeliver(delivery=delivery)).data)


# --- dataset cards and datasets imports ----------------------------------------------------
class SnapshotCardView(ProjectView):
    """The snapshot's dataset card (README.md, Hugging Face style), as markdown."""

    permissions_by_method = {"*": [CanManageData]}

    @extend_schema(
        parameters=[OpenApiParameter("data_file", str, description="the name the data file was saved under, for the "
                                     "card's `configs` (default: the server's, data.<ext>)")],
        responses={(200, "text/markdown"): str},
    )
    def get(self, request, slug, snapshot_id):
        snapshot = DatasetSnapshot.objects.filter(project=self.project, pk=snapshot_id).select_related("project", "created_by").first()
        if snapshot is None:
            raise NotFound("no such snapshot")
        data_name = request.query_params.get("data_file") or None
        if data_name is not None and (len(data_name) > 255 or data_name in (".", "..") or not data_name.isprintable()
                                      or "/" in data_name or "\\" in data_name):
            raise Invalid("data_file is a file name, without folders", fields={"data_file": ["a plain file name"]})
        card = snapshot_card(snapshot=snapshot, data_name=data_name)
        response = PlainResponse(card, content_type="text/markdown; charset=utf-8")
        response["Content-Disposition"] = f'inline; filename="{self.project.slug}-{snapshot.sha256[:12]}-README.md"'
        return response


class DatasetImportView(ProjectView):
    permissions_by_method = {"*": [CanManageData]}
    serializer_class = DatasetImportInput

    @extend_schema(
        request={"multipart/form-data": DatasetImportInput},
        responses={201: inline_serializer("DatasetImportReport", {"format": serializers.CharField(), "records": serializers.IntegerField()})},
    )
    def post(self, request, slug):
        data = parse_input(DatasetImportInput, request)
        upload = data["file"]
        report = dataset_upload_import(
            project=self.project,
            upload=upload,
            filename=upload.name,
            format=data.get("format"),
            split=data.get("split"),
            created_by=request.user,
        )
        return HttpResponse(report.as_dict(), status=201)
