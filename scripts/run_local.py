"""`make run`: the whole of faceid on one machine, stopped cleanly by Ctrl-C; `make manage`: one
management command against that same local stack.

Starts (unless DATABASE_URL / REDIS_URL name servers) an embedded PostgreSQL with pgvector and an
embedded Redis, keeping their data under ./var; migrates; creates the demo organization, its admin
and an API key once (printed at every start); then runs a Celery worker, Celery beat (the
housekeeping schedule of settings.CELERY_BEAT_SCHEDULE: expired kept images, audit heads) and
the web server on http://127.0.0.1:8000 until SIGINT/SIGTERM/SIGHUP, and stops everything it
started, in order.

Environment: WEB_HOST (127.0.0.1), WEB_PORT (8000), WORKER_CONCURRENCY (1), plus the app's own
(DATABASE_URL, REDIS_URL, SECRET_KEY, DEBUG, ...). SECRET_KEY defaults to one generated into
var/secret_key on the first run.

    python scripts/run_local.py                  # make run
    python scripts/run_local.py manage ARGS...   # make manage ARGS="..."

`manage` runs `manage.py ARGS...` with the environment `make run` gives its processes. The embedded
PostgreSQL is shared with a running `make run` (or started for the command's duration), and so is
its Redis (reused while it runs, else started on the same data and stopped after).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localstack import REPO, VAR, _die_with_parent, _read_or_create_secret, _say, services  # noqa: E402

PY = sys.executable
DATABASE = "faceid"  # in the embedded PostgreSQL
DEMO_SLUG = "demo"
DEMO_NAME = "Demo Organization"
DEMO_ADMIN_EMAIL = "admin@example.com"
DEMO_SCOPES = "enroll,verify,identify,audit:read"


class Stop(Exception):
    """A stop signal arrived."""


def _on_signal(signum, _frame):
    # Further signals must not interrupt the shutdown itself.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise Stop(signal.Signals(signum).name)


def manage(env: dict[str, str], *args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [PY, str(REPO / "manage.py"), *args],
        env=env,
        cwd=REPO,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout or ""


def ensure_demo(env: dict[str, str]) -> dict[str, str]:
    """Create the demo organization, its admin and an API key unless they exist; return them."""
    password = _read_or_create_secret(VAR / "demo_admin_password", 12)
    key_file = VAR / "demo_api_key"
    output = manage(
        env,
        "create_organization",
        DEMO_SLUG,
        "--name",
        DEMO_NAME,
        "--admin-email",
        DEMO_ADMIN_EMAIL,
        "--admin-password",
        password,
        "--if-not-exists",
        capture=True,
    )
    if "already exists" not in output:
        _say(f"created the demo organization {DEMO_SLUG!r}")
        key_file.unlink(missing_ok=True)  # a key from an earlier database is of no use
    # Local only: the demo owner may also use Django's /admin/.
    promote = (
        "from django.contrib.auth import get_user_model\n"
        f"user = get_user_model().objects.get(email__iexact={DEMO_ADMIN_EMAIL!r})\n"
        "if not (user.is_staff and user.is_superuser):\n"
        "    user.is_staff = user.is_superuser = True\n"
        "    user.save(update_fields=['is_staff', 'is_superuser'])\n"
        "print(user.get_username())\n"
    )
    username = manage(env, "shell", "-c", promote, capture=True).strip().splitlines()[-1]
    if not key_file.exists():
        output = manage(env, "create_api_key", DEMO_SLUG, "--scopes", DEMO_SCOPES, capture=True)
        key = output.strip().splitlines()[-1].strip()
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
    return {"username": username, "password": password, "api_key": key_file.read_text().strip()}


def start(name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
    _say(f"starting {name}: {' '.join(command)}")
    # Own session, so that Ctrl-C reaches only this supervisor, which then stops each in order;
    # PR_SET_PDEATHSIG stops it too if the supervisor is killed outright.
    return subprocess.Popen(
        command,
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


def stop(name: str, process: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the process (warm shutdown for Celery), then SIGKILL its whole process group."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            _say(f"{name} did not stop within {grace:g} s: killing it")
    # Whatever it left in its group (prefork children, the autoreloader's server) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)
    _say(f"{name} stopped")


def wait_for_web(url: str, processes: dict[str, subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _check_alive(processes)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the web server did not answer {url} within {timeout:g} s")


def wait_for_worker(
    env: dict[str, str], hostname: str, processes: dict[str, subprocess.Popen], timeout: float
) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(REPO))
    from config.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _check_alive(processes)
        if app.control.ping(destination=[hostname], timeout=1.0):
            return
    raise RuntimeError(f"the Celery worker {hostname} did not answer a ping within {timeout:g} s")


def _check_alive(processes: dict[str, subprocess.Popen]) -> None:
    for name, process in processes.items():
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def local_env(urls: dict[str, str]) -> dict[str, str]:
    """The environment of every process of the local stack: the stores' URLs, DEBUG, the kept secret."""
    return {
        **os.environ,
        **urls,
        "DEBUG": os.environ.get("DEBUG", "true"),
        "SECRET_KEY": os.environ.get("SECRET_KEY") or _read_or_create_secret(VAR / "secret_key", 48),
        "AUDIT_HMAC_KEY": os.environ.get("AUDIT_HMAC_KEY")
        or _read_or_create_secret(VAR / "audit_hmac_key", 48),
        "AUDIT_HEAD_DIR": os.environ.get("AUDIT_HEAD_DIR") or str(VAR / "audit-heads"),
        # The application may only SELECT and INSERT the audit table (migrations run as the owner).
        "DATABASE_APP_ROLE": os.environ.get("DATABASE_APP_ROLE", "faceid_app"),
        "PYTHONUNBUFFERED": "1",
    }


