"""WSGI entry point (gunicorn quorum.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")
application = get_wsgi_application()
