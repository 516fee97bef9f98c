"""`python -m toolkit.loadtest` for a few seconds with one client: it runs the stack and writes its JSON."""

import json
import os
from pathlib import Path

import pytest

from tests.toolkit.test_evaluate_cli import run_cli


@pytest.mark.slow
def test_loadtest_runs_one_client_and_writes_its_report(lfw_dir: Path, tmp_path: Path):
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        pytest.skip("the load test starts its stack on DATABASE_URL's server and REDIS_URL")
    out = tmp_path / "load.json"
    done = run_cli(
        "toolkit.loadtest", "--clients", "1", "--duration", "3", "--people", "2",
        "--root", str(lfw_dir), "--out", str(out), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    (level,) = report["levels"]
    assert level["clients"] == 1 and level["requests"] >= 1
    assert level["errors"] == 0 and level["audit_rows_written"] == level["requests"]
    assert level["latency_ms"]["p99"] >= level["latency_ms"]["p50"] > 0
    assert report["audit_chain_ok"] and report["uptime_before"].startswith("load average")
    assert (tmp_path / "load.png").stat().st_size > 0
    assert "1 clients:" in done.stderr
