"""A real Celery worker for the tests that need one (registered by tests/conftest.py).

`celery_worker` (session) starts `celery -A config worker -Q inference,default --pool prefork -c 1`
as a subprocess against the TEST database (created by pytest-django) and the broker in REDIS_URL,
under a key prefix of its own so that concurrent runs sharing one Redis never see each other's
tasks. It is ready when it answers a ping (bounded wait), and is stopped with all its children
at the end of the session. Tests whose rows the worker must see use `transactional_db`.
`pipeline_worker` is the same worker once its models are loaded.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from config import celery_app

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = float(os.environ.get("FACEID_TEST_WORKER_READY_TIMEOUT", "90"))
STOP_TIMEOUT = 20.0
# The audit chain's key in every test process and in the worker, which writes audit rows when it
# finishes ?async=true jobs: one chain, one key.
AUDIT_HMAC_KEY_FOR_TESTS = "test-audit-hmac-key"

# Every broker key of this test session starts with this prefix, in this process (the producer)
# and in the worker (the consumer); pytest_configure sets it before any test can open a broker
# connection (a connection opened earlier would not carry it).
KEY_PREFIX = f"faceid-test-{uuid.uuid4().hex[:12]}:"


def pytest_configure(config: pytest.Config) -> None:
    celery_app.conf.broker_transport_options = {
        **(celery_app.conf.broker_transport_options or {}),
        "global_keyprefix": KEY_PREFIX,
    }


@dataclass
class Worker:
    hostname: str
    process: subprocess.Popen
    log_path: Path
    database: str

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL (django-environ's form) for the database Django is connected to now."""
    user = quote(settings_dict.get("USER") or "", safe="")
    password = settings_dict.get("PASSWORD") or ""
    credentials = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or ""
    port = settings_dict.get("PORT") or ""
    options = dict(settings_dict.get("OPTIONS") or {})
    if host.startswith("/"):  # a Unix socket directory goes in the query, as django-environ reads it
        options["host"], host = host, ""
    query = "&".join(f"{key}={quote(str(value), safe='/')}" for key, value in options.items())
    netloc = f"{credentials}{host}{':' + str(port) if port else ''}"
    return f"postgres://{netloc}/{quote(settings_dict['NAME'], safe='')}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Worker]:
    # The worker must see the test database: its name is known only once django_db_setup made it.
    with django_db_blocker.unblock():
        test_db = connection.settings_dict["NAME"]
        db_url = database_url(connection.settings_dict)
    if not test_db.startswith("test_"):  # never let a test worker loose on a real database
        pytest.fail(f"the worker would use database {test_db!r}, not a test database")

    hostname = f"faceid-test-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": celery_app.conf.broker_url,
        "CELERY_RESULT_BACKEND": celery_app.conf.result_backend,
        "CELERY_KEY_PREFIX": KEY_PREFIX,
        "DB_CONN_MAX_AGE": "0",  # hold no connection that would block dropping the test database
        "INFERENCE_WARMUP": "false",
        "PYTHONUNBUFFERED": "1",
        "AUDIT_HMAC_KEY": AUDIT_HMAC_KEY_FOR_TESTS,
    }
    command = [
        str(Path(sys.executable).with_name("celery")),
        *("-A", "config", "worker", "-Q", "inference,default", "--pool", "prefork", "-c", "1"),
        *("-n", hostname, "--loglevel", "INFO"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the teardown kills the pool children too
        )
    worker = Worker(hostname, process, log_path, test_db)
    try:
        _wait_until_ready(worker)
        yield worker
    finally:
        _stop(worker)
        _delete_keys(KEY_PREFIX)


@pytest.fixture(scope="session")
def pipeline_worker(celery_worker: Worker) -> Worker:
    """The worker with its models loaded (the first pipeline call of a process loads them).

    The models the tests use: the registry default, the one most tests pin (TEST_MODEL) and the
    fusion, so that no test's first call waits for a model load under the API's bounded wait.
    """
    from PIL import Image

    from faceid.contracts import PipelineRequest, encode_image
    from faceid.task_results import run_task
    from inference.embedders import DEFAULT_EMBEDDER
    from tests.plugins.factories import TEST_MODEL

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 120, 120)).save(buffer, format="PNG")
    for model in dict.fromkeys((DEFAULT_EMBEDDER, TEST_MODEL, "fusion_sface_intel")):
        request = PipelineRequest(
            kind="probe",
            images_b64=(encode_image(buffer.getvalue()),),
            embedder=model,
            mask_threshold=0.5,
        )
        run_task("faceid.worker.tasks.run_pipeline", request.to_json(), timeout=300)
    return celery_worker


def _wait_until_ready(worker: Worker) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            pytest.fail(f"the Celery worker exited with {worker.process.returncode}:\n{worker.log_tail()}")
        try:
            if celery_app.control.ping(destination=[worker.hostname], timeout=0.5):
                return
        except OSError as exc:  # the broker is unreachable: say so instead of waiting
            pytest.fail(f"cannot reach the broker {settings.REDIS_URL.split('@')[-1]}: {exc}")
    pytest.fail(f"the Celery worker did not answer a ping within {READY_TIMEOUT:g} s:\n{worker.log_tail()}")


def _delete_keys(prefix: str) -> None:
    """Leave nothing of this run in Redis (queues nobody consumed, bindings, unacked messages)."""
    import redis

    client = redis.Redis.from_url(celery_app.conf.broker_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass
    finally:
        client.close()


def _stop(worker: Worker) -> None:
    process = worker.process
    if process.poll() is None:
        process.terminate()  # warm shutdown
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    # Pool children (and anything they started) share the group: none may outlive the session.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)
