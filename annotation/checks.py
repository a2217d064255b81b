"""Deployment checks of Quorum's own (`manage.py check --deploy`)."""

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def development_secret_key(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """The development key is public (it is in settings.py): sessions, CSRF tokens and password resets signed
    with it can be forged by anyone."""
    if settings.SECRET_KEY != getattr(settings, "DEV_SECRET_KEY", None):
        return []
    return [
        checks.Error(
            "SECRET_KEY is Quorum's built-in development key.",
            hint="Set QUORUM_SECRET_KEY to a long random value, the same on every host, and leave QUORUM_DEV unset.",
            id="quorum.E001",
        )
    ]
