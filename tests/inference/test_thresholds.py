"""inference.thresholds: FAR, TAR and the threshold for a target FAR, shared by calibration and evaluation."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np

from inference.thresholds import (
    LOWEST_SIMILARITY,
    far_at,
    far_is_measurable,
    roc_points,
    tar_at,
    threshold_for_far,
)
from tests.conftest import REPO_ROOT

TARGETS = (0.5, 0.1, 0.01, 0.001, 1e-4)


def impostor_sets():
    rng = np.random.default_rng(7)
    for index in range(40):
        size = int(rng.integers(1, 6000))
        scores = rng.normal(rng.uniform(-0.2, 0.6), rng.uniform(0.01, 0.3), size).clip(-1, 1)
        if index % 4 == 0:
            scores = np.round(scores, 3)  # ties, and scores that sit exactly on the grid
        yield scores.astype(np.float32 if index % 2 else np.float64)


def test_the_threshold_never_lets_the_far_exceed_the_target():
    for impostor in impostor_sets():
        for target in TARGETS:
            assert far_at(impostor, threshold_for_far(impostor, target)) <= target
            assert far_at(impostor, threshold_for_far(impostor, target, decimals=None)) <= target


def test_the_threshold_is_the_lowest_on_the_grid_that_meets_the_target():
    for impostor in list(impostor_sets())[:12]:
        grid = np.round(np.arange(-10_000, 10_002) / 10_000, 4)
        fars = np.array([far_at(impostor, t) for t in grid])
        for target in TARGETS:
            lowest = grid[np.flatnonzero(fars <= target)[0]]  # brute force over every 0.0001 step
            assert threshold_for_far(impostor, target) == lowest


def test_the_threshold_rounds_up_to_four_decimals():
    impostor = np.array([0.12341, 0.5, 0.6])
    # One false accept in three is allowed: the threshold must pass above 0.5 ...
    assert threshold_for_far(impostor, 0.34) == 0.5001
    # ... and with none allowed, above 0.6; with two allowed, above 0.12341: 0.1235, never 0.1234.
    assert threshold_for_far(impostor, 0.0) == 0.6001
    assert threshold_for_far(impostor, 0.67) == 0.1235
    assert far_at(impostor, 0.1234) > 0.67


def test_the_exact_threshold_allows_exactly_the_budget_of_false_accepts():
    impostors = np.arange(1000) / 1000.0  # 0.000 .. 0.999
    threshold = threshold_for_far(impostors, 0.01, decimals=None)
    assert (impostors >= threshold).sum() == 10
    assert threshold == np.nextafter(0.989, 1.0)  # just above the 11th highest impostor
    assert tar_at(np.array([0.98905]), threshold) == 1.0  # a grid threshold (0.9891) would reject it
    assert (impostors >= threshold_for_far(impostors, 0.001, decimals=None)).sum() == 1


def test_an_unmeasurable_target_puts_the_threshold_just_above_every_impostor():
    impostor = np.linspace(-0.2, 0.5, 50)
    assert not far_is_measurable(impostor.size, 0.001)
    assert far_is_measurable(impostor.size, 0.02)
    threshold = threshold_for_far(impostor, 0.001)
    assert threshold == 0.5001 and far_at(impostor, threshold) == 0.0


def test_a_target_every_impostor_meets_needs_no_threshold():
    impostor = np.array([0.1, 0.2])
    assert threshold_for_far(impostor, 1.0) == LOWEST_SIMILARITY
    assert threshold_for_far(impostor, 1.0, decimals=None) == -math.inf
    assert threshold_for_far(np.empty(0), 0.01) == LOWEST_SIMILARITY


def test_scores_without_a_decision_count_but_never_pass():
    impostor = np.r_[np.arange(100) / 100.0, [np.nan] * 100]  # 200 pairs: 2 may pass at FAR 1%
    threshold = threshold_for_far(impostor, 0.01)
    assert threshold == 0.9701  # above the third highest score, 0.97
    assert far_at(impostor, threshold) == 2 / 200


def test_rates_of_empty_score_sets_are_zero():
    assert far_at(np.empty(0), 0.5) == 0.0 and tar_at(np.empty(0), 0.5) == 0.0


def test_roc_runs_from_accepting_everything_to_rejecting_everything():
    rng = np.random.default_rng(3)
    genuine, impostor = rng.normal(0.8, 0.05, 300), rng.normal(0.3, 0.1, 3000)
    far, tar = roc_points(genuine, impostor)
    assert (far[0], tar[0], far[-1], tar[-1]) == (1.0, 1.0, 0.0, 0.0)
    assert np.all(np.diff(far) <= 0) and np.all(np.diff(tar) <= 0)


def test_importing_it_loads_no_network_library():
    code = (
        "import sys, inference.thresholds; "
        "loaded = {'torch', 'cv2', 'mediapipe'} & set(sys.modules); "
        "assert not loaded, loaded"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
