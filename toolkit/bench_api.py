"""Verify latency through the REST API, end to end: HTTP -> Django -> Celery `inference` worker -> back.

    python -m toolkit.bench_api [--requests 120] [--out docs/benchmarks/api_verify_latency.json]

By default it is self-contained: with DATABASE_URL and REDIS_URL pointing at a PostgreSQL server
(with pgvector) and Redis, it creates a throwaway database, migrates it, starts a Celery worker
(`-Q inference,default -c 1`, models loaded at start) and gunicorn on 127.0.0.1, provisions an
organization and an API key with the management commands, enrolls one person from
../shared/data/portraits through the API, then times `--requests` sequential POST /api/v1/verify/
calls with another photo of that person, and stops and drops everything it started.

Against a running deployment instead: --url http://host:port --key fid_... --person <external id>.

Reported: client-side wall time per request (what a door controller waits) and the server's own
`latency_ms` (request start to decision, including the queue round trip), median/p95/p99/mean/min/
max, plus the machine (CPU model, cores, load average before and after) since both depend on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from toolkit.json_output import print_and_save
from toolkit.paths import BENCHMARKS, REPO_ROOT, SHARED_DATA

PORTRAITS = SHARED_DATA / "portraits"
DEFAULT_OUT = BENCHMARKS / "api_verify_latency.json"
ENROLL_PHOTOS = ("img1.jpg", "img2.jpg")  # id00
PROBE_PHOTO = "img10.jpg"  # id00, another photo


# --- HTTP -----------------------------------------------------------------------------------------


def _multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, filename, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def request(
    url: str,
    key: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    content_type: str = "",
    timeout: float = 120.0,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, raw body) of one API call with the key: raw, so that a caller can tell a
    JSON answer from an HTML error page."""
    call = urllib.request.Request(url, data=body, method=method)
    call.add_header("Authorization", f"Bearer {key}")
    if content_type:
        call.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(call, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _call(url: str, key: str, **options: object) -> tuple[int, dict]:
    """(status, JSON body) of one API call."""
    status, _, raw = request(url, key, **options)  # type: ignore[arg-type]
    return status, json.loads(raw or b"{}")


def create_person(url: str, key: str, external_id: str, display_name: str) -> int:
    """A new person of the key's organization; exits when the API refuses."""
    status, body = _call(
        f"{url}/api/v1/persons/",
        key,
        method="POST",
        content_type="application/json",
        body=json.dumps({"external_id": external_id, "display_name": display_name}).encode(),
    )
    if status != 201:
        raise SystemExit(f"creating the person {external_id} failed: {status} {body}")
    return body["id"]


def enroll_photos(
    url: str, key: str, person_id: int, files: list[tuple[str, str, bytes]]
) -> tuple[int, dict]:
    """(status, body) of enrolling these (field, filename, bytes) photos of a person."""
    data, content_type = _multipart({}, files)
    return _call(
        f"{url}/api/v1/persons/{person_id}/faces/",
        key,
        method="POST",
        body=data,
        content_type=content_type,
        timeout=300,
    )


def _jpeg(path: Path, max_side: int = 800) -> bytes:
    import io

    from PIL import Image

    image = Image.open(path).convert("RGB")
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


# --- the self-hosted stack ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def run_manage(*args: str, env: dict[str, str], timeout: float | None = None) -> subprocess.CompletedProcess:
    """`manage.py ARGS` in the checkout with `env`; its output captured as text."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def spawn(name: str, command: list[str], *, env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    """Start a service of the stack in its own process group, its output in `log_dir`/<name>.log."""
    log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def worker_command(hostname: str, *, loglevel: str = "INFO") -> list[str]:
    """A Celery worker as `make run` starts one: both queues, prefork, one process."""
    return [
        str(Path(sys.executable).with_name("celery")),
        *("-A", "config", "worker", "-Q", "inference,default", "-c", "1", "--pool", "prefork"),
        *("-n", hostname, "--loglevel", loglevel),
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]


def web_command(port: int) -> list[str]:
    """gunicorn on 127.0.0.1:`port`, one process with four threads."""
    return [
        str(Path(sys.executable).with_name("gunicorn")),
        *("config.wsgi", "-b", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4", "--timeout", "120"),
    ]


class Stack:
    """A throwaway database, a Celery worker and gunicorn; stopped and dropped on exit."""

    def __init__(self, log_dir: Path) -> None:
        base = os.environ.get("DATABASE_URL")
        if not base or not os.environ.get("REDIS_URL"):
            raise SystemExit(
                "set DATABASE_URL and REDIS_URL (or use --url/--key/--person against a deployment)"
            )
        self.base_url = base
        self.db_name = f"faceid_bench_{secrets.token_hex(4)}"
        self.db_url = _with_database(base, self.db_name)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prefix = f"faceid-bench-{secrets.token_hex(4)}:"
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []
        self.env = {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "CELERY_KEY_PREFIX": self.prefix,
            "CACHE_KEY_PREFIX": self.prefix,
            "SECRET_KEY": os.environ.get("SECRET_KEY", secrets.token_urlsafe(32)),
            "DEBUG": "false",
            "HTTPS": "false",
            "ALLOWED_HOSTS": "127.0.0.1",
            "INFERENCE_WARMUP": "true",
            "API_PIPELINE_RATE_LIMIT": "100000/minute",
            "API_RATE_LIMIT": "100000/minute",
            "PYTHONUNBUFFERED": "1",
        }

    def _admin_sql(self, sql: str) -> None:
        import psycopg2

        parts = urlsplit(self.base_url)
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        connection = psycopg2.connect(
            dbname="postgres",
            user=parts.username or None,
            password=parts.password or None,
            host=query.get("host") or parts.hostname or None,
            port=parts.port or None,
        )
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
        finally:
            connection.close()

    def _run(self, *args: str) -> str:
        result = run_manage(*args, env=self.env)
        if result.returncode:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        process = spawn(name, command, env=self.env, log_dir=self.log_dir)
        self.processes.append(process)
        return process

    def start(self) -> tuple[str, str]:
        """Start everything; return (base URL, API key)."""
        self._admin_sql(f'CREATE DATABASE "{self.db_name}"')
        self._run("migrate", "--noinput")
        self._run("create_organization", "bench", "--name", "Benchmark", "--admin-email", "bench@example.com")
        key = self._run("create_api_key", "bench", "--scopes", "enroll,verify,identify,audit:read").strip()
        key = key.splitlines()[-1].strip()
        self._spawn("worker", worker_command(f"bench-{secrets.token_hex(3)}@%h", loglevel="WARNING"))
        self._spawn("web", web_command(self.port))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                status, _ = _call(f"{self.url}/api/v1/attempts/?page_size=1", key, timeout=2)
                if status == 200:
                    return self.url, key
            if any(p.poll() is not None for p in self.processes):
                break
            time.sleep(0.5)
        raise SystemExit(f"the web server did not come up; see {self.log_dir}")

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        with contextlib.suppress(Exception):
            self._admin_sql(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        with contextlib.suppress(Exception):
            import redis

            client = redis.Redis.from_url(os.environ["REDIS_URL"])
            keys = list(client.scan_iter(match=f"*{self.prefix}*", count=500))
            if keys:
                client.delete(*keys)


# --- measuring ------------------------------------------------------------------------------------


def _summary(values: list[float]) -> dict[str, float]:
    import numpy as np

    array = np.asarray(values, dtype=float)
    return {
        "median": round(float(np.median(array)), 1),
        "p95": round(float(np.percentile(array, 95)), 1),
        "p99": round(float(np.percentile(array, 99)), 1),
        "mean": round(float(array.mean()), 1),
        "min": round(float(array.min()), 1),
        "max": round(float(array.max()), 1),
    }


def _machine() -> dict:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def enroll_person(url: str, key: str, external_id: str) -> None:
    person_id = create_person(url, key, external_id, "Bench person")
    files = [("image", name, _jpeg(PORTRAITS / name)) for name in ENROLL_PHOTOS]
    status, body = enroll_photos(url, key, person_id, files)
    if status != 201:
        raise SystemExit(f"enrollment failed: {status} {body}")


def measure(url: str, key: str, person: str, *, requests: int, warmup: int) -> dict:
    probe = _jpeg(PORTRAITS / PROBE_PHOTO)
    data, content_type = _multipart({"person": person}, [("image", PROBE_PHOTO, probe)])
    wall: list[float] = []
    server: list[float] = []
    pipeline: list[float] = []
    decisions: dict[str, int] = {}
    load_before = os.getloadavg()
    for index in range(warmup + requests):
        started = time.perf_counter()
        status, body = _call(
            f"{url}/api/v1/verify/", key, method="POST", body=data, content_type=content_type
        )
        elapsed = (time.perf_counter() - started) * 1000.0
        if status != 200:
            raise SystemExit(f"verify answered {status}: {body}")
        if index < warmup:
            continue
        wall.append(elapsed)
        server.append(float(body["latency_ms"]))
        pipeline.append(float(body.get("pipeline_ms") or 0.0))
        decision = body["decision"]
        decisions[decision] = decisions.get(decision, 0) + 1
    return {
        "requests": requests,
        "warmup_requests": warmup,
        "probe": {"file": f"portraits/{PROBE_PHOTO}", "bytes": len(probe)},
        "client_wall_ms": _summary(wall),
        "server_latency_ms": _summary(server),
        "pipeline_stages_ms": _summary(pipeline),
        "decisions": decisions,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--url", help="an already running deployment (then also --key and --person)")
    parser.add_argument("--key", help="API key with the verify scope")
    parser.add_argument("--person", help="external id of an enrolled person")
    args = parser.parse_args(argv)
    if args.requests < 100:
        parser.error("use at least 100 requests for a meaningful p95")

    stack = None
    try:
        if args.url:
            if not (args.key and args.person):
                parser.error("--url needs --key and --person")
            url, key, person, mode = args.url.rstrip("/"), args.key, args.person, "external deployment"
        else:
            import tempfile

            log_dir = Path(tempfile.mkdtemp(prefix="faceid-bench-"))
            stack = Stack(log_dir)
            print(f"starting a throwaway stack (logs in {log_dir}) ...", file=sys.stderr)
            url, key = stack.start()
            person, mode = (
                "bench-0001",
                "self-hosted: gunicorn (1 worker, 4 threads) + celery prefork -c 1, same machine",
            )
            enroll_person(url, key, person)
        print(f"measuring {args.requests} verify calls against {url} ...", file=sys.stderr)
        result = measure(url, key, person, requests=args.requests, warmup=args.warmup)
    finally:
        if stack is not None:
            stack.stop()
    report = {
        "what": "POST /api/v1/verify/ (one 800 px JPEG, multipart), sequential, synchronous (bounded wait)",
        "mode": mode,
        "machine": _machine(),
        "torch_threads_env": os.environ.get("INFERENCE_THREADS", "0 (torch default)"),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **result,
    }
    print_and_save(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
