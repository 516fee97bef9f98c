"""The Celery application: `celery -A faceid worker -Q inference`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "faceid.settings")

app = Celery("faceid")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
