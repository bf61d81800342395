"""Settings, all from the environment.

Defaults make the embedded demo work with no servers: SQLite in ``data/`` and
kombu's filesystem broker. Production sets ``DATABASE_URL``, ``CELERY_BROKER_URL``,
``SECRET_KEY``, ``ALLOWED_HOSTS`` and ``DEBUG=0``.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("EVALSITE_DATA_DIR", BASE_DIR / "data"))


def env_bool(name: str, default: bool) -> bool:
    """Parse a boolean environment variable; unknown spellings are an error, not a silent False."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r}: use 1/0, true/false, yes/no or on/off")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def _demo_secret_key(path: Path) -> str:
    """A random key generated once and kept, so demo sessions survive restarts."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    path.write_text(key)
    path.chmod(0o600)
    return key


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = _demo_secret_key(DATA_DIR / "secret_key")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally, no CDN
    "axes",  # admin login and API token: lock out a username + address after repeated failures
    "evalsite.studies",
    "evalsite.rating",
    "evalsite.api",
    "evalsite.dashboard",
    "evalsite.generation",  # no models (GenerationJob lives in studies); its ready() loads the Celery app
    "evalsite.platforms",  # Prolific and MTurk through their APIs
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # NUL in a URL, query string or Authorization header: a 400 before any view looks it up.
    "evalsite.edge.EdgeMiddleware",
    # gunicorn serves no static files; whitenoise does, compressed and cached.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes requires
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked-out username + address first
    "django.contrib.auth.backends.ModelBackend",
]
# Five wrong passwords for one username from one address lock that pair out for 15 minutes (the
# admin login answers 429); a right password resets the count.
AXES_FAILURE_LIMIT = int(os.environ.get("EVALSITE_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("EVALSITE_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_DISABLE_ACCESS_LOG = True  # failed attempts only; successful logins are not recorded

ROOT_URLCONF = "evalsite.urls"
WSGI_APPLICATION = "evalsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'evalsite.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo's web server and worker write concurrently; wait instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not Django's shared in-memory database: the engine's race tests open one connection
    # per thread, and only a file gives them SQLite's real locking (busy waits, IMMEDIATE writers).
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-evalsite.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Throttle counters (the API token endpoint). Per process unless CACHE_URL names a shared Redis,
# as it should when several web processes serve.
_cache_url = os.environ.get("CACHE_URL", "")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cache_url}
    if _cache_url.startswith(("redis://", "rediss://"))
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", DATA_DIR / "staticfiles"))
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", DATA_DIR / "media"))
# whitenoise serves STATIC_ROOT (filled by collectstatic) and, when debugging, the app folders.
try:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
except OSError:  # a read-only image that ran collectstatic at build time has it already
    pass
WHITENOISE_USE_FINDERS = DEBUG

# Uploads of prompt files up to this size are accepted (importers enforce their own limit too).
DATA_UPLOAD_MAX_MEMORY_SIZE = 50 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- security (production: DEBUG=0) ---------------------------------------------------
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
if CSRF_COOKIE_SECURE:
    # MTurk shows rater pages in a cross-site iframe; the CSRF cookie must travel there too.
    CSRF_COOKIE_SAMESITE = "None"
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
BEHIND_PROXY = env_bool("BEHIND_PROXY", False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The client's address for login lockouts: behind the proxy, the last X-Forwarded-For hop.
AXES_CLIENT_IP_CALLABLE = "evalsite.edge.client_address"
# Rater pages are embedded in MTurk's iframe; everything else stays DENY (see rating views).
X_FRAME_OPTIONS = "DENY"
# Who may frame the rater pages (CSP frame-ancestors): the crowd platforms, space-separated.
RATER_FRAME_ANCESTORS = os.environ.get(
    "EVALSITE_RATER_FRAME_ANCESTORS",
    "'self' https://*.mturk.com https://*.amazon.com https://*.prolific.com https://*.prolific.co",
)
# A rating form is a few KB; anything far larger is refused before it is parsed.
RATER_MAX_BODY_BYTES = 256 * 1024

# --- Celery ---------------------------------------------------------------------------
_broker_dir = DATA_DIR / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Every folder the transport writes lives under DATA_DIR/broker; kombu's defaults are relative
    # to the working directory (its exchange tables went to ./control in the repository root).
    for sub in ("in", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "in"),
        "data_folder_out": str(_broker_dir / "in"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Redis hands a killed worker's unacknowledged task to another worker only after the
    # visibility timeout. It must exceed the longest job, or a job still running is delivered
    # twice (harmless thanks to the upserts, but wasted work); tests shorten it.
    _visibility = int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", str(2 * 3600)))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": _visibility,
        # kombu looks for lost tasks every 10 s but scans only every 10th look (~100 s); with a
        # short timeout, scan on every look so a lost task comes back within about the timeout.
        "unacked_restore_interval": min(10, _visibility),
        "unacked_restore_throttle": 1 if _visibility < 600 else 10,
    }
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

# --- REST framework -------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # Bodies within the edge rules (evalsite.edge): finite numbers, bounded depth and size, no NUL.
    "DEFAULT_PARSER_CLASSES": [
        "evalsite.api.parsers.JSONParser",
        "evalsite.api.parsers.FormParser",
        "evalsite.api.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "evalsite.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "evalsite.api.schema.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "evalsite.api.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    # The token endpoint: a few tries a minute per address (429 beyond); wrong passwords also count
    # towards the login lockout above.
    "DEFAULT_THROTTLE_RATES": {"token": os.environ.get("EVALSITE_TOKEN_RATE", "10/minute")},
    "NUM_PROXIES": 1 if BEHIND_PROXY else None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "evalsite API",
    "DESCRIPTION": "Studies, generated responses, blind pairwise ratings and their analysis.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs page are for researchers, like the API itself (401 otherwise).
    "SERVE_PERMISSIONS": ["evalsite.api.permissions.IsResearcher"],
}

# --- generation -----------------------------------------------------------------------
MODEL_CACHE_DIR = Path(os.environ.get("EVALSITE_MODEL_CACHE", DATA_DIR / "models"))
# Where a model's model_path may point (local model folders, answer files): these folders and what
# lies below them, besides the builtin: models. Comma-separated; default the model cache.
MODEL_ROOTS = [Path(p).expanduser().resolve() for p in env_list("EVALSITE_MODEL_ROOTS", [str(MODEL_CACHE_DIR)])]
# An active job untouched this long (no heartbeat, no progress) has lost its message or its worker:
# "generate" sends it again.
GENERATION_JOB_STALE_MINUTES = float(os.environ.get("EVALSITE_JOB_STALE_MINUTES", "30"))
# While a run holds its job, a thread touches the job every this many seconds (also during a long
# batch or model load); a running job silent for six beats has lost its run and may be taken over.
GENERATION_HEARTBEAT_SECONDS = float(os.environ.get("EVALSITE_JOB_HEARTBEAT_SECONDS", "10"))

# --- reports --------------------------------------------------------------------------
# Bootstrap rounds behind the report's intervals.
REPORT_BOOTSTRAP_ROUNDS = int(os.environ.get("EVALSITE_REPORT_BOOTSTRAP_ROUNDS", "1000"))
# Fewest prompts behind a reported interval (below: "too few prompts", or Wilson for proportions).
REPORT_MIN_PROMPTS = int(os.environ.get("EVALSITE_REPORT_MIN_PROMPTS", "10"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # django-axes logs every login at INFO; lockouts and failures come at WARNING.
    "loggers": {"axes": {"level": "WARNING"}},
}
