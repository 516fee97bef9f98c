"""Searching for a threshold at a target false-accept rate: the research system's coarse-to-fine
sweep (fixed), the exact answer it approximates, and impostor rates pooled with a model's shipped
reference distribution.

The research system swept thresholds 0 to 1 in steps of 0.1, kept the one with FAR at most the
target and the highest TAR, then refined at 0.01 and 0.001 inside the winning cell. It drew new
random impostor pairs at every threshold it tried, so FAR was measured on a different sample at
each step and was not monotone in the threshold: a refinement could land on a cell whose lower
edge "passed" only by luck of the draw. Here every threshold is scored against one fixed set of
impostor pairs (drawn once, seeded: `draw_impostor_pairs`), so FAR can only fall as the threshold
rises and the sweep finds the cell the exact answer lies in.

The exact answer (`exact_threshold`) is the lowest threshold whose FAR does not exceed the target:
the same rule, without a grid. The coarse-to-fine answer lands at most one 0.001 step above it.

Pure numpy (no Django): the product's calibration and the evaluation tooling both use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from inference.thresholds import smallest_supported_far, threshold_for_far

RateFunction = Callable[[float], float]

# The research system's grids: 0.1 over [0, 1], then 0.01 and 0.001 inside the winning cell.
COARSE_TO_FINE_STEPS = (0.1, 0.01, 0.001)
SEARCH_RANGE = (0.0, 1.0)
# Bisection stops at this width: far below any threshold grid the product uses.
EXACT_TOLERANCE = 1e-9


def sorted_rate(scores: np.ndarray) -> RateFunction:
    """The share of `scores` at or above a threshold (NaN never passes), in O(log n) per call."""
    values = np.asarray(scores, dtype=np.float64).ravel()
    total = values.size
    ranked = np.sort(values[~np.isnan(values)])

    def rate(threshold: float) -> float:
        if not total:
            return 0.0
        return float(ranked.size - np.searchsorted(ranked, threshold, side="left")) / total

    return rate


def draw_impostor_pairs(labels: np.ndarray, pairs: int, *, seed: int = 0) -> np.ndarray:
    """`pairs` index pairs (i, j) of items with different labels, drawn once with this seed.

    The fix to the research search: these pairs are drawn before the sweep and scored at every
    threshold, never drawn again (at most the number of such pairs that exist; repeats possible
    only when asking for more pairs than a rejection draw finds).
    """
    labels = np.asarray(labels)
    if labels.size < 2 or np.unique(labels).size < 2:
        return np.empty((0, 2), dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    have = 0
    while have < pairs:
        need = (pairs - have) * 2 + 16
        i = rng.integers(0, labels.size, need)
        j = rng.integers(0, labels.size, need)
        keep = labels[i] != labels[j]
        found = np.stack([i[keep], j[keep]], axis=1)[: pairs - have]
        chosen.append(found)
        have += len(found)
    return np.concatenate(chosen).astype(np.int64)


@dataclass(frozen=True)
class SearchStep:
    step: float  # the grid step of the stage
    threshold: float
    far: float
    tar: float
    feasible: bool  # FAR at most the target


@dataclass(frozen=True)
class CoarseToFine:
    """The coarse-to-fine answer and every point it scored, in order."""

    threshold: float | None  # None when no threshold in the range meets the target
    far: float | None
    tar: float | None
    target_far: float
    trace: tuple[SearchStep, ...] = field(default_factory=tuple)

    @property
    def met(self) -> bool:
        return self.threshold is not None


def _grid(low: float, high: float, step: float) -> list[float]:
    # Integer multiples of the step, rounded to its decimals: no drift from adding 0.1 ten times.
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    return [round(k * step, decimals) for k in range(first, last + 1)]


def coarse_to_fine(
    far: RateFunction,
    tar: RateFunction,
    target_far: float,
    *,
    steps: tuple[float, ...] = COARSE_TO_FINE_STEPS,
    search_range: tuple[float, float] = SEARCH_RANGE,
) -> CoarseToFine:
    """The research system's search, on one fixed impostor sample (`far` must be a function of the
    threshold alone: scores of pairs drawn once, or a pooled rate built on them).

    Each stage scores its grid, keeps the threshold with FAR <= target and the highest TAR (ties: the
    lowest threshold, the one with the higher TAR whenever TAR moves), and the next stage searches
    the cell just below it, (winner - step, winner], where the lowest passing threshold must lie
    because the point below failed.
    """
    low, high = search_range
    trace: list[SearchStep] = []
    scored: dict[float, SearchStep] = {}

    def score(threshold: float, step: float) -> SearchStep:
        if threshold not in scored:  # a cell's edges were scored by the stage before
            f, t = far(threshold), tar(threshold)
            scored[threshold] = SearchStep(step, threshold, f, t, f <= target_far)
            trace.append(scored[threshold])
        return scored[threshold]

    best: SearchStep | None = None
    for step in steps:
        feasible = [s for s in (score(t, step) for t in _grid(low, high, step)) if s.feasible]
        if not feasible:  # only at the first stage: a later grid holds the previous winner
            break
        best = max(feasible, key=lambda s: (s.tar, -s.threshold))
        low, high = max(search_range[0], best.threshold - step), best.threshold
    if best is None:
        return CoarseToFine(None, None, None, target_far, tuple(trace))
    return CoarseToFine(best.threshold, best.far, best.tar, target_far, tuple(trace))


def exact_threshold(far: RateFunction, target_far: float, *, low: float = -1.0, high: float = 1.0) -> float:
    """The lowest threshold with far(threshold) <= target for a non-increasing `far`, by bisection to
    EXACT_TOLERANCE (its upper end, which meets the target). Where even `high` does not meet the
    target, `high` is returned and far(result) > target says so."""
    if far(low) <= target_far:
        return low
    if far(high) > target_far:
        return high
    while high - low > EXACT_TOLERANCE:
        middle = (low + high) / 2
        if far(middle) <= target_far:
            high = middle
        else:
            low = middle
    return high


class ReferenceRate(Protocol):
    """A model's shipped impostor statistics (inference.openset.ImpostorReference)."""

    n: int

    def far_at(self, threshold: float) -> float: ...


