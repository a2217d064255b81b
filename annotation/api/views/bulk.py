"""Bulk writes for scripts and the Python client: many responses, or many tasks from existing responses, in one
request and one transaction (all or nothing). An item's optional `key` makes it idempotent: sending it again
returns the row written the first time, so a client may retry a request whose answer it lost."""

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response as HttpResponse

from common.errors import Invalid
from common.permissions import CanManageData
from common.views import ProjectView, parse_input

from ... import services
from ...models import Prompt, Response
from .. import serializers as s
from .tasks import tasks_of

MAX_ITEMS = 1000
KEY_PREFIX = "client:"


class _Keyed(serializers.Serializer):
    key = serializers.CharField(required=False, allow_blank=False, max_length=100,
                                help_text="Idempotency key: an item sent again with the same key is written once.")
    prompt = serializers.IntegerField(required=False, min_value=1)
    prompt_external_id = serializers.CharField(required=False, max_length=200)


class BulkResponseItem(s.ResponseInput, _Keyed):
    prompt = serializers.IntegerField(required=False, min_value=1)


class BulkTaskItem(s.TaskInput, _Keyed):
    prompt = serializers.IntegerField(required=False, min_value=1)
    metadata = serializers.DictField(required=False)


class BulkResponseInput(serializers.Serializer):
    items = BulkResponseItem(many=True, allow_empty=False, max_length=MAX_ITEMS)


class BulkTaskInput(serializers.Serializer):
    items = BulkTaskItem(many=True, allow_empty=False, max_length=MAX_ITEMS)


class BulkResponseOutput(serializers.Serializer):
    items = s.ResponseOutput(many=True)


class BulkTaskOutput(serializers.Serializer):
    items = s.TaskOutput(many=True)


def _prompts(project, items: list[dict], problems: dict) -> dict[int, Prompt]:
    """Resolve each item's prompt (by id or external id) in two queries; record a problem per bad item."""
    ids = {i["prompt"] for i in items if "prompt" in i}
    external = {i["prompt_external_id"] for i in items if "prompt" not in i and "prompt_external_id" in i}
    by_id = {p.pk: p for p in Prompt.objects.filter(project=project, pk__in=ids)}
    by_external: dict[str, list[Prompt]] = {}
    for p in Prompt.objects.filter(project=project, external_id__in=external):
        by_external.setdefault(p.external_id, []).append(p)
    found = {}
    for n, item in enumerate(items):
        if "prompt" in item:
            prompt = by_id.get(item["prompt"])
            if prompt is None:
                problems[f"items[{n}].prompt"] = ["no such prompt in this project"]
        elif "prompt_external_id" in item:
            matches = by_external.get(item["prompt_external_id"], [])
            prompt = matches[0] if len(matches) == 1 else None
            if prompt is None:
                problems[f"items[{n}].prompt_external_id"] = [
                    "no prompt with this external id" if not matches else "several prompts have this external id"
                ]
        else:
            continue
        if prompt is not None:
            found[n] = prompt
    return found


def _raise(problems: dict) -> None:
    if problems:
        first = next(iter(problems.items()))
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise Invalid(f"nothing was written: {first[0]}: {first[1][0]}{more}", fields=problems)


class ResponseBulkView(ProjectView):
    """Add up to 1000 responses to prompts given by id or external id (project admins and engineers)."""

    permissions_by_method = {"*": [CanManageData]}
    serializer_class = BulkResponseInput

    @extend_schema(request=BulkResponseInput, responses={201: BulkResponseOutput})
    def post(self, request, slug):
        items = parse_input(BulkResponseInput, request)["items"]
        problems: dict[str, list[str]] = {}
        for n, item in enumerate(items):
            if "prompt" not in item and "prompt_external_id" not in item:
                problems[f"items[{n}].prompt"] = ["give prompt (an id) or prompt_external_id"]
        prompts = _prompts(self.project, items, problems)
        _raise(problems)
        with transaction.atomic():
            out = []
            for n, item in enumerate(items):
                fields = {k: v for k, v in item.items() if k not in ("prompt", "prompt_external_id", "key")}
                key = KEY_PREFIX + item["key"] if item.get("key") else None
                out.append(services.response_create(prompt=prompts[n], dedupe_key=key, **fields))
        return HttpResponse({"items": s.ResponseOutput(out, many=True).data}, status=201)


class TaskBulkView(ProjectView):
    """Create up to 1000 tasks from existing responses (project admins and engineers). An item names its prompt
    by id or external id, or leaves it out and it is taken from the responses."""

    permissions_by_method = {"*": [CanManageData]}
    serializer_class = BulkTaskInput

    @extend_schema(request=BulkTaskInput, responses={201: BulkTaskOutput})
    def post(self, request, slug):
        project = self.project
        items = parse_input(BulkTaskInput, request)["items"]
        problems: dict[str, list[str]] = {}
        wanted = {r for item in items for r in item.get("responses", [])}
        responses = {r.pk: r for r in Response.objects.filter(prompt__project=project, pk__in=wanted)}
        prompts = _prompts(project, items, problems)
        for n, item in enumerate(items):
            ids = item.get("responses", [])
            if len(set(ids)) != len(ids) or any(i not in responses for i in ids):
                problems[f"items[{n}].responses"] = ["unknown or repeated responses"]
                continue
            if n not in prompts:
                owners = {responses[i].prompt_id for i in ids}
                if len(owners) != 1:
                    problems.setdefault(f"items[{n}].prompt", []).append(
                        "give prompt, or responses that all answer one prompt")
                    continue
                prompts[n] = responses[ids[0]].prompt
            if any(responses[i].prompt_id != prompts[n].pk for i in ids):
                problems[f"items[{n}].responses"] = ["responses must answer this item's prompt"]
        _raise(problems)
        created = []
        with transaction.atomic():
            for n, item in enumerate(items):
                try:
                    task = services.task_create(
                        project=project, prompt=prompts[n], responses=[responses[i] for i in item.get("responses", [])],
                        kind=item["kind"], priority=item.get("priority", 0), required=item.get("required"),
                        gold=item.get("gold"), flags=item.get("flags"), metadata=item.get("metadata"),
                        dedupe_key=KEY_PREFIX + item["key"] if item.get("key") else None,
                    )
                except Invalid as exc:
                    raise Invalid(f"nothing was written: items[{n}]: {exc.message}",
                                  fields={f"items[{n}]" + (f".{k}" if k else ""): v
                                          for k, v in (exc.fields or {"": [exc.message]}).items()}) from None
                created.append(task.pk)
        tasks = {t.pk: t for t in tasks_of(project).filter(pk__in=created)}
        return HttpResponse({"items": s.TaskOutput([tasks[i] for i in created], many=True).data}, status=201)
