#!/bin/sh
# Roles of the faceid images: web (migrate, then gunicorn), worker (Celery, inference and default queues),
# or any other command (e.g. `python manage.py create_organization ...`).
set -eu

case "${1:-web}" in
  web)
    python manage.py migrate --noinput
    exec gunicorn config.wsgi:application \
      --bind "0.0.0.0:${PORT:-8000}" \
      --workers "${WEB_CONCURRENCY:-3}" \
      --timeout "${GUNICORN_TIMEOUT:-60}" \
      --access-logfile - --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-*}"
    ;;
  worker)
    # One process per GPU is the usual choice: models load once per process, after the fork.
    exec celery -A config worker -Q "${WORKER_QUEUES:-inference,default}" \
      --pool prefork --concurrency "${WORKER_CONCURRENCY:-1}" \
      --hostname "worker@%h" --loglevel "${LOG_LEVEL:-INFO}"
    ;;
  *)
    exec "$@"
    ;;
esac
