"""Live chat over the API: start a conversation, send messages, poll the streamed replies, label each turn.

An annotator sees and acts in their own conversations only; admins, engineers and reviewers may read every one.
Model names stay hidden from the annotator until the conversation ends (in arena, the vote ends it).
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response as HttpResponse

from common.permissions import CanLabel, IsProjectMember
from common.views import ProjectView, parse_input

from ... import selectors
from ...models import RED_TEAM_RATING_MAX, ChatMode, ChatTurn, Conversation, ConversationStatus
from ...payloads import PAIRWISE_CHOICES, STRENGTH_MAX, STRENGTH_MIN
from ...services import chat


class ConversationInput(serializers.Serializer):
    mode = serializers.ChoiceField(choices=ChatMode.choices)
    task_description = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    principle = serializers.CharField(required=False, allow_blank=True, default="", max_length=100,
                                      help_text="red team: key of the constitution principle targeted")


class MessageInput(serializers.Serializer):
    content = serializers.CharField(max_length=chat.MESSAGE_MAX_CHARS, trim_whitespace=False)


class LabelInput(serializers.Serializer):
    client_id = serializers.UUIDField(help_text="makes the label idempotent: a retry with it returns the first")
    seconds_spent = serializers.FloatField(required=False, allow_null=True, default=None, min_value=0)
    rationale = serializers.CharField(required=False, allow_blank=True, default="", max_length=20000)


class ChooseInput(LabelInput):
    choice = serializers.ChoiceField(choices=PAIRWISE_CHOICES, help_text="A and B as shown")
    strength = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=STRENGTH_MIN,
                                        max_value=STRENGTH_MAX)


class MarkInput(LabelInput):
    harmful = serializers.BooleanField()


class CloseInput(serializers.Serializer):
    rating = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0,
                                      max_value=RED_TEAM_RATING_MAX, help_text="red team: how bad the worst reply was")


class CandidateOutput(serializers.Serializer):
    label = serializers.CharField()
    text = serializers.CharField()
    done = serializers.BooleanField()
    model = serializers.CharField(allow_null=True, help_text="null while hidden from the annotator")


class TurnOutput(serializers.Serializer):
    index = serializers.IntegerField()
    message = serializers.CharField()
    state = serializers.CharField()
    stale = serializers.BooleanField(help_text="the worker stopped or never started: retry")
    error = serializers.CharField()
    attempts = serializers.IntegerField()
    candidates = CandidateOutput(many=True)
    timings = serializers.DictField()
    kept = serializers.IntegerField(allow_null=True)
    harmful = serializers.BooleanField(allow_null=True)
    choice = serializers.DictField(allow_null=True, help_text="the stored pairwise payload (A/B as shown)")
    task = serializers.IntegerField(allow_null=True)
    annotation = serializers.IntegerField(allow_null=True)


class ConversationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    mode = serializers.CharField()
    status = serializers.CharField()
    annotator = serializers.CharField()
    models = serializers.ListField(child=serializers.CharField(), allow_null=True)
    task_description = serializers.CharField()
    principle = serializers.CharField()
    rating = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)
    turns = TurnOutput(many=True, required=False)


def _reveal(conversation: Conversation, role: str) -> bool:
    return conversation.status == ConversationStatus.CLOSED or role in selectors.OVERSEEING_ROLES


def turn_data(turn: ChatTurn, *, reveal: bool) -> dict:
    annotation = turn.annotation
    return {
        "index": turn.index,
        "message": turn.message,
        "state": turn.state,
        "stale": chat.turn_is_stale(turn),
        "error": turn.error,
        "attempts": turn.attempts,
        "candidates": [
            {"label": "AB"[i], "text": text, "done": bool(turn.done[i]) if i < len(turn.done) else False,
             "model": turn.sides[i]["model"] if reveal else None}
            for i, text in enumerate(turn.partial)
        ],
        "timings": turn.timings,
        "kept": turn.kept,
        "harmful": turn.harmful,
        "choice": annotation.payload if annotation is not None and annotation.kind == "pairwise" else None,
        "task": turn.task_id,
        "annotation": turn.annotation_id,
    }


def conversation_data(conversation: Conversation, *, role: str, turns=None) -> dict:
    reveal = _reveal(conversation, role)
    data = {
        "id": conversation.pk,
        "mode": conversation.mode,
        "status": conversation.status,
        "annotator": conversation.annotator.get_username(),
        "models": [s["model"] for s in conversation.sides] if reveal else None,
        "task_description": conversation.task_description,
        "principle": conversation.principle,
        "rating": conversation.rating,
        "created_at": conversation.created_at,
        "closed_at": conversation.closed_at,
    }
    if turns is not None:
        data["turns"] = [turn_data(t, reveal=reveal) for t in turns]
    return ConversationOutput(data).data


class ConversationListView(ProjectView):
    """The caller's conversations (every one for admins, engineers and reviewers); POST starts one."""

    permissions_by_method = {"*": [IsProjectMember], "POST": [CanLabel]}

    @extend_schema(responses={200: ConversationOutput(many=True)})
    def get(self, request, slug):
        role = self.project_role(request)
        qs = selectors.conversations_visible_to(user=request.user, project=self.project, role=role)
        page = self.paginate_queryset(qs)
        return self.get_paginated_response([conversation_data(c, role=role) for c in page])

    @extend_schema(request=ConversationInput, responses={201: ConversationOutput})
    def post(self, request, slug):
        conversation = chat.conversation_start(project=self.project, annotator=request.user,
                                               **parse_input(ConversationInput, request))
        return HttpResponse(conversation_data(conversation, role=self.project_role(request), turns=[]), status=201)


