"""Private servers for the fault tests: each test stops and restarts only what it started here.

The machine's shared PostgreSQL (5432) and Redis (6379) are never touched: a private redis-server
(Debian's binary) and a private PostgreSQL cluster (initdb/pg_ctl of the PostgreSQL 15 packages,
with pgvector) on free loopback ports, and the web (gunicorn) and Celery worker as subprocesses
pointed at them. Everything is stopped and removed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from toolkit.bench_api import request, run_manage, spawn, web_command, worker_command

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PG_BIN = Path(os.environ.get("FACEID_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.1,
    log: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(interval)
    pytest.fail(f"{what} not within {timeout:g} s" + (f":\n{log()}" if log else ""))


class PrivateRedis:
    """redis-server on 127.0.0.1:<free port> with a password; stop() and start() keep port and password."""

    def __init__(self, workdir: Path) -> None:
        if not Path(REDIS_SERVER).exists():
            pytest.skip("redis-server is not installed")
        self.workdir = workdir
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

    def ping(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.url(), socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def start(self) -> None:
        command = [
            REDIS_SERVER,
            *("--bind", "127.0.0.1", "--port", str(self.port), "--requirepass", self.password),
            *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
        ]
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self.ping, 15, "the private redis-server answering")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # an outage, not a clean shutdown
            self.process.wait(10)
        self.process = None


class PrivatePostgres:
    """A PostgreSQL 15 cluster (trust auth, user postgres) on 127.0.0.1:<free port>, pgvector available."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            pytest.skip(f"PostgreSQL binaries not found in {PG_BIN}")
        # Not under pytest's tmp_path: the postgres user must be able to reach it.
        self.workdir = Path(tempfile.mkdtemp(prefix="faceid-fault-pg-"))
        self.datadir = self.workdir / "pgdata"
        self.port = free_port()
        # PostgreSQL refuses to run as root: as root, the cluster belongs to the system user postgres.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _pg(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.as_user, str(PG_BIN / tool), *args], capture_output=True, text=True, cwd="/", timeout=60
        )
        if done.returncode:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def init(self) -> None:
        if self.as_user:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._pg("initdb", "-D", str(self.datadir), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.workdir} -c fsync=off"
        self._pg(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.workdir / "pg.log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._pg("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        import psycopg2

        connection = psycopg2.connect(dbname="postgres", user="postgres", host="127.0.0.1", port=self.port)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError, RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)


class Processes:
    """Subprocesses of one test (gunicorn, a Celery worker, manage.py), each in its own process group."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.running: dict[str, subprocess.Popen] = {}

    def manage(self, *args: str) -> str:
        done = run_manage(*args, env=self.env, timeout=120)
        assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr[-3000:]}"
        return done.stdout

    def spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        self.running[name] = spawn(name, command, env=self.env, log_dir=self.log_dir)
        return self.running[name]

    def web(self, port: int) -> str:
        self.spawn("web", web_command(port))
        return f"http://127.0.0.1:{port}"

    def worker(self, hostname: str) -> subprocess.Popen:
        return self.spawn("worker", worker_command(hostname))

    def log(self, name: str, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return "(no log)"

    def stop_all(self) -> None:
        for process in self.running.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        self.running.clear()


def http(
    method: str, url: str, key: str, *, body: bytes | None = None, content_type: str = "", timeout: float = 60
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, raw body): raw, so that a test can tell JSON from an HTML error page."""
    return request(url, key, method=method, body=body, content_type=content_type, timeout=timeout)


def base_env(**overrides: str) -> dict[str, str]:
    """The environment of a private stack: the test's own, with secrets and limits for a test run.

    The audit chain's key is the test process's, so that the test can verify what the stack wrote.
    """
    from django.conf import settings

    hmac_key = getattr(settings, "AUDIT_HMAC_KEY", "")
    return {
        **os.environ,
        **({"AUDIT_HMAC_KEY": hmac_key} if hmac_key else {}),
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(32),
        "DEBUG": "false",
        "HTTPS": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "API_RATE_LIMIT": "100000/minute",
        "API_PIPELINE_RATE_LIMIT": "100000/minute",
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }
