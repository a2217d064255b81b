"""Settings from environment variables; defaults run locally on SQLite with an embedded broker."""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


DEBUG = env_bool("QUORUM_DEBUG", False)
# Without QUORUM_SECRET_KEY only local development may run, on a fixed key anyone can read here: with
# QUORUM_DEBUG or QUORUM_DEV on (make demo, make, bench/), or under pytest (which sets PYTEST_VERSION for the
# tests and the processes they start). Anything else refuses to start rather than sign sessions with it.
DEV_SECRET_KEY = "dev-only-insecure-key-change-me-in-production-0123456789"
SECRET_KEY = env_str("QUORUM_SECRET_KEY", "")
if not SECRET_KEY:
    if not (DEBUG or env_bool("QUORUM_DEV", False) or "PYTEST_VERSION" in os.environ):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "QUORUM_SECRET_KEY is not set. In production set it to a long random value, the same on every host "
            "(see platform/quorum.env.example); for local development set QUORUM_DEV=1 (or QUORUM_DEBUG=1) to run "
            "on the built-in development key."
        )
    SECRET_KEY = DEV_SECRET_KEY
ALLOWED_HOSTS = [h for h in env_str("QUORUM_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env_str("QUORUM_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# Where the SQLite database, the embedded broker, the cache, snapshots and converted models live. Without
# QUORUM_DATA_DIR it is var/, and each parallel test process (pytest-xdist's workers gw0, gw1, ... name
# themselves in PYTEST_XDIST_WORKER, and the processes they start inherit it) gets a directory of its own
# under it: its own test database, broker, cache and model files.
DATA_DIR = Path(env_str("QUORUM_DATA_DIR", "") or BASE_DIR / "var" / env_str("PYTEST_XDIST_WORKER", ""))
SNAPSHOT_DIR = Path(env_str("QUORUM_SNAPSHOT_DIR", str(DATA_DIR / "snapshots")))
MODEL_DIR = Path(env_str("QUORUM_MODEL_DIR", str(DATA_DIR / "models")))
DATA_DIR.mkdir(parents=True, exist_ok=True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    # Swagger UI and Redoc served from this server (/api/docs/ works offline and under the CSP).
    "drf_spectacular_sidecar",
    "django_htmx",
    "common",
    "annotation",
    "training",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "quorum.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "quorum.urls"
WSGI_APPLICATION = "quorum.wsgi.application"
ASGI_APPLICATION = "quorum.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "frontend.nav.navigation",
            ],
        },
    },
]

SQLITE_PATH = DATA_DIR / "quorum.sqlite3"
# Lets several test runs share a checkout without sharing a test database.
TEST_DB_SUFFIX = env_str("QUORUM_TEST_SUFFIX", "")
DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("QUORUM_DB_CONN_MAX_AGE", 60))}
    DATABASES["default"]["TEST"] = {"NAME": "test_quorum" + TEST_DB_SUFFIX}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Lets the queue's hot statements (annotation/services/hotpath.py) be prepared once per
        # connection; Django's own cursors bind on the client and are not prepared either way.
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(SQLITE_PATH)}}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite has no SKIP LOCKED: writers are serialized by taking the write lock at BEGIN,
    # which keeps the queue correct under concurrent processes (see ARCHITECTURE.md).
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test{TEST_DB_SUFFIX}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

# Failed sign-ins allowed per username (five times as many per address) in one window (common/signin.py).
LOGIN_MAX_FAILURES = env_int("QUORUM_LOGIN_MAX_FAILURES", 10)
LOGIN_WINDOW_SECONDS = env_int("QUORUM_LOGIN_WINDOW_SECONDS", 300)
# Django's cache: a directory shared by one host's processes, or Redis (QUORUM_CACHE_URL) shared by every host.
CACHE_URL = env_str("QUORUM_CACHE_URL", "")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    if CACHE_URL
    else {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(DATA_DIR / "cache")}
}

# Webhook URLs must resolve to public addresses; these hosts, addresses and CIDR networks are allowed anyway
# (a receiver on the internal network), comma-separated: "hooks.internal,10.20.0.0/16".
WEBHOOK_ALLOW_PRIVATE = [h.strip() for h in env_str("QUORUM_WEBHOOK_ALLOW_PRIVATE", "").split(",") if h.strip()]

