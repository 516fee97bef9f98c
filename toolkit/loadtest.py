"""Load benchmark: concurrent clients verifying real LFW photos against a `make run`-style stack.

    python -m toolkit.loadtest [--clients 1,4,16] [--duration 30] [--out docs/benchmarks/load.json]

It starts the throwaway stack of `toolkit.bench_api` (a database of its own on DATABASE_URL's
server, a real Celery worker `-c 1` on REDIS_URL, gunicorn with 1 worker and 4 threads; all
stopped and dropped afterwards), enrolls a few LFW identities through the API (the first photo
the quality gate accepts; the probes are the other photos it can use, checked once before
measuring), then for each number of clients runs that many threads, each posting
POST /api/v1/verify/ with those probes, back to back, for `--duration` seconds. Reported per
level: throughput, latency p50/p95/p99, status codes, errors (anything but 200), and the audit
rows written, which must equal the requests answered; afterwards the audit chain must verify
(`manage.py verify_audit_chain`). The machine and its load average (before and after) are
recorded: on a shared machine the figures are indicative only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from toolkit.bench_api import Stack, _call, _jpeg, _machine, _multipart, create_person, enroll_photos
from toolkit.json_output import print_and_save
from toolkit.paths import BENCHMARKS, SHARED_DATA

LFW = SHARED_DATA / "lfw" / "images"
DEFAULT_OUT = BENCHMARKS / "load.json"
ORGANIZATION = "bench"  # what Stack.start provisions


def lfw_candidates(root: Path) -> list[tuple[str, list[Path]]]:
    """(name, photos) of the LFW identities with at least two photos, in a fixed order."""
    people = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        if len(photos) >= 2:
            people.append((folder.name, photos))
    if not people:
        raise SystemExit(f"no LFW identity with two photos under {root}")
    return people


def enroll(url: str, key: str, name: str, photos: list[Path]) -> Path | None:
    """Create the person and enroll the first photo the pipeline accepts; that photo, or None."""
    person_id = create_person(url, key, name, name.replace("_", " "))
    for photo in photos[:-1]:  # keep at least one photo to probe with
        status, enrolled = enroll_photos(url, key, person_id, [("image", photo.name, _jpeg(photo))])
        if status == 201:
            return photo
        if status != 422:  # 422: this photo was refused (blur, pose), another may do
            raise SystemExit(f"enrolling {name} failed: {status} {enrolled}")
    return None


def usable_probes(url: str, key: str, name: str, photos: list[Path], limit: int) -> list[tuple[bytes, str]]:
    """Verify bodies of up to `limit` photos the pipeline can use (answered 200, accept or reject):
    LFW has photos the quality gate refuses, which would count as errors under load."""
    bodies = []
    for photo in photos:
        body = _multipart({"person": name}, [("image", photo.name, _jpeg(photo))])
        status, _ = _call(f"{url}/api/v1/verify/", key, method="POST", body=body[0], content_type=body[1])
        if status == 200:
            bodies.append(body)
        if len(bodies) == limit:
            break
    return bodies


def audit_rows(url: str, key: str) -> int:
    status, body = _call(f"{url}/api/v1/attempts/?mode=verify&page_size=1", key)
    if status != 200:
        raise SystemExit(f"reading the audit log failed: {status} {body}")
    return int(body["count"])


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return round(float(np.percentile(np.asarray(values, dtype=float), q)), 1) if values else 0.0


def run_level(url: str, key: str, bodies: list[tuple[bytes, str]], clients: int, duration: float) -> dict:
    """`clients` threads verifying back to back for `duration` seconds; what they saw."""
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    decisions: dict[str, int] = {}
    errors: list[str] = []
    stop_at = time.monotonic() + duration

    def client(index: int) -> None:
        turn = index
        while time.monotonic() < stop_at:
            data, content_type = bodies[turn % len(bodies)]
            turn += clients
            started = time.perf_counter()
            try:
                status, body = _call(
                    f"{url}/api/v1/verify/", key, method="POST", body=data, content_type=content_type
                )
            except OSError as exc:  # a refused or dropped connection is an error too
                status, body = 0, {"reason": type(exc).__name__}
            elapsed = (time.perf_counter() - started) * 1000.0
            with lock:
                latencies.append(elapsed)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 200:
                    decisions[body["decision"]] = decisions.get(body["decision"], 0) + 1
                elif len(errors) < 10:
                    errors.append(f"{status} {body.get('reason')}: {body.get('detail', '')}"[:200])

    rows_before = audit_rows(url, key)
    load_before = os.getloadavg()
    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    rows_written = audit_rows(url, key) - rows_before
    requests = len(latencies)
    return {
        "clients": clients,
        "duration_s": round(elapsed, 1),
        "requests": requests,
        "throughput_rps": round(requests / elapsed, 2),
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "max": round(max(latencies), 1) if latencies else 0.0,
        },
        "statuses": statuses,
        "decisions": decisions,
        "errors": requests - statuses.get("200", 0),
        "error_samples": errors,
        "audit_rows_written": rows_written,
        "audit_rows_equal_requests": rows_written == requests,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = report["levels"]
    clients = [level["clients"] for level in levels]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(clients, [level["throughput_rps"] for level in levels], marker="o")
    left.set(
        xlabel="concurrent clients",
        ylabel="verifies per second",
        title="Throughput",
        xscale="log",
        xticks=clients,
    )
    left.set_xticklabels([str(c) for c in clients])
    for q in ("p50", "p95", "p99"):
        right.plot(clients, [level["latency_ms"][q] for level in levels], marker="o", label=q)
    right.set(
        xlabel="concurrent clients",
        ylabel="ms (client wall time)",
        title="Latency",
        xscale="log",
        xticks=clients,
    )
    right.set_xticklabels([str(c) for c in clients])
    right.legend()
    figure.suptitle(f"POST /api/v1/verify/, {report['mode']}; {report['uptime_before']} before", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def uptime() -> str:
    load = os.getloadavg()
    return f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,4,16", help="comma-separated concurrency levels")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per level")
    parser.add_argument("--people", type=int, default=8, help="LFW identities enrolled")
    parser.add_argument("--root", type=Path, default=LFW, help="LFW images folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--plot", type=Path, help="PNG path (default: the JSON path with .png)")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",") if c.strip()]
    if not levels or min(levels) < 1 or args.duration <= 0:
        parser.error("give positive client counts and duration")

    candidates = lfw_candidates(args.root)
    log_dir = Path(tempfile.mkdtemp(prefix="faceid-load-"))
    stack = Stack(log_dir)
    # A load test measures capacity, not the per-key and per-organization limits.
    stack.env["API_ORG_PIPELINE_RATE_LIMIT"] = "100000/minute"
    stack.env["API_ORG_MAX_IN_FLIGHT"] = "1000"
    uptime_before = uptime()
    report: dict = {}
    try:
        print(f"starting a throwaway stack (logs in {log_dir}) ...", file=sys.stderr)
        url, key = stack.start()
        # Genuine LFW pairs below the threshold are rejects; the lockout must not turn them into 423s.
        stack._run(
            "shell",
            "-c",
            "from tenants.selectors import organization_by_slug, policy_for;"
            f"p = policy_for(organization_by_slug({ORGANIZATION!r})); p.lockout_failures = 1000000; p.save()",
        )
        people, bodies = [], []
        for name, photos in candidates:
            enrolled = enroll(url, key, name, photos)
            if enrolled is not None:
                probes = usable_probes(url, key, name, [p for p in photos if p != enrolled], 4)
                if probes:
                    people.append(name)
                    bodies.extend(probes)
            if len(people) == args.people:
                break
        if not bodies:
            raise SystemExit("no LFW photo could be enrolled and probed")
        run_level(url, key, bodies[:2], 1, min(3.0, args.duration))  # warm-up, not reported
        results = []
        for clients in levels:
            print(f"{clients} client(s) for {args.duration:g} s ...", file=sys.stderr)
            results.append(run_level(url, key, bodies, clients, args.duration))
        chain = stack._run("verify_audit_chain", ORGANIZATION).strip()
    finally:
        stack.stop()
    report = {
        "what": "POST /api/v1/verify/ with LFW photos (800 px JPEG, multipart), N clients back to back",
        "mode": "self-hosted: gunicorn (1 worker, 4 threads) + celery prefork -c 1, same machine",
        "people_enrolled": len(people),
        "probe_photos": len(bodies),
        "machine": _machine(),
        "uptime_before": uptime_before,
        "uptime_after": uptime(),
        "note": "shared machine (other jobs ran at the same time): the figures are indicative",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "levels": results,
        "zero_errors": all(level["errors"] == 0 for level in results),
        "audit_rows_equal_requests": all(level["audit_rows_equal_requests"] for level in results),
        "audit_chain": chain.splitlines()[-1] if chain else "",
        "audit_chain_ok": "BROKEN" not in chain and "OK" in chain,
    }
    print_and_save(report, args.out)
    plot(report, args.plot or args.out.with_suffix(".png"))
    for level in results:
        latency = level["latency_ms"]
        print(
            f"{level['clients']:>3} clients: {level['throughput_rps']:6.2f} req/s,"
            f" p50 {latency['p50']} ms, p95 {latency['p95']} ms, p99 {latency['p99']} ms,"
            f" errors {level['errors']}, audit rows {level['audit_rows_written']}/{level['requests']}",
            file=sys.stderr,
        )
    print(
        f"{uptime_before} before, {report['uptime_after']} after; chain: {report['audit_chain']}",
        file=sys.stderr,
    )
    ok = report["zero_errors"] and report["audit_rows_equal_requests"] and report["audit_chain_ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
