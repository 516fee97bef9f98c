#!/bin/sh
# Roles of the faceid images: web (migrate, then gunicorn), worker (Celery, the queues in
# WORKER_QUEUES: inference,default unless set), beat (Celery beat: the schedule in settings),
# or any other command (e.g. `python manage.py create_organization ...`).
set -eu

case "${1:-web}" in
  web)
    python manage.py migrate --noinput
    exec gunicorn config.wsgi:application \
      --bind "0.0.0.0:${PORT:-8000}" \
      --workers "${WEB_CONCURRENCY:-3}" \
      --timeout "${GUNICORN_TIMEOUT:-60}" \
      --access-logfile - --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}"
    ;;
  worker)
    # One process per GPU is the usual choice: models load once per process, after the fork.
    exec celery -A config worker -Q "${WORKER_QUEUES:-inference,default}" \
      --pool prefork --concurrency "${WORKER_CONCURRENCY:-1}" \
      --hostname "worker@%h" --loglevel "${LOG_LEVEL:-INFO}"
    ;;
  beat)
    # The schedule's state is a scratch file: losing it only moves the next run.
    exec celery -A config beat --schedule /tmp/celerybeat-schedule --loglevel "${LOG_LEVEL:-INFO}"
    ;;
  *)
    exec "$@"
    ;;
esac
