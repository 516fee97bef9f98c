"""Settings for faceid, read from the environment (12-factor).

Defaults are the safe production choice; development opts in with DEBUG=true. Every variable read
here is listed in the README's Configuration table (tests/test_configuration.py checks it).
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="" if not DEBUG else "dev-insecure-secret-key-change-me")
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
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if _HTTPS else None
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# Uploads: the request limit answers 413 (see the API); decoding has its own pixel limit.
MAX_UPLOAD_BYTES = env.int("MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_BYTES
MAX_IMAGE_PIXELS = env.int("MAX_IMAGE_PIXELS", default=40_000_000)

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
CELERY_IMPORTS = ("faceid.worker.tasks", "faceid.jobs")
CELERY_TASK_ROUTES = {
    "faceid.worker.*": {"queue": "inference"},
    "faceid.jobs.*": {"queue": "default"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=90)
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A key prefix keeps several deployments (or concurrent test runs) apart on one Redis database.
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": env("CELERY_KEY_PREFIX", default="")}
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
    }
)
# Per caller (API key or console user), "<n>/<second|minute|hour|day>": `api` counts every call,
# `pipeline` also the calls that run the face pipeline (enroll, verify, identify).
FACEID_THROTTLE_RATES = {
    "api": env("API_RATE_LIMIT", default="600/minute"),
    "pipeline": env("API_PIPELINE_RATE_LIMIT", default="120/minute"),
}
# Async (?async=true) job records are kept this long in the cache.
FACEID_JOB_TTL_SECONDS = env.int("FACEID_JOB_TTL_SECONDS", default=24 * 3600)
