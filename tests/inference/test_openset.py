"""Open-set thresholds (FPIR per search at a gallery size) and the 1:N measures, on synthetic scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference.openset import (
    ImpostorReference,
    det_curve,
    far_for_fpir,
    fit_tail,
    fnir_at,
    fnir_at_fpir,
    fpir_at,
    fpir_for_far,
    impostor_summary,
    load_references,
    open_set_threshold,
    quantile_grid,
    rank1_hit_rate,
    threshold_for_fpir,
)


def reference_of(scores: np.ndarray) -> ImpostorReference:
    summary = impostor_summary(scores)
    summary["tail"] = fit_tail(scores)
    return ImpostorReference.from_summary("synthetic", "unmasked", summary)


@pytest.fixture(scope="module")
def normal_reference() -> ImpostorReference:
    # Impostor cosines of a face model look like this: centred low, a narrow spread.
    return reference_of(np.random.default_rng(0).normal(0.4, 0.1, 1_000_000))


def test_far_for_fpir_inverts_fpir_for_far_and_shrinks_with_the_gallery():
    for n in (1, 10, 1000, 100_000):
        far = far_for_fpir(0.01, n)
        assert fpir_for_far(far, n) == pytest.approx(0.01, rel=1e-9)
    assert far_for_fpir(0.01, 1) == pytest.approx(0.01)
    assert far_for_fpir(0.01, 1000) == pytest.approx(1.005e-5, rel=1e-3)  # ~ FPIR / N
    fars = [far_for_fpir(0.01, n) for n in (1, 2, 10, 100, 1000, 10_000)]
    assert fars == sorted(fars, reverse=True)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_far_for_fpir_refuses_a_rate_outside_zero_and_one(bad):
    with pytest.raises(ValueError):
        far_for_fpir(bad, 10)


def test_thresholds_never_fall_as_the_gallery_grows(normal_reference):
    sizes = [1, 2, 5, 10, 30, 100, 300, 1000, 3000, 10_000, 100_000, 1_000_000]
    chosen = [
        open_set_threshold(normal_reference, target_fpir=0.01, gallery_size=n, verify_threshold=-1.0)
        for n in sizes
    ]
    values = [c.threshold for c in chosen]
    assert values == sorted(values)
    assert values[-1] > values[0]
    # Inside the sample's resolution (1e-6) the empirical quantiles answer; beyond it the tail.
    assert chosen[sizes.index(1000)].basis == "empirical"
    assert chosen[-1].basis == "tail"


def test_the_threshold_holds_fpir_in_a_brute_force_simulation(normal_reference):
    """Fresh impostor searches of N independent comparisons: the share whose best score reaches the
    threshold matches the target within the simulation's sampling error."""
    rng = np.random.default_rng(1)
    searches, n = 20_000, 200
    top = rng.normal(0.4, 0.1, (searches, n)).max(axis=1)
    for target in (0.01, 0.05):
        chosen = open_set_threshold(
            normal_reference, target_fpir=target, gallery_size=n, verify_threshold=-1.0
        )
        measured = fpir_at(top, chosen.threshold)
        sigma = math.sqrt(target * (1 - target) / searches)
        assert abs(measured - target) < 4 * sigma + 0.1 * target, (target, measured, chosen)


def test_the_tail_extrapolates_below_the_sample_resolution_and_never_under_its_highest_score():
    # P(score > s) = (1 - s)^4 on [0, 1]: bounded above like a cosine, with a known quantile.
    scores = 1.0 - np.random.default_rng(2).uniform(size=200_000) ** 0.25
    reference = reference_of(scores)
    assert reference.tail is not None and reference.tail["shape"] < 0  # a bounded tail
    far = 1e-7  # 50 times below the sample's 1/n
    estimate = reference.threshold_for_far(far)
    assert estimate.basis == "tail"
    assert estimate.threshold >= scores.max()
    assert estimate.threshold == pytest.approx(1.0 - far**0.25, abs=0.01)
    # Inside the sample: the stored quantile answers, and far_at inverts it.
    inside = reference.threshold_for_far(1e-3)
    assert inside.basis == "empirical"
    assert inside.threshold == pytest.approx(1.0 - 1e-3**0.25, abs=0.005)
    assert reference.far_at(inside.threshold) == pytest.approx(1e-3, rel=0.1)


def test_stored_quantiles_stop_at_the_sample_resolution():
    grid = quantile_grid(12_345)
    assert grid[0] < 1.0 and min(grid) * 12_345 >= 1.0
    assert min(grid) < 10 / 12_345
    summary = impostor_summary(np.linspace(0.0, 1.0, 12_345))
    assert len(summary["quantiles"]) == len(grid)
    assert "scores" not in summary and len(summary["top"]) <= 20  # statistics, not the sample


def test_a_threshold_is_never_below_the_verify_threshold(normal_reference):
    chosen = open_set_threshold(normal_reference, target_fpir=0.01, gallery_size=3, verify_threshold=0.99)
    assert chosen.threshold == 0.99 and chosen.basis == "verify"
    empty = open_set_threshold(normal_reference, target_fpir=0.01, gallery_size=0, verify_threshold=0.9)
    assert empty.threshold == 0.9 and empty.far_per_comparison is None
    missing = open_set_threshold(None, target_fpir=0.01, gallery_size=500, verify_threshold=0.9)
    assert missing.threshold == 0.9 and missing.basis == "verify"


def test_a_model_without_a_shipped_reference_has_none():
    assert load_references("no_such_model") == {}


def test_frvt_measures_on_hand_made_searches():
    mates = np.array([0.9, 0.8, 0.7, 0.6, np.nan])  # the last search found no face
    rank1 = np.array([True, True, False, True, False])
    nonmated = np.array([0.5, 0.65, 0.75, 0.3, np.nan, 0.2, 0.1, 0.0, 0.4, 0.35])
    assert rank1_hit_rate(rank1) == pytest.approx(0.6)
    assert fpir_at(nonmated, 0.7) == pytest.approx(0.1)
    assert fnir_at(mates, rank1, 0.7) == pytest.approx(0.6)  # 0.7 is not rank 1, the no-face search misses
    assert threshold_for_fpir(nonmated, 0.1) > 0.65
    point = fnir_at_fpir(mates, rank1, nonmated, 0.1)
    assert point["fpir_measured"] <= 0.1 and point["measurable"]
    assert point["fnir"] == pytest.approx(0.6)  # 0.9 and 0.8 found; 0.7 not rank 1; 0.6 below
    assert not fnir_at_fpir(mates, rank1, nonmated, 0.001)["measurable"]
    det = det_curve(mates, rank1, nonmated)
    fpirs = [p["fpir"] for p in det]
    fnirs = [p["fnir"] for p in det]
    assert fpirs == sorted(fpirs, reverse=True) and fnirs == sorted(fnirs)
