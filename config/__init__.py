"""Django project configuration: settings, the Celery app, URLs and the WSGI entry point."""

# Imported here so that @shared_task binds to this app as soon as Django's settings load.
from config.celery import app as celery_app

__all__ = ("celery_app",)