def local_services(*, reuse_redis: bool = False) -> contextlib.AbstractContextManager[dict[str, str]]:
    # Redis holds task messages, results and job records (images, embeddings): never on disk.
    return services(
        database=DATABASE, redis_dir=VAR / "redis", persistent_redis=False, reuse_redis=reuse_redis
    )


def serve(
    urls: dict[str, str], host: str, port: int, concurrency: str, processes: dict[str, subprocess.Popen]
) -> None:
    database = urls["DATABASE_URL"] if os.environ.get("DATABASE_URL") else f"embedded, {VAR / 'pg'}"
    redis = urls["REDIS_URL"].split("@")[-1] if os.environ.get("REDIS_URL") else f"embedded, {VAR / 'redis'}"
    env = local_env(urls)
    manage(env, "migrate", "--noinput")
    demo = ensure_demo(env)
    worker_name = f"faceid-local-{os.getpid()}@{socket.gethostname()}"
    celery = str(Path(PY).with_name("celery"))
    processes["celery worker"] = start(
        "celery worker",
        [
            celery,
            "-A",
            "config",
            "worker",
            "-Q",
            "inference,default",
            "--pool",
            "prefork",
            "--concurrency",
            concurrency,
            "-n",
            worker_name,
            "--loglevel",
            "INFO",
        ],
        env,
    )
    processes["celery beat"] = start(
        "celery beat",
        [celery, "-A", "config", "beat", "-s", str(VAR / "celerybeat-schedule"), "--loglevel", "INFO"],
        env,
    )
    processes["web server"] = start(
        "web server", [PY, str(REPO / "manage.py"), "runserver", f"{host}:{port}"], env
    )
    base = f"http://{host}:{port}"
    wait_for_web(f"{base}/admin/login/", processes, timeout=90)
    wait_for_worker(env, worker_name, processes, timeout=90)
    print(
        "\n"
        "  faceid is running\n"
        f"    web        {base}/   admin {base}/admin/\n"
        f"    API        schema {base}/api/schema/   docs {base}/api/docs/\n"
        f"    admin      user {demo['username']}   password {demo['password']}   (local superuser)\n"
        f"    API key    {demo['api_key']}   (organization {DEMO_SLUG!r}, scopes {DEMO_SCOPES})\n"
        f"    worker     {worker_name} (queues inference,default), celery beat\n"
        f"    database   {database}\n"
        f"    redis      {redis}\n"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )
    while True:
        _check_alive(processes)
        time.sleep(0.5)


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    host = os.environ.get("WEB_HOST", "127.0.0.1")
    port = int(os.environ.get("WEB_PORT", "8000"))
    concurrency = os.environ.get("WORKER_CONCURRENCY", "1")
    if not _port_free(host, port):
        _say(f"{host}:{port} is in use: stop what holds it or set WEB_PORT")
        return 1
    VAR.mkdir(exist_ok=True)
    processes: dict[str, subprocess.Popen] = {}
    code = 0
    try:
        with local_services() as urls:
            try:
                serve(urls, host, port, concurrency, processes)
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_IGN)
                # Stop taking requests, then finish running tasks; leaving `services` stops the stores.
                if "web server" in processes:
                    stop("web server", processes["web server"], grace=10)
                if "celery beat" in processes:
                    stop("celery beat", processes["celery beat"], grace=10)
                if "celery worker" in processes:
                    stop("celery worker", processes["celery worker"], grace=30)
    except Stop as signal_name:
        _say(f"{signal_name}: stopping")
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        _say(f"error: {exc}")
        code = 1
    _say("all stopped")
    return code


def run_management_command(args: list[str]) -> int:
    """`make manage ARGS=...`: manage.py ARGS with the settings, secrets and stores of `make run`."""
    if not args:
        _say('usage: make manage ARGS="create_organization acme --name Acme --admin-email ..."')
        return 2
    VAR.mkdir(exist_ok=True)
    try:
        with local_services(reuse_redis=True) as urls:
            command = [PY, str(REPO / "manage.py"), *args]
            return subprocess.run(command, env=local_env(urls), cwd=REPO).returncode
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    if sys.argv[1:2] == ["manage"]:
        sys.exit(run_management_command(sys.argv[2:]))
    sys.exit(main())