# Uploads: imports stream from a temporary file and are capped.
IMPORT_MAX_BYTES = env_int("QUORUM_IMPORT_MAX_BYTES", 512 * 1024 * 1024)
# One field of one imported record (a prompt, a completion, a message list) holds at most this much text.
IMPORT_MAX_FIELD_CHARS = env_int("QUORUM_IMPORT_MAX_FIELD_CHARS", 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "annotation.api.auth.FastTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Bodies refuse what PostgreSQL cannot store (NUL, lone surrogates) with a 400 (annotation/api/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "annotation.api.parsers.StrictJSONParser",
        "annotation.api.parsers.StrictFormParser",
        "annotation.api.parsers.StrictMultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Limit/offset with bounds (common/pagination.py): at most 1000 a page, no database error on a huge offset.
    "DEFAULT_PAGINATION_CLASS": "common.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
    "EXCEPTION_HANDLER": "common.views.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"login": env_str("QUORUM_LOGIN_RATE", "10/min")},
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Quorum API",
    "DESCRIPTION": "Projects, prompts, responses, tasks, the annotation queue, annotations and dataset snapshots.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "annotation.models.Role",
        "SnapshotFormatEnum": "annotation.models.SnapshotFormat",
        "ImportFormatEnum": "annotation.services.imports.IMPORT_FORMATS",
        "TaskStatusEnum": "annotation.models.TaskStatus",
        "JobStatusEnum": "training.models.JobStatus",
        "RoundStatusEnum": "training.rounds.models.RoundStatus",
        "RoundLabelModeEnum": "training.rounds.models.LabelMode",
        "ResponseOriginInputEnum": ["imported", "generated", "demonstration"],
        "TaskKindEnum": "annotation.models.TaskKind",
        "FeedbackKindEnum": "training.models.FeedbackKind",
    },
}

# Celery: an embedded broker (SQLAlchemy on SQLite) unless CELERY_BROKER_URL names Redis or RabbitMQ.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", f"sqla+sqlite:///{DATA_DIR / 'broker.sqlite3'}")
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# Background jobs (generation): the row is the truth. A worker beats every JOB_HEARTBEAT_SECONDS and hands
# the job on after JOB_SLICE_SECONDS; the reconciler (beat, every RECONCILE_SECONDS) re-queues a running job
# silent for JOB_STALE_SECONDS, or a queued one nobody took for JOB_QUEUED_STALE_SECONDS, at most
# JOB_MAX_ATTEMPTS times.
JOB_HEARTBEAT_SECONDS = env_int("QUORUM_JOB_HEARTBEAT_SECONDS", 5)
JOB_STALE_SECONDS = env_int("QUORUM_JOB_STALE_SECONDS", 60)
JOB_SLICE_SECONDS = env_int("QUORUM_JOB_SLICE_SECONDS", 60)
JOB_QUEUED_STALE_SECONDS = env_int("QUORUM_JOB_QUEUED_STALE_SECONDS", 600)
JOB_MAX_ATTEMPTS = env_int("QUORUM_JOB_MAX_ATTEMPTS", 5)
# Rounds of the loop: how often a round waiting for a job or run looks again, and for people's labels.
ROUND_POLL_SECONDS = env_int("QUORUM_ROUND_POLL_SECONDS", 5)
ROUND_HUMAN_POLL_SECONDS = env_int("QUORUM_ROUND_HUMAN_POLL_SECONDS", 30)
RECONCILE_SECONDS = env_int("QUORUM_RECONCILE_SECONDS", 15)
# Live chat (annotation/services/chat.py, training/chat.py): turns are generated on workers of CHAT_QUEUE. A worker
# beats every CHAT_HEARTBEAT_SECONDS while it streams; a turn silent for CHAT_STALE_SECONDS, or queued and not taken
# for CHAT_QUEUED_STALE_SECONDS, is offered to the annotator for a retry. Partial text is written at most
# CHAT_WRITES_PER_SECOND times a second.
CHAT_QUEUE = env_str("QUORUM_CHAT_QUEUE", "gpu")
CHAT_HEARTBEAT_SECONDS = float(env_str("QUORUM_CHAT_HEARTBEAT_SECONDS", "2"))
CHAT_STALE_SECONDS = env_int("QUORUM_CHAT_STALE_SECONDS", 20)
CHAT_QUEUED_STALE_SECONDS = env_int("QUORUM_CHAT_QUEUED_STALE_SECONDS", 120)
CHAT_WRITES_PER_SECOND = float(env_str("QUORUM_CHAT_WRITES_PER_SECOND", "4"))

# Production hardening: on when QUORUM_DEBUG is off and HTTPS is declared.
if env_bool("QUORUM_HTTPS", False):
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("QUORUM_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("QUORUM_LOG_LEVEL", "WARNING")},
}
