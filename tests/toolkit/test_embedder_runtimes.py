"""toolkit.dev.embedder_runtimes: our torch embedders against their reference runtimes, timed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "reference", "others"),
    [("sface", "onnxruntime", {"opencv_dnn"}), ("intel_0095", "openvino", set())],
)
def test_runtimes_report_times_and_the_same_vectors(
    model: str, reference: str, others: set[str], shared_data: Path, tmp_path: Path
):
    out = tmp_path / "speed.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "toolkit.dev.embedder_runtimes", "--model", model, "--faces", "2",
         "--rounds", "1", "--warmup", "1", "--shared", str(shared_data), "--json", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["model"] == model and report["reference"] == reference
    assert report["faces"] == 2 and report["rounds"] == 1 and report["batch"] == 1 and report["flip"] is True
    assert "--model " + model in report["command"]
    for key in ("machine", "versions", "runners", "pipeline_torch_form"):
        assert key in report, key
    assert len(report["machine"]["loadavg_before"]) == 3 and len(report["machine"]["loadavg_after"]) == 3
    assert {"torch", "opencv", "onnxruntime", "openvino"} <= set(report["versions"])

    runners = set(report["ms_per_face"])
    torch_runners = {name for name in runners if name.startswith("torch_")}
    assert runners == torch_runners | others | {reference}
    assert any("(the pipeline's)" in name for name in torch_runners)
    assert set(report["runners"]) == runners == set(report["median_vs_reference"])
    for name, ms in report["ms_per_face"].items():
        assert ms["n"] == 2, name
        assert 0 < ms["min"] <= ms["p10"] <= ms["median"] <= ms["p90"], name
    assert report["median_vs_reference"][reference] == 1.0

    differences = report[f"max_abs_diff_vs_{reference}"]
    assert set(differences) == runners and differences[reference] == 0.0
    assert max(differences.values()) < 1e-5  # unit vectors: the same network, float rounding apart
