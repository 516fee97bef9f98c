"""Operating points of a similarity threshold: FAR, TAR and the threshold for a target FAR.

The one implementation behind the product's calibration (`faceid.calibration`) and the
evaluation tooling (`toolkit.metrics`). Pure numpy: the web process imports it without torch,
OpenCV or MediaPipe.

Conventions:
- a pair is accepted ("same person") when its similarity is >= the threshold;
- a NaN score (no face, so no decision) is never accepted: it counts in the denominator of a
  rate and never in its numerator.
"""

from __future__ import annotations

import math

import numpy as np

# Cosine similarity never goes below this: where every impostor may pass, no threshold is needed.
LOWEST_SIMILARITY = -1.0
# The calibration proposes thresholds on this grid (a 0.0001 step).
THRESHOLD_DECIMALS = 4


def far_at(impostor: np.ndarray, threshold: float) -> float:
    """False accept rate: the share of impostor scores at or above the threshold."""
    return float(np.count_nonzero(impostor >= threshold)) / impostor.size if impostor.size else 0.0


def tar_at(genuine: np.ndarray, threshold: float) -> float:
    """True accept rate (1 - FRR): the share of genuine scores at or above the threshold."""
    return float(np.count_nonzero(genuine >= threshold)) / genuine.size if genuine.size else 0.0


def far_is_measurable(impostor_pairs: int, target_far: float) -> bool:
    """Whether this many impostor pairs can measure the target: one false accept must be allowed."""
    return impostor_pairs * target_far >= 1.0


def smallest_supported_far(impostor_pairs: int) -> float:
    """The smallest FAR a sample of this many impostor pairs can show: one false accept in n.

    With no impostor passing, the measured FAR is 0, but the sample only says the FAR is below
    about 1/n (3/n at 95% confidence): this is what is reported instead of 0 (1.0 with no pairs).
    """
    return 1.0 / impostor_pairs if impostor_pairs > 0 else 1.0


def threshold_for_far(
    impostor: np.ndarray, target_far: float, *, decimals: int | None = THRESHOLD_DECIMALS
) -> float:
    """The lowest threshold whose FAR over these impostor scores does not exceed `target_far`.

    With k = floor(target_far * N) false accepts allowed among N impostor scores, any threshold
    above the (k+1)-th highest score will do. `decimals=None` gives the exact answer: the next
    float above that score (-inf where every score may pass). Otherwise the answer is the lowest
    threshold on the 10**-decimals grid whose FAR does not exceed the target (never below -1),
    which is what a coarse-to-fine search (a 0.01 grid, then 0.001, then 0.0001 inside the winning
    cell) finds: the exact threshold rounded up, since rounding down could let an impostor
    through. A target below 1/N cannot be measured: the threshold then sits just above the
    highest impostor score (see `far_is_measurable`).
    """
    scores = np.asarray(impostor).reshape(-1)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    ranked = np.where(np.isnan(scores), -np.inf, scores)
    allowed = int(np.floor(target_far * ranked.size + 1e-9))
    if allowed >= ranked.size:
        exact = -math.inf
    else:
        # The (allowed+1)-th highest score, in the scores' own precision.
        kth = np.partition(ranked, ranked.size - 1 - allowed)[ranked.size - 1 - allowed]
        exact = float(np.nextafter(kth, kth.dtype.type(np.inf)))
    if decimals is None:
        return exact
    if not math.isfinite(exact):
        return LOWEST_SIMILARITY if exact < 0 else exact
    # Start one grid step below the exact threshold and walk up: the check is the same
    # comparison `far_at` makes, so float rounding can never leave the result over the target.
    scale = 10**decimals
    step = max(math.floor(exact * scale) - 1, math.floor(LOWEST_SIMILARITY * scale))
    while far_at(scores, round(step / scale, decimals)) > target_far:
        step += 1
    return round(step / scale, decimals)


def roc_points(genuine: np.ndarray, impostor: np.ndarray, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) over evenly spaced thresholds from the lowest to the highest score seen."""
    both = np.concatenate([genuine, impostor])
    thresholds = np.linspace(float(both.min()) - 1e-6, float(both.max()) + 1e-6, points)
    imp = np.sort(impostor)
    gen = np.sort(genuine)
    far = 1.0 - np.searchsorted(imp, thresholds, side="left") / max(imp.size, 1)
    tar = 1.0 - np.searchsorted(gen, thresholds, side="left") / max(gen.size, 1)
    return far, tar
