"""inference.threshold_search: the research system's coarse-to-fine search (fixed), the exact answer
it approximates, the smallest FAR a sample supports, impostor rates pooled with a reference."""

from __future__ import annotations

import numpy as np
import pytest

from inference.openset import ImpostorReference, fit_tail, impostor_summary
from inference.threshold_search import (
    PooledImpostors,
    coarse_to_fine,
    compare_search,
    draw_impostor_pairs,
    exact_threshold,
    sorted_rate,
)
from inference.thresholds import far_at, smallest_supported_far, threshold_for_far

CELL = 0.001  # the finest step of the coarse-to-fine search


def _scores(seed: int, impostors: int = 20_000, genuines: int = 2_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    impostor = rng.normal(rng.uniform(0.1, 0.3), rng.uniform(0.05, 0.12), impostors).clip(-1, 1)
    genuine = rng.normal(rng.uniform(0.6, 0.8), 0.1, genuines).clip(-1, 1)
    return genuine, impostor


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target", [0.1, 0.01, 0.001, 1e-4])
def test_coarse_to_fine_lands_within_one_fine_cell_of_the_exact_answer_and_never_over_the_target(
    seed, target
):
    genuine, impostor = _scores(seed)
    exact = threshold_for_far(impostor, target, decimals=None)
    comparison = compare_search(sorted_rate(impostor), sorted_rate(genuine), target, exact)
    search = comparison.search

    assert search.met and far_at(impostor, search.threshold) == search.far <= target
    assert 0.0 <= comparison.difference <= CELL + 1e-12
    # The lowest passing threshold on the 0.001 grid: one cell lower lets too many impostors through.
    assert far_at(impostor, round(search.threshold - CELL, 3)) > target
    assert comparison.exact_far <= target and comparison.exact_tar >= search.tar


def test_the_search_scores_each_stage_grid_once_and_keeps_the_highest_tar_within_the_target():
    genuine, impostor = _scores(0)
    search = coarse_to_fine(sorted_rate(impostor), sorted_rate(genuine), 0.01)
    steps = [s.step for s in search.trace]
    assert steps.count(0.1) == 11  # 0.0, 0.1, ... 1.0
    assert steps.count(0.01) == 9 and steps.count(0.001) == 9  # a cell's inner points; its edges were scored
    feasible = [s for s in search.trace if s.feasible]
    assert search.tar == max(s.tar for s in feasible)
    assert search.threshold == min(s.threshold for s in feasible if s.tar == search.tar)


def test_far_over_fixed_seeded_pairs_is_monotone_in_the_threshold():
    rng = np.random.default_rng(11)
    labels = np.repeat(np.arange(40), 5)
    centres = rng.normal(size=(40, 64))
    vectors = centres[labels] + 0.8 * rng.normal(size=(200, 64))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    pairs = draw_impostor_pairs(labels, 3_000, seed=5)
    assert np.array_equal(pairs, draw_impostor_pairs(labels, 3_000, seed=5))  # drawn once, reproducibly
    assert len(pairs) == 3_000 and np.all(labels[pairs[:, 0]] != labels[pairs[:, 1]])
    impostor = np.einsum("ij,ij->i", vectors[pairs[:, 0]], vectors[pairs[:, 1]])

    search = coarse_to_fine(sorted_rate(impostor), lambda t: 1.0, 0.01)

    ordered = sorted(search.trace, key=lambda s: s.threshold)
    fars = [s.far for s in ordered]
    assert all(a >= b for a, b in zip(fars, fars[1:], strict=False))
    assert search.far <= 0.01


def test_redrawing_the_impostor_pairs_at_every_threshold_breaks_monotonicity():
    # The research system's bug, reproduced: a new draw per threshold measures FAR on a new sample.
    rng = np.random.default_rng(3)
    population = rng.normal(0.2, 0.1, 100_000)
    thresholds = np.round(np.arange(0.30, 0.40, 0.001), 3)
    redrawn = [far_at(rng.choice(population, 500), t) for t in thresholds]
    assert any(b > a for a, b in zip(redrawn, redrawn[1:], strict=False))
    fixed = rng.choice(population, 500)
    once = [far_at(fixed, t) for t in thresholds]
    assert all(b <= a for a, b in zip(once, once[1:], strict=False))


def test_no_threshold_meets_the_target_when_an_impostor_scores_above_the_range():
    search = coarse_to_fine(sorted_rate(np.array([1.5, 0.2])), sorted_rate(np.array([0.9])), 0.1)
    assert not search.met and search.threshold is None and len(search.trace) == 11


def test_the_smallest_supported_far_is_one_over_the_impostor_pairs():
    assert smallest_supported_far(594) == pytest.approx(1 / 594)
    assert smallest_supported_far(0) == 1.0
    pool = PooledImpostors(np.linspace(0.0, 0.5, 250))
    assert pool.supported_far == pytest.approx(1 / 250)
    assert pool.far(0.6) == 0.0  # measured: no impostor passes, which shows only FAR < 1/250


def _reference(seed: int = 1, n: int = 400_000) -> ImpostorReference:
    scores = np.random.default_rng(seed).normal(0.2, 0.1, n)
    summary = {**impostor_summary(scores), "tail": fit_tail(scores)}
    return ImpostorReference.from_summary("synthetic", "unmasked", summary)


def test_pooled_far_weights_the_organization_and_the_reference_by_their_pairs():
    reference = _reference()
    own = np.full(100, 0.9)  # every pair of the organization passes below 0.9
    pool = PooledImpostors(own, reference)
    t = 0.5
    expected = (100 + reference.n * reference.far_at(t)) / (100 + reference.n)
    assert pool.pooled_far(t) == pytest.approx(expected)
    assert pool.far(t) == 1.0  # the organization's own FAR is the stricter here
    assert pool.pairs == 100 + reference.n and pool.supported_far == pytest.approx(1 / pool.pairs)


def test_pooling_gives_a_higher_threshold_than_a_small_organizations_pairs_alone():
    reference = _reference()
    own = np.random.default_rng(2).normal(0.2, 0.1, 300)  # 300 pairs: nothing to say about 1e-4
    alone = PooledImpostors(own).exact_threshold(1e-4)
    pooled = PooledImpostors(own, reference)
    threshold = pooled.exact_threshold(1e-4)
    assert alone == threshold_for_far(own, 1e-4, decimals=None)  # just above its highest pair
    assert threshold > alone + 0.05
    assert pooled.far(threshold) <= 1e-4 and pooled.far(threshold - 1e-6) > 1e-4
    # The search on the pooled rate lands within a fine cell of the pooled exact answer.
    comparison = compare_search(pooled.far, sorted_rate(own + 0.5), 1e-4, threshold)
    assert 0.0 <= comparison.difference <= CELL + 1e-12 and comparison.search.far <= 1e-4


def test_an_organization_whose_impostors_score_high_is_not_outvoted_by_the_reference():
    reference = _reference()
    own = np.random.default_rng(4).normal(0.5, 0.1, 50_000)  # far above the reference's impostors
    pooled = PooledImpostors(own, reference)
    threshold = pooled.exact_threshold(1e-3)
    assert threshold >= threshold_for_far(own, 1e-3, decimals=None)
    assert pooled.organization_far(threshold) <= 1e-3


def test_exact_threshold_by_bisection_matches_the_sorted_scores_answer():
    impostor = np.random.default_rng(9).normal(0.1, 0.2, 10_000)
    for target in (0.1, 0.01, 0.001):
        by_bisection = exact_threshold(sorted_rate(impostor), target)
        assert by_bisection == pytest.approx(threshold_for_far(impostor, target, decimals=None), abs=1e-8)
