"""The Celery application: `celery -A config worker -Q inference,default`.

The task modules are named in settings (CELERY_IMPORTS), not discovered: the worker imports
exactly those, and the routes send `faceid.worker.*` to `inference` and `faceid.jobs.*` to `default`.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("faceid")
app.config_from_object("django.conf:settings", namespace="CELERY")
