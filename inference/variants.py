"""Template variants, mask strategies and the mask decision: the names every layer shares.

Pure Python (no torch, OpenCV or MediaPipe), so the web process, the database models and the
worker all import the same constants from here.

A face enrolled without a mask is stored as up to three templates: the full face, and two
mask-aware variants; a photo with a mask on (where the policy allows it) only as the mask-aware
ones. Which *space* a probe and an enrolled photo are compared in (inference.comparison) follows
from both sides' mask decisions: the full-face space only when neither side is masked, the
mask-aware space (the variant the organization's mask strategy names) whenever either is, and
both, the stricter decision winning, when a mask decision is unsure (`UNSURE_BAND`).
"""

from __future__ import annotations

VARIANT_FULL = "full"
VARIANT_SYNTHETIC = "masked_synthetic"  # a procedural mask rendered on the enrollment photo
VARIANT_CUTOUT = "masked_cutout"  # the aligned chip with the lower face blanked
VARIANTS = (VARIANT_FULL, VARIANT_SYNTHETIC, VARIANT_CUTOUT)

STRATEGY_SYNTHETIC = "synthetic"
STRATEGY_CUTOUT = "cutout"
# Which enrolled variant a masked probe is matched against, by the organization's strategy.
MASK_STRATEGIES: dict[str, str] = {STRATEGY_SYNTHETIC: VARIANT_SYNTHETIC, STRATEGY_CUTOUT: VARIANT_CUTOUT}
# Evaluation also probes with "plain": the masked face against full-face templates, the baseline
# the mask-aware variants are measured against. Never a product setting.
STRATEGY_PLAIN = "plain"
PROBE_STRATEGIES: dict[str, str] = {**MASK_STRATEGIES, STRATEGY_PLAIN: VARIANT_FULL}

DEFAULT_MASK_THRESHOLD = 0.5

# The comparison spaces: full face against full face, or mask-aware against mask-aware.
SPACE_FULL = "full"
SPACE_MASKED = "masked"

# Mask probabilities the classifier is unsure about: a face in this band is compared in both spaces
# and must pass both. Chosen on the mask data's held-out split (docs/benchmarks/mask_classifier.json,
# 744 faces): 7 of its 9 errors lie in [0.15, 0.85] (0.19, 0.39, 0.43, 0.49, 0.50 missed masks;
# 0.66, 0.83 false masks), the other two missed masks far below (0.03, 0.06) where no band short
# of "always" would catch them. On unmasked LFW the classifier's 99th percentile is 0.09, so fewer
# than 1% of unmasked probes pay the band's extra embedding. The band always contains the
# organization's mask threshold (see `unsure_band`).
UNSURE_LOW = 0.15
UNSURE_HIGH = 0.85


def is_masked(mask_probability: float | None, threshold: float) -> bool:
    """The one mask decision: a face is masked when its probability reaches the threshold."""
    return mask_probability is not None and mask_probability >= threshold


def unsure_band(threshold: float = DEFAULT_MASK_THRESHOLD) -> tuple[float, float]:
    """[low, high) of the mask probabilities compared in both spaces, widened to hold the threshold."""
    return min(UNSURE_LOW, threshold), max(UNSURE_HIGH, threshold)


def is_unsure(mask_probability: float | None, threshold: float = DEFAULT_MASK_THRESHOLD) -> bool:
    """Whether a face's mask decision is too close to call: it is then compared both ways."""
    if mask_probability is None:
        return False
    low, high = unsure_band(threshold)
    return low <= mask_probability < high


def mask_aware_variant(strategy: str) -> str:
    """The template variant of the mask-aware space under a mask strategy ("plain": the full face)."""
    if strategy not in PROBE_STRATEGIES:
        raise ValueError(f"unknown mask strategy {strategy!r}; choose from {sorted(PROBE_STRATEGIES)}")
    return PROBE_STRATEGIES[strategy]


def probe_variant(strategy: str, *, masked: bool) -> str:
    """The template variant a probe is compared with under a mask strategy."""
    if strategy not in PROBE_STRATEGIES:
        raise ValueError(f"unknown mask strategy {strategy!r}; choose from {sorted(PROBE_STRATEGIES)}")
    return PROBE_STRATEGIES[strategy] if masked else VARIANT_FULL