class PooledImpostors:
    """An organization's impostor scores pooled with a reference distribution, weighted by pairs:

        FAR(t) = (org false accepts at t + n_ref * ref_far(t)) / (n_org + n_ref)

    A search also requires FAR <= target on the organization's own pairs (`far`: the larger of the
    two), so the threshold never lets through an impostor pair the organization itself has shown
    where its own pairs cannot support the target, and never contradicts a target they can measure.
    """

    def __init__(self, impostor: np.ndarray, reference: ReferenceRate | None = None) -> None:
        self.impostor = np.asarray(impostor, dtype=np.float64).ravel()
        self.reference = reference
        self._org_rate = sorted_rate(self.impostor)

    @property
    def organization_pairs(self) -> int:
        return int(np.asarray(self.impostor).size)

    @property
    def reference_pairs(self) -> int:
        return int(self.reference.n) if self.reference is not None else 0

    @property
    def pairs(self) -> int:
        return self.organization_pairs + self.reference_pairs

    @property
    def supported_far(self) -> float:
        return smallest_supported_far(self.pairs)

    def organization_far(self, threshold: float) -> float:
        return self._org_rate(threshold)

    def pooled_far(self, threshold: float) -> float:
        if self.reference is None:
            return self.organization_far(threshold)
        org_accepts = self.organization_far(threshold) * self.organization_pairs
        ref_accepts = self.reference.far_at(threshold) * self.reference_pairs
        return (org_accepts + ref_accepts) / self.pairs

    def far(self, threshold: float) -> float:
        return max(self.pooled_far(threshold), self.organization_far(threshold))

    def exact_threshold(self, target_far: float) -> float:
        """The lowest threshold meeting the target both pooled and on the organization's pairs."""
        own = threshold_for_far(self.impostor, target_far, decimals=None) if self.organization_pairs else -1.0
        if self.reference is None:
            return own
        return max(own, exact_threshold(self.pooled_far, target_far))


@dataclass(frozen=True)
class SearchComparison:
    """How far the coarse-to-fine answer lands from the exact one, on the same impostor rate."""

    exact_threshold: float
    exact_far: float
    exact_tar: float
    search: CoarseToFine

    @property
    def difference(self) -> float | None:
        """Coarse-to-fine minus exact (>= 0: the grid answer is never the more lenient)."""
        return None if self.search.threshold is None else self.search.threshold - self.exact_threshold


def compare_search(far: RateFunction, tar: RateFunction, target_far: float, exact: float) -> SearchComparison:
    """Run the coarse-to-fine search and set it beside the exact threshold `exact` for the same `far`."""
    search = coarse_to_fine(far, tar, target_far)
    return SearchComparison(exact, far(exact), tar(exact), search)
