"""The measurement behind "a photo called masked stores no full-face template"."""

import json
from pathlib import Path

import numpy as np
import pytest

from toolkit.dev.masked_enrollment_risk import impostor_rate, main


def test_impostor_rate_counts_each_pair_of_different_groups_once():
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    groups = np.array([0, 0, 1, 2])  # the first two are copies of one photo: never an impostor pair
    rate = impostor_rate(vectors, groups, [0.5, 0.99])
    # Pairs across groups: (0,2) 0.6, (0,3) 0, (1,2) 0.6, (1,3) 0, (2,3) 0.8.
    assert rate["pairs"] == 5
    assert rate["max_score"] == np.float32(0.8)
    assert rate["rate_at"] == {"0.50": 3 / 5, "0.99": 0.0}


@pytest.mark.slow
def test_real_masked_photos_are_measured_and_written(shared_data: Path, tmp_path: Path):
    out = tmp_path / "risk.json"
    report = main(["--data", str(shared_data), "--limit", "12", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert 8 <= report["faces"] <= 12  # the mesh finds most masked faces
    assert report["called_masked"] >= 0.75
    rates = list(report["masked_vs_masked_full_face"]["rate_at"].values())
    assert rates == sorted(rates, reverse=True)  # a higher threshold never passes more pairs
    assert 0.0 < report["classifier_heldout_miss_rate"] < 0.05
