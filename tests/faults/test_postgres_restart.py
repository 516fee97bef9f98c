"""PostgreSQL restarted under a running web process: clean JSON failures while it is down, then success.

A private PostgreSQL 15 cluster (tests/faults/servers.py) on a free loopback port, migrated; the web
(gunicorn) runs on it with persistent connections (DB_CONN_MAX_AGE=60), so after the restart it
holds a dead connection. While the database is down, and on the first request after it returns,
the API must answer JSON 5xx (never Django's HTML error page nor a hang); then the same calls
succeed, each verify is audited, and the chain verifies.
"""

from __future__ import annotations

import json
import secrets

import pytest
from django.conf import settings

from tests.faults.servers import PrivatePostgres, Processes, base_env, free_port, http, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.django_db]

# A refused verify (unknown person) reaches the database twice (the claim, the audit row) and
# needs no pipeline: exactly what this test exercises.
VERIFY_BODY = json.dumps({"person": "nobody-here", "images": ["aGVsbG8="]}).encode()


def _verify(url: str, key: str) -> tuple[int, dict[str, str], bytes]:
    return http("POST", f"{url}/api/v1/verify/", key, body=VERIFY_BODY, content_type="application/json")


def _assert_clean_failure(answer: tuple[int, dict[str, str], bytes], what: str) -> None:
    status, headers, raw = answer
    assert status >= 500, (what, status, raw[:300])
    assert headers.get("Content-Type", "").startswith("application/json"), (what, headers, raw[:300])
    body = json.loads(raw)
    assert body.get("reason"), (what, body)
    assert b"Traceback" not in raw and b"<html" not in raw.lower(), (what, raw[:300])
    assert "decision" not in body and "match" not in body, (what, body)


@pytest.fixture
def stack(tmp_path):
    postgres = PrivatePostgres()
    prefix = f"faceid-fault-{secrets.token_hex(4)}:"
    processes = None
    try:
        postgres.init()
        postgres.start()
        postgres.create_database("faceid_fault")
        env = base_env(
            DATABASE_URL=postgres.url("faceid_fault"),
            REDIS_URL=settings.REDIS_URL,
            CELERY_KEY_PREFIX=prefix,
            CACHE_KEY_PREFIX=prefix,
            DB_CONN_MAX_AGE="60",
        )
        processes = Processes(tmp_path, env)
        processes.manage("migrate", "--noinput")
        processes.manage(
            "create_organization", "faults", "--name", "Faults", "--admin-email", "f@example.com"
        )
        key = (
            processes.manage("create_api_key", "faults", "--scopes", "verify,audit:read")
            .strip()
            .splitlines()[-1]
        )
        url = processes.web(free_port())
        wait_for(
            lambda: http("GET", f"{url}/api/v1/attempts/?page_size=1", key, timeout=2)[0] == 200,
            60,
            "the web server",
            log=lambda: processes.log("web"),
        )
        yield postgres, processes, url, key.strip()
    finally:
        if processes is not None:
            processes.stop_all()
        postgres.remove()


def test_postgres_restart_gives_json_errors_then_success(stack):
    postgres, processes, url, key = stack
    status, _, raw = _verify(url, key)
    assert status == 404 and json.loads(raw)["attempt_id"], raw

    postgres.stop("fast")  # terminates the web's open connection too
    _assert_clean_failure(http("GET", f"{url}/api/v1/attempts/?page_size=1", key), "list while down")
    _assert_clean_failure(_verify(url, key), "verify while down")

    postgres.start()  # same port, same data
    # The web may spend one request discovering its dead connection: that one fails cleanly too.
    answers = []

    def persons_answer_200() -> bool:
        answers.append(http("GET", f"{url}/api/v1/attempts/?page_size=1", key, timeout=5))
        return answers[-1][0] == 200

    wait_for(persons_answer_200, 30, "the API answering again after the restart", interval=0.5)
    for answer in answers[:-1]:
        _assert_clean_failure(answer, "first calls after the restart")
    status, _, raw = _verify(url, key)
    assert status == 404, raw
    assert json.loads(raw)["attempt_id"]

    # Every verify that was answered with a decision or refusal has its audit row; the chain holds.
    status, _, raw = http("GET", f"{url}/api/v1/attempts/", key)
    assert status == 200, raw
    rows = json.loads(raw)
    assert rows["count"] == 2, rows
    out = processes.manage("verify_audit_chain", "faults")
    assert "OK" in out and "BROKEN" not in out, out
