"""Settings for faceid, read from the environment (12-factor).

Defaults are the safe production choice; development opts in with DEBUG=true. Every variable read
here is listed in the README's Configuration table (tests/test_configuration.py checks it).
"""

import hashlib
import secrets
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# "web" (the default: the web app, the `default` queue's worker, management commands) or "worker":
# the inference worker, which signs nothing and is therefore not given the SECRET_KEY (docker/).
FACEID_ROLE = env("FACEID_ROLE", default="web")
if FACEID_ROLE not in ("web", "worker"):
    raise environ.ImproperlyConfigured("FACEID_ROLE must be web or worker")
SECRET_KEY = env("SECRET_KEY", default="" if not DEBUG else "dev-insecure-secret-key-change-me")
if not SECRET_KEY and FACEID_ROLE == "worker":
    # A per-process random key: Django wants one, and nothing this process could sign with it is
    # ever checked by another process, so a leaked worker environment holds no usable secret.
    SECRET_KEY = secrets.token_urlsafe(50)
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "tenants",
    "faceid",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

DATABASES = {"default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/faceid")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
# The role the application's connections SET ROLE to (faceid.dbrole): INSERT and SELECT only on the
# audit table, which it does not own. Empty: connections keep the login role (tests, tools).
DATABASE_APP_ROLE = env("DATABASE_APP_ROLE", default="")

