"""`python -m toolkit.bench` on a handful of LFW photos, beside the peer pipeline."""

import json
from pathlib import Path

import pytest

from tests.toolkit.test_evaluate_cli import run_cli


@pytest.mark.slow
def test_bench_writes_stage_latencies_and_the_speed_ratio(lfw_dir: Path, tmp_path: Path):
    out = tmp_path / "bench.json"
    done = run_cli(
        "toolkit.bench", "--images", "6", "--batch", "3", "--warmup", "1", "--threads", "1",
        "--root", str(lfw_dir), "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(done.stdout) == report
    assert report["images"] == 6 and report["machine"]["torch_threads"] == 1
    ours, peer = report["single"]["faceid"], report["single"]["peer"]
    for stage in ("decode", "detect", "mask", "align", "embed", "total"):
        assert ours[stage]["median"] > 0 and ours[stage]["p95"] >= ours[stage]["median"]
    for stage in ("decode", "detect", "landmarks", "embed", "total"):
        assert peer[stage]["median"] > 0
    assert report["faces_found"]["faceid"] >= 5
    assert report["batched_per_face_ms"]["faceid"]["n"] == 2
    assert report["speedup"]["single_median"] > 0
    assert "speed-up over the peer" in done.stderr
