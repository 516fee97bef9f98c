"""Redis (broker, result backend and cache) stopped while a verify waits for the pipeline.

A private redis-server, a real Celery worker and gunicorn on the test database, with
PIPELINE_WAIT_SECONDS=5. The worker is paused (SIGSTOP) so that a verify waits for its task, then
Redis is killed: the waiting verify must answer 503 with Retry-After within the bounded wait
(JSON, audited, no decision). Redis comes back on the same port, the worker resumes, and verifies
succeed again; every answered verify has its audit row and the chain holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from faceid.audit import verify_chain
from faceid.models import VerificationAttempt
from tests.faults.servers import PrivateRedis, Processes, base_env, free_port, http, wait_for
from tests.plugins.celery_worker import database_url
from tests.portraits import ALICE
from toolkit.bench_api import _multipart

pytestmark = [pytest.mark.slow, pytest.mark.integration]

WAIT_SECONDS = 5


@pytest.fixture
def stack(org_client, tmp_path):
    organization, client = org_client
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    env = base_env(
        DATABASE_URL=database_url(connection.settings_dict),
        REDIS_URL=redis_server.url(0),
        PIPELINE_WAIT_SECONDS=str(WAIT_SECONDS),
        DB_CONN_MAX_AGE="0",  # hold no connection that would block dropping the test database
        INFERENCE_WARMUP="true",
    )
    processes = Processes(tmp_path, env)
    try:
        worker = processes.worker(f"faults-redis-{free_port()}@localhost")
        url = processes.web(free_port())
        key = client.api_key_plaintext
        wait_for(
            lambda: http("GET", f"{url}/api/v1/attempts/?page_size=1", key, timeout=2)[0] == 200,
            60,
            "the web server",
            log=lambda: processes.log("web"),
        )
        yield organization, redis_server, processes, worker, url, key
    finally:
        processes.stop_all()
        redis_server.stop()


def _verify(url: str, key: str, photo: bytes, timeout: float = 60):
    body, content_type = _multipart({"person": "alice"}, [("image", "probe.jpg", photo)])
    return http("POST", f"{url}/api/v1/verify/", key, body=body, content_type=content_type, timeout=timeout)


def test_redis_stopped_while_a_verify_waits_gives_503_then_recovers(stack, portrait):
    organization, redis_server, processes, worker, url, key = stack
    status, _, raw = http(
        "POST", f"{url}/api/v1/persons/", key,
        body=json.dumps({"external_id": "alice"}).encode(), content_type="application/json",
    )  # fmt: skip
    assert status == 201, raw
    person_id = json.loads(raw)["id"]
    body, content_type = _multipart({}, [("image", "enroll.jpg", portrait(ALICE[1][0]))])
    # The worker loads its models at start: the first calls may time out while it does.
    enrolled: list[int] = []

    def enroll() -> bool:
        status, _, raw = http(
            "POST", f"{url}/api/v1/persons/{person_id}/faces/", key, body=body, content_type=content_type
        )
        enrolled.append(status)
        return status == 201

    wait_for(enroll, 60, "an enrollment through the worker", interval=1, log=lambda: processes.log("worker"))
    probe = portrait(ALICE[1][1])
    status, _, raw = _verify(url, key, probe)
    assert status == 200 and json.loads(raw)["decision"] == "accept", raw

    os.killpg(worker.pid, signal.SIGSTOP)  # the verify's task waits in the queue
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(_verify, url, key, probe)
            time.sleep(1.5)
            redis_server.stop()
            status, headers, raw = waiting.result(timeout=60)
        answered_after = time.monotonic() - started
    finally:
        os.killpg(worker.pid, signal.SIGCONT)

    assert status == 503, (status, headers, raw[:500])
    assert answered_after < WAIT_SECONDS + 5, answered_after
    assert headers.get("Content-Type", "").startswith("application/json"), raw[:300]
    refused = json.loads(raw)
    assert "decision" not in refused and "match" not in refused, refused
    assert int(headers.get("Retry-After", "0")) > 0, headers
    assert VerificationAttempt.objects.filter(pk=refused["attempt_id"], decision="error").exists()

    redis_server.start()  # same port and password; nothing of the queue survived
    recovered: list[int] = []

    def verify_accepts() -> bool:
        status, _, raw = _verify(url, key, probe, timeout=30)
        recovered.append(status)
        with contextlib.suppress(ValueError):
            return status == 200 and json.loads(raw)["decision"] == "accept"
        return False

    wait_for(
        verify_accepts,
        45,
        "a verify accepted after Redis returned",
        interval=1,
        log=lambda: processes.log("worker"),
    )
    rows = VerificationAttempt.objects.filter(organization=organization, mode="verify")
    # Every verify answered with a decision or an audited refusal has its row (a call refused
    # before the flow, e.g. by the rate limiter while Redis is still unreachable, has none).
    answered = 2 + sum(1 for status in recovered if status in (200, 503, 504))
    assert rows.count() == answered, (recovered, [(r.decision, r.reason) for r in rows])
    assert verify_chain(organization).ok