# The audit chain's HMAC key (faceid.audit): kept out of the database, so a database role cannot
# recompute the chain. Unset: derived from SECRET_KEY (set a key of its own in production).
AUDIT_HMAC_KEY = env("AUDIT_HMAC_KEY", default="") or (
    "derived-from-secret-key:" + hashlib.sha256(SECRET_KEY.encode()).hexdigest()
)
# Where the chain heads are published (faceid.audit_heads): a directory outside the database, one
# append-only JSON-lines file per organization. Empty: var/audit-heads under the project.
AUDIT_HEAD_DIR = env.path("AUDIT_HEAD_DIR", default=str(BASE_DIR / "var" / "audit-heads"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Kept raw images (only when an organization's policy asks for it) live here.
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media"))

LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:home"

# Behind HTTPS (the default in production), cookies travel only over TLS.
_HTTPS = env.bool("HTTPS", default=not DEBUG)
SESSION_COOKIE_SECURE = _HTTPS
CSRF_COOKIE_SECURE = _HTTPS
# X-Forwarded-Proto is believed only when a TLS-terminating proxy that overwrites it is the only way
# in (TRUSTED_PROXY=true); otherwise any client could claim https.
TRUSTED_PROXY = env.bool("TRUSTED_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXY else None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_HTTPS and TRUSTED_PROXY)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if _HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Preloading is a submission to the browsers' lists that only the domain's owner can make: its
# absence is a deployment choice, not a defect of the app.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# Uploads: the request limit answers 413 (see the API); decoding has its own pixel limit.
MAX_UPLOAD_BYTES = env.int("MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_BYTES
MAX_IMAGE_PIXELS = env.int("MAX_IMAGE_PIXELS", default=40_000_000)
# All the images of one pipeline task together: the ones past this budget are refused from their
# header (too_many_pixels), before decoding, so 16 frames cannot take 16 x MAX_IMAGE_PIXELS of memory.
MAX_TASK_PIXELS = env.int("MAX_TASK_PIXELS", default=64_000_000)
# The image formats the worker decodes (Pillow names); others are refused as unsupported_format.
IMAGE_FORMATS = env.list("IMAGE_FORMATS", default=["JPEG", "PNG", "WEBP"])

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "faceid API",
    "DESCRIPTION": "Multi-tenant face verification that keeps working with a face mask.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # No CDN is reachable in production networks of kiosks: serve Swagger UI and Redoc locally.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: Redis broker and result backend. The worker imports exactly the task modules named here;
# pipeline work (faceid.worker) goes to the "inference" queue, finishing jobs (faceid.jobs) to "default".
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_TASK_DEFAULT_QUEUE = "default"
# faceid.audit_heads (publishing the audit chain's heads) is imported and scheduled once it exists.
_AUDIT_HEADS = (BASE_DIR / "faceid" / "audit_heads.py").exists()
CELERY_IMPORTS = ("faceid.worker.tasks", "faceid.jobs", *(("faceid.audit_heads",) if _AUDIT_HEADS else ()))
CELERY_TASK_ROUTES = {
    "faceid.worker.*": {"queue": "inference"},
    "faceid.jobs.*": {"queue": "default"},
    "faceid.audit_heads.*": {"queue": "default"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=90)
# Results carry embeddings (the pipeline's output): consumers delete them at once (forget), and
# whatever a consumer left behind expires after this many seconds.
CELERY_RESULT_EXPIRES = env.int("CELERY_RESULT_EXPIRES", default=600)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A key prefix keeps several deployments (or concurrent test runs) apart on one Redis database.
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": env("CELERY_KEY_PREFIX", default="")}
# Celery's default (20 reconnections a second apart) would keep a waiting API call ~20 s past
# PIPELINE_WAIT_SECONDS when Redis goes away: give up after ~2 s and answer 503 (tests/faults).
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "retry_policy": {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
}
# How long a synchronous API call waits for its pipeline task before answering 504.
PIPELINE_WAIT_SECONDS = env.int("PIPELINE_WAIT_SECONDS", default=30)

# Inference settings used by the workers (see inference/).
INFERENCE_DEVICE = env("INFERENCE_DEVICE", default="auto")  # auto | cpu | cuda
INFERENCE_THREADS = env.int("INFERENCE_THREADS", default=0)  # 0: torch's default
# Load the models in each worker process right after the fork (worker_process_init); tests turn it off.
INFERENCE_WARMUP = env.bool("INFERENCE_WARMUP", default=True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}

# --- API and console (faceid.api, faceid.console) ---------------------------------------------------
# The cache (Redis) holds the per-key rate-limit counters, async job records and console caches.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env("CACHE_URL", default=REDIS_URL),
        "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="faceid"),
        "TIMEOUT": 300,
    }
}
REST_FRAMEWORK.update(
    {
        "EXCEPTION_HANDLER": "faceid.api.errors.api_exception_handler",
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "faceid.api.authentication.ApiKeyAuthentication",
            "rest_framework.authentication.SessionAuthentication",
        ],
        # DRF's parsers, with a nesting limit on JSON (deep nesting was a RecursionError, a 500).
        "DEFAULT_PARSER_CLASSES": [
            "faceid.api.parsers.DepthLimitedJSONParser",
            "rest_framework.parsers.FormParser",
            "rest_framework.parsers.MultiPartParser",
        ],
    }
)
# Per caller (API key or console user), "<n>/<second|minute|hour|day>": `api` counts every call,
# `pipeline` also the calls that run the face pipeline (enroll, verify, identify).
FACEID_THROTTLE_RATES = {
    "api": env("API_RATE_LIMIT", default="600/minute"),
    "pipeline": env("API_PIPELINE_RATE_LIMIT", default="120/minute"),
    # Per organization, all its keys and console users together: one tenant cannot fill the queue.
    "org_pipeline": env("API_ORG_PIPELINE_RATE_LIMIT", default="600/minute"),
}
# Fair share of the inference queue: at most this many pipeline calls (sync or ?async=true) of one
# organization in flight at once; more answer 429 with Retry-After. 0 turns the bound off.
API_ORG_MAX_IN_FLIGHT = env.int("API_ORG_MAX_IN_FLIGHT", default=32)
# Console login: failed logins counted per username and per client IP ("<n>/<period>"); past the
# limit the login page answers 429 without checking the password.
CONSOLE_LOGIN_FAILURE_LIMIT = env("CONSOLE_LOGIN_FAILURE_LIMIT", default="10/hour")
CONSOLE_LOGIN_IP_FAILURE_LIMIT = env("CONSOLE_LOGIN_IP_FAILURE_LIMIT", default="50/hour")
# Django's password check with those limits, for the console and the Django admin alike.
AUTHENTICATION_BACKENDS = ["faceid.console.access.RateLimitedModelBackend"]
# Async (?async=true) job records are kept at most this long in the cache (deleted sooner: once a
# poll has read the finished answer, or when the person is erased).
FACEID_JOB_TTL_SECONDS = env.int("FACEID_JOB_TTL_SECONDS", default=3600)

# Celery beat (`make run`, compose's `beat` service): housekeeping on the `default` queue.
CELERY_BEAT_SCHEDULE = {
    "purge-expired-images": {
        "task": "faceid.jobs.purge_expired_images",
        "schedule": env.int("PURGE_IMAGES_INTERVAL_SECONDS", default=3600),
    },
}
if _AUDIT_HEADS:
    CELERY_BEAT_SCHEDULE["publish-audit-heads"] = {
        "task": "faceid.audit_heads.publish_heads",
        "schedule": env.int("AUDIT_HEADS_INTERVAL_SECONDS", default=300),
    }
