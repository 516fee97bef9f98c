"""docker/compose.yaml as deployed: every queue the code sends to has a consumer, Redis keeps
nothing on disk and wants a password, the inference worker holds no SECRET_KEY and no writing
database role, and beat runs the schedule. Read from the files (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER = REPO_ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
ENTRYPOINT = (DOCKER / "entrypoint.sh").read_text()


def _role_block(role: str) -> str:
    match = re.search(rf"^  {role}\)\n(.*?)^    ;;", ENTRYPOINT, re.S | re.M)
    assert match, f"docker/entrypoint.sh has no {role!r} role"
    return match.group(1)


def _entrypoint_default(variable: str) -> str:
    match = re.search(rf"\$\{{{variable}:-([^}}]*)\}}", ENTRYPOINT)
    assert match, f"docker/entrypoint.sh does not read {variable}"
    return match.group(1)


def _environment(service: str) -> dict[str, str]:
    return {key: str(value) for key, value in (SERVICES[service].get("environment") or {}).items()}


def consumed_queues() -> set[str]:
    """The queues of every service that runs the image's `worker` role (WORKER_QUEUES or the default)."""
    assert "-Q" in _role_block("worker") and "WORKER_QUEUES" in _role_block("worker")
    queues = set()
    for name, service in SERVICES.items():
        if service.get("command") == ["worker"]:
            value = _environment(name).get("WORKER_QUEUES", _entrypoint_default("WORKER_QUEUES"))
            queues |= {queue.strip() for queue in value.split(",") if queue.strip()}
    return queues


def routed_queues() -> set[str]:
    """Every queue the code sends to: the routes, the default queue, and where beat's tasks go."""
    from django.conf import settings

    from config import celery_app

    router = celery_app.amqp.router
    tasks = [
        *settings.CELERY_TASK_ROUTES,
        *(entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()),
    ]
    queues = {router.route({}, task.replace("*", "any"))["queue"].name for task in tasks}
    return queues | {settings.CELERY_TASK_DEFAULT_QUEUE}


def test_the_routes_name_both_queues():
    assert {"inference", "default"} <= routed_queues()


def test_compose_workers_consume_every_queue_the_code_routes_to():
    assert sorted(routed_queues() - consumed_queues()) == []


def test_the_gpu_worker_takes_only_pipeline_work():
    assert _environment("worker")["WORKER_QUEUES"] == "inference"
    assert "deploy" in SERVICES["worker"] and "deploy" not in SERVICES["jobs"]


def test_redis_wants_a_password_and_writes_nothing_to_disk():
    command = SERVICES["redis"]["command"]
    assert command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--appendonly") + 1] == "no"
    assert not SERVICES["redis"].get("volumes")
    for name in SERVICES:
        url = _environment(name).get("REDIS_URL")
        if url is not None:
            assert url.startswith("redis://:${REDIS_PASSWORD:?") and "}@redis:6379/" in url, name


@pytest.mark.parametrize("service", ["worker", "beat"])
def test_processes_that_sign_nothing_get_no_secret_key(service):
    env = _environment(service)
    assert "SECRET_KEY" not in env and env["FACEID_ROLE"] == "worker"


def test_the_inference_worker_uses_a_database_role_that_reads_no_table():
    def user(url: str) -> str:
        return url.split("://", 1)[1].split(":", 1)[0]  # interpolation syntax defeats urlsplit

    owner, role = user(_environment("web")["DATABASE_URL"]), user(_environment("worker")["DATABASE_URL"])
    assert role == "faceid_worker" != owner
    script = (DOCKER / "initdb" / "10-worker-role.sh").read_text()
    assert "CREATE ROLE faceid_worker LOGIN" in script and "GRANT" not in script.upper().replace("REVOKE", "")
    assert "./initdb:/docker-entrypoint-initdb.d:ro" in SERVICES["db"]["volumes"]
    assert "POSTGRES_WORKER_PASSWORD" in _environment("db")


def test_beat_runs_in_compose():
    assert SERVICES["beat"]["command"] == ["beat"]
    assert "celery -A config beat" in _role_block("beat")


def test_the_web_port_and_forwarded_headers_are_not_open_to_anyone():
    assert SERVICES["web"]["ports"] == ["${WEB_BIND:-127.0.0.1}:${WEB_PORT:-8000}:8000"]
    assert _entrypoint_default("FORWARDED_ALLOW_IPS") != "*"
    assert _environment("web")["TRUSTED_PROXY"] == "${TRUSTED_PROXY:-true}"


def test_every_required_variable_is_in_the_example_env_file():
    text = (DOCKER / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    example = {
        line.split("=", 1)[0] for line in (DOCKER / ".env.example").read_text().splitlines() if "=" in line
    }
    assert required and sorted(required - example) == []
