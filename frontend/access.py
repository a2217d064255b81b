"""Who may open which page: one decorator, the only place roles are checked.

A project is found only through the caller's own membership, so another project's slug is a 404
(its existence is not revealed); a member without the right role gets 403; anonymous callers are
sent to the login page.
"""

from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect

from annotation.models import Role

from . import reads

ANY_MEMBER = tuple(Role.values)
ADMINS = (Role.ADMIN,)
REVIEWERS = (Role.ADMIN, Role.REVIEWER)
ENGINEERS = (Role.ADMIN, Role.ENGINEER)
OBSERVERS = (Role.ADMIN, Role.REVIEWER, Role.ENGINEER)
LABELLERS = (Role.ADMIN, Role.REVIEWER, Role.ANNOTATOR)


def project_view(roles: tuple[str, ...] = ANY_MEMBER):
    """Decorate `view(request, project, ...)`, reached by a URL with `<slug:slug>`.

    Sets `request.membership` and `request.can` so templates can show what the role allows.
    """

    def decorator(view):
        @wraps(view)
        def wrapped(request, slug, *args, **kwargs):
            if not request.user.is_authenticated:
                if getattr(request, "htmx", False):
                    # A fragment request whose session ended: send the whole page to the login
                    # form rather than swapping the login page into the task area.
                    back = request.htmx.current_url_abs_path or "/"
                    return HttpResponseClientRedirect(f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': back})}")
                return redirect_to_login(request.get_full_path())
            membership = reads.membership_for(user=request.user, slug=slug)
            if membership is None:
                raise Http404("No such project")
            if membership.role not in roles:
                raise PermissionDenied("Your role in this project does not give access to this page.")
            request.membership = membership
            request.can = {
                "admin": membership.role in ADMINS,
                "review": membership.role in REVIEWERS,
                "export": membership.role in ENGINEERS,
                "observe": membership.role in OBSERVERS,
                "label": membership.role in LABELLERS,
            }
            return view(request, membership.project, *args, **kwargs)

        return wrapped

    return decorator
