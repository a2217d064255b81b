"""Live chat pages: the annotator's conversations, starting one, and the chat itself (driven by chat.js over the
API: replies stream in from a worker, every pick and mark is made with the keyboard)."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render

from annotation import selectors
from annotation.models import ChatMode
from annotation.services import chat
from common.errors import DomainError, NotFound

from ..access import LABELLERS, project_view

MODES = [  # (mode, label, what it is, the key that starts it)
    (ChatMode.COMPARE, "Compare", "Two replies each turn: pick the better one; it becomes the conversation.", "c"),
    (ChatMode.REDTEAM, "Red team", "Try to make the model break a principle; mark each reply harmful or not.", "t"),
    (ChatMode.ARENA, "Arena", "Your own prompt, two anonymous models; their names are shown after your vote.", "v"),
]


def _principles(project) -> list:
    constitution = project.current_constitution
    return list(constitution.principles.all()) if constitution else []


@project_view()
def chat_list(request, project):
    if request.method == "POST" and request.membership.role in LABELLERS:
        try:
            conversation = chat.conversation_start(
                project=project, annotator=request.user, mode=request.POST.get("mode", ""),
                task_description=request.POST.get("task_description", "").strip()[:5000],
                principle=request.POST.get("principle", ""),
            )
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            return redirect("frontend:chat", project.slug, conversation.pk)
    conversations = selectors.conversations_visible_to(user=request.user, project=project, role=request.membership.role)
    return render(request, "frontend/chat_list.html", {
        "project": project, "conversations": conversations[:200], "modes": MODES, "principles": _principles(project),
        "chat_models": _chat_models(project),
    })


def _chat_models(project) -> tuple[str, ...] | None:
    """The configured chat models (empty: none set), or None when the setting is malformed (the start says why)."""
    try:
        return chat.ChatConfig.of(project).models
    except DomainError:
        return None


@project_view()
def chat_page(request, project, conversation_id):
    try:
        conversation = selectors.conversation_for(user=request.user, project=project, role=request.membership.role,
                                                  conversation_id=conversation_id)
    except NotFound:
        raise Http404("No such conversation") from None
    principle = next((p for p in _principles(project) if p.key == conversation.principle), None)
    return render(request, "frontend/chat.html", {
        "project": project, "conversation": conversation, "principle": principle,
        "mine": conversation.annotator_id == request.user.pk,
    })
