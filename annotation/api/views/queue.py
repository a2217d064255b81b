"""The annotation queue: lease the next task, then submit an annotation or skip it."""

from drf_spectacular.utils import extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response as HttpResponse

from common.permissions import CanLabel
from common.views import ProjectView, parse_input

from ... import selectors, services
from ...services.suggestions import assignment_suggestion
from .. import serializers as s


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
        view["suggestion"] = assignment_suggestion(assignment=assignment, project=project)
        return HttpResponse(view)


class _AssignmentAction(GenericAPIView):
    def assignment(self, request, assignment_id):
        return selectors.assignment_for(user=request.user, assignment_id=assignment_id)


class SubmitView(_AssignmentAction):
    serializer_class = s.AnnotationOutput

    @extend_schema(request=s.SubmitInput, responses={201: s.AnnotationOutput})
    def post(self, request, assignment_id):
        data = parse_input(s.SubmitInput, request)
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
        data = parse_input(s.SkipInput, request)
        assignment = services.assignment_skip(
            assignment=self.assignment(request, assignment_id), annotator=request.user, reason=data.get("reason", "")
        )
        return HttpResponse({"assignment": assignment.pk, "state": assignment.state})
