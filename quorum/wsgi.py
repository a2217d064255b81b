"""WSGI entry point (gunicorn quorum.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")
application = get_wsgi_application()
# Import the URL conf (every view, serializer and service behind it) while the worker boots, so that its first
# request does not pay for the imports.
get_resolver().url_patterns
