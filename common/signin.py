"""Sign-in attempts limited per username and per client address, counted in Django's cache.

Both ways to sign in use it: the API token exchange (`POST /api/v1/auth/token/`) and the web login
page. After LOGIN_MAX_FAILURES failed attempts for one username (or five times that from one
address) within a LOGIN_WINDOW_SECONDS window, further attempts are refused with 429 and a
Retry-After until the window ends, whether the password is right or not. A success clears the
username's count. The counters live in the default cache (a directory shared by the processes of
one host unless QUORUM_CACHE_URL names a Redis cache shared by every host), so no extra service.
"""

import hashlib
import time

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.http import HttpRequest

ADDRESS_FACTOR = 5


def _limits() -> tuple[int, int]:
    return settings.LOGIN_MAX_FAILURES, settings.LOGIN_WINDOW_SECONDS


def _window() -> tuple[int, int]:
    """The current window's number and the seconds left in it."""
    _, window = _limits()
    now = time.time()
    return int(now // window), max(1, int(window - now % window))


def _address(request: HttpRequest | None) -> str:
    return (request.META.get("REMOTE_ADDR") if request is not None else None) or "unknown"


def _keys(request: HttpRequest | None, username: str) -> tuple[str, str]:
    bucket, _ = _window()
    who = hashlib.sha256(username.strip().lower().encode("utf-8", "replace")).hexdigest()[:32]
    return f"login-fail:u:{who}:{bucket}", f"login-fail:a:{_address(request)}:{bucket}"


def retry_after(request: HttpRequest | None, username: str) -> int:
    """Seconds until this username may try again from this address; 0 when it may try now."""
    max_failures, _ = _limits()
    user_key, address_key = _keys(request, username)
    counts = cache.get_many([user_key, address_key])
    if counts.get(user_key, 0) >= max_failures or counts.get(address_key, 0) >= max_failures * ADDRESS_FACTOR:
        return _window()[1]
    return 0


def failure_record(request: HttpRequest | None, username: str) -> None:
    _, window = _limits()
    for key in _keys(request, username):
        cache.add(key, 0, timeout=window + 5)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window + 5)


def success_record(request: HttpRequest | None, username: str) -> None:
    cache.delete(_keys(request, username)[0])


class LoginView(auth_views.LoginView):
    """Django's login view, refusing attempts over the limit (429) and counting failures."""

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        wait = retry_after(request, username)
        if wait:
            # An unbound form: binding it would check the password, which is what is being refused.
            form = self.get_form_class()(request=request, initial={"username": username})
            response = self.render_to_response(
                self.get_context_data(form=form, locked_minutes=max(1, round(wait / 60))), status=429
            )
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        success_record(self.request, form.get_user().get_username())
        return super().form_valid(form)

    def form_invalid(self, form):
        failure_record(self.request, self.request.POST.get("username", ""))
        return super().form_invalid(form)