class ConversationMixin:
    def conversation(self, request, conversation_id: int) -> Conversation:
        return selectors.conversation_for(user=request.user, project=self.project, role=self.project_role(request),
                                          conversation_id=conversation_id)

    def turn(self, request, conversation_id: int, index: int) -> ChatTurn:
        return selectors.chat_turn_for(conversation=self.conversation(request, conversation_id), index=index)

    def turn_response(self, request, turn: ChatTurn, status: int = 200) -> HttpResponse:
        turn.refresh_from_db()
        conversation = Conversation.objects.get(pk=turn.conversation_id)
        reveal = _reveal(conversation, self.project_role(request))
        return HttpResponse(TurnOutput(turn_data(turn, reveal=reveal)).data, status=status)


class ConversationDetailView(ConversationMixin, ProjectView):
    @extend_schema(responses={200: ConversationOutput})
    def get(self, request, slug, conversation_id):
        conversation = self.conversation(request, conversation_id)
        turns = selectors.chat_turns_of(conversation=conversation)
        return HttpResponse(conversation_data(conversation, role=self.project_role(request), turns=turns))


class MessageView(ConversationMixin, ProjectView):
    """Send the next user message; the replies are generated on a worker (poll the turn)."""

    permissions_by_method = {"*": [CanLabel]}

    @extend_schema(request=MessageInput, responses={201: TurnOutput})
    def post(self, request, slug, conversation_id):
        conversation = self.conversation(request, conversation_id)
        turn = chat.chat_message_send(conversation=conversation, annotator=request.user,
                                      content=parse_input(MessageInput, request)["content"])
        return self.turn_response(request, turn, status=201)


class TurnView(ConversationMixin, ProjectView):
    """One turn, with the text streamed so far: what the chat page polls."""

    @extend_schema(responses={200: TurnOutput})
    def get(self, request, slug, conversation_id, index):
        return self.turn_response(request, self.turn(request, conversation_id, index))


class TurnChooseView(ConversationMixin, ProjectView):
    """Compare and arena: pick the better reply (stored as a pairwise annotation of the turn's task)."""

    permissions_by_method = {"*": [CanLabel]}

    @extend_schema(request=ChooseInput, responses={200: TurnOutput})
    def post(self, request, slug, conversation_id, index):
        data = parse_input(ChooseInput, request)
        payload = {"choice": data["choice"], "strength": data["strength"]}
        if payload["strength"] is None:
            payload.pop("strength")
        turn = chat.chat_turn_choose(
            turn=self.turn(request, conversation_id, index), annotator=request.user, payload=payload,
            client_id=data["client_id"], seconds_spent=data["seconds_spent"], rationale=data["rationale"],
        )
        return self.turn_response(request, turn)


class TurnMarkView(ConversationMixin, ProjectView):
    """Red team: mark the reply harmful or not."""

    permissions_by_method = {"*": [CanLabel]}

    @extend_schema(request=MarkInput, responses={200: TurnOutput})
    def post(self, request, slug, conversation_id, index):
        data = parse_input(MarkInput, request)
        turn = chat.chat_turn_mark(
            turn=self.turn(request, conversation_id, index), annotator=request.user, harmful=data["harmful"],
            client_id=data["client_id"], seconds_spent=data["seconds_spent"], rationale=data["rationale"],
        )
        return self.turn_response(request, turn)


class TurnRetryView(ConversationMixin, ProjectView):
    """Queue a failed or stalled turn again."""

    permissions_by_method = {"*": [CanLabel]}

    @extend_schema(request=None, responses={200: TurnOutput})
    def post(self, request, slug, conversation_id, index):
        turn = chat.chat_turn_retry(turn=self.turn(request, conversation_id, index), annotator=request.user)
        return self.turn_response(request, turn)


class ConversationCloseView(ConversationMixin, ProjectView):
    """End the conversation (red team: with the 0-4 rating of the worst reply); model names are then shown."""

    permissions_by_method = {"*": [CanLabel]}

    @extend_schema(request=CloseInput, responses={200: ConversationOutput})
    def post(self, request, slug, conversation_id):
        conversation = chat.conversation_close(conversation=self.conversation(request, conversation_id),
                                               annotator=request.user, rating=parse_input(CloseInput, request)["rating"])
        turns = selectors.chat_turns_of(conversation=conversation)
        return HttpResponse(conversation_data(conversation, role=self.project_role(request), turns=turns))
