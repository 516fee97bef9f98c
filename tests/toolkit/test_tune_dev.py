"""toolkit.dev.tune_dev: the thresholds experiment (default and floor per model, development data only)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.detect import DetectedFace
from inference.embedders import embedder_spec
from inference.templates import ARCFACE_112, DLIB_150
from toolkit.dev.tune_dev import (
    applicable_align_modes,
    far_frr_grid,
    proposed_thresholds,
    registered_thresholds,
    separation,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def impostors_with_top(*top: float, n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """n impostor scores (the highest given, the rest 0) and 10 genuine ones at 0.8."""
    impostor = np.zeros(n)
    impostor[: len(top)] = top
    return np.r_[np.full(10, 0.8), impostor], np.r_[np.ones(10, bool), np.zeros(n, bool)]


def test_default_rounds_up_and_floor_rounds_down_to_the_hundredth():
    # 1,000 impostors: FAR 1e-3 allows 1 false accept (threshold above the 2nd highest), 1e-2 allows 10
    sims, labels = impostors_with_top(0.9, 0.3882, *[0.35] * 8, 0.3129)
    assert proposed_thresholds(sims, labels) == {"default": 0.39, "floor": 0.31}


def test_default_goes_up_from_a_threshold_just_above_the_grid():
    sims, labels = impostors_with_top(0.9, 0.3600001)  # shown as 0.3600, yet 0.36 lets 2 impostors in
    assert proposed_thresholds(sims, labels)["default"] == 0.37


def test_separation_reports_thresholds_at_both_fars():
    rng = np.random.default_rng(0)
    sims = np.r_[rng.normal(0.7, 0.1, 500), rng.normal(0.1, 0.1, 5000)]
    labels = np.r_[np.ones(500, bool), np.zeros(5000, bool)]
    row = separation(sims, labels)
    assert row["dprime"] == pytest.approx(6.0, abs=0.5)
    assert row["n_genuine"] == 500 and row["n_impostor"] == 5000
    assert row["threshold@0.001"] > row["threshold@0.01"]  # fewer false accepts sit higher
    assert np.mean(sims[~labels] >= row["threshold@0.01"]) <= 0.01


def test_far_frr_grid_counts_scores_at_the_threshold_as_accepted():
    sims = np.array([0.5, 0.3, 0.3, 0.1])
    labels = np.array([True, True, False, False])
    grid = far_frr_grid(sims, labels, 0.29, 0.31)
    assert list(grid) == ["0.29", "0.30", "0.31"]
    assert grid["0.30"] == {"far": 0.5, "frr": 0.0}
    assert grid["0.31"] == {"far": 0.0, "frr": 0.5}


def test_align_modes_are_those_that_fit_the_template():
    rng = np.random.default_rng(0)
    landmarks = np.c_[rng.uniform(40, 200, (478, 2)), np.zeros(478)]
    face = DetectedFace.from_landmarks(landmarks, points5=ARCFACE_112.points * 2 + 10)
    assert applicable_align_modes(ARCFACE_112, face) == ["five_point", "eyes", "mesh", "yunet"]
    assert "yunet" not in applicable_align_modes(DLIB_150, face)  # dlib's chip has other points


@pytest.mark.slow
def test_thresholds_experiment_for_a_named_embedder(shared_data: Path, tmp_path: Path):
    out = tmp_path / "thresholds.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "FACEID_EVAL_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "toolkit.dev.tune_dev", "--shared", str(shared_data), "--limit", "6",
         "--embedder", "sface", "--experiment", "thresholds", "--align-modes", "five_point,mesh",
         "--json", str(out), "--quiet"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(done.stdout) == report
    assert report["embedder"] == "sface" and report["images"] == 6
    assert [(r["align_mode"], r["probe"]) for r in report["rows"]] == [
        (mode, probe) for mode in ("five_point", "mesh") for probe in ("unmasked", "cutout", "synthetic")
    ]
    row = report["rows"][0]
    for key in ("dprime", "auc", "eer", "tar@0.01", "threshold@0.01", "tar@0.001", "threshold@0.001"):
        assert key in row, key
    assert row["proposed"]["default"] >= row["threshold@0.001"] - 5e-5
    assert row["proposed"]["floor"] <= row["threshold@0.01"] + 5e-5
    # the FAR/FRR grid covers the proposal and the registry's thresholds of today
    assert row["registry"] == registered_thresholds(embedder_spec("sface"), masked=False)
    for thresholds in (row["proposed"], row["registry"]):
        assert {f"{t:.2f}" for t in thresholds.values()} <= set(row["far_frr"])
    # the proposal reads what the pipeline serves: sface's own align mode, cutout on the masked mode
    assert report["proposed"]["unmasked"]["align_mode"] == "five_point"
    assert report["proposed"]["masked"] == {
        "align_mode": "mesh",
        "probe": "cutout",
        **report["rows"][4]["proposed"],
    }
