"""faceid.calibration: pair scores, thresholds for a target FAR on its pairs, proposals, plots."""

from __future__ import annotations

import numpy as np
import pytest

from faceid import calibration as calib
from inference.thresholds import far_at, roc_points, threshold_for_far


def test_pair_scores_split_genuine_and_impostor_and_skip_same_photo():
    persons = np.array([1, 1, 1, 2])
    sources = np.array(["a", "a", "b", "c"], dtype=object)
    vectors = np.array([[1, 0], [1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32)
    genuine, impostor = calib.pair_scores(persons, sources, vectors)
    assert np.allclose(sorted(genuine), [0.8, 0.8])  # (0,2), (1,2); (0,1) share a photo
    assert np.allclose(sorted(impostor), [0.0, 0.0, 0.6])


@pytest.mark.parametrize("target", [0.1, 0.01, 0.001])
def test_threshold_search_finds_the_lowest_threshold_meeting_the_target(target):
    rng = np.random.default_rng(1)
    impostor = rng.normal(0.1, 0.12, size=20_000)
    t = threshold_for_far(impostor, target)
    assert far_at(impostor, t) <= target
    assert far_at(impostor, t - 2e-4) > target  # within the last grid step of the optimum
    exact = np.sort(impostor)[::-1][int(np.floor(target * impostor.size))]  # k+1-th highest score
    assert abs(t - exact) <= 2e-4


def test_proposal_says_when_the_far_cannot_be_measured():
    impostor = np.linspace(-0.2, 0.5, 50)
    genuine = np.linspace(0.6, 0.95, 20)
    proposal = calib.propose(genuine, impostor, 0.001)
    assert not proposal.resolved and "50 impostor pairs" in proposal.note
    assert proposal.threshold > 0.5 and proposal.far == 0.0 and proposal.tar == 1.0
    assert calib.propose(genuine, np.empty(0), 0.01).threshold is None


def test_plots_are_png():
    dist = calib.Distribution(
        "unmasked", "full", np.linspace(0.6, 0.95, 30), np.linspace(-0.2, 0.6, 300), 5, 15, 0.82
    )
    dist.proposal = calib.propose(dist.genuine, dist.impostor, 0.01)
    empty = calib.Distribution("masked", "masked_synthetic", np.empty(0), np.empty(0), 0, 0, 0.78)
    cal = calib.Calibration("dlib_resnet_v1", 0.01, [dist, empty])
    for png in (calib.histogram_png(cal), calib.roc_png(cal)):
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    far, tar = roc_points(dist.genuine, dist.impostor)
    assert far[0] == 1.0 and tar[0] == 1.0 and far[-1] == 0.0 and tar[-1] == 0.0
