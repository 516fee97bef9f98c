"""Template variants, mask strategies and the mask decision: the names every layer shares.

Pure Python (no torch, OpenCV or MediaPipe), so the web process, the database models and the
worker all import the same constants from here.

A face enrolled without a mask is stored as up to three templates: the full face, and two
mask-aware variants. A masked probe is matched against the variant that the organization's mask
strategy names; an unmasked probe against the full face.
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


def is_masked(mask_probability: float | None, threshold: float) -> bool:
    """The one mask decision: a face is masked when its probability reaches the threshold."""
    return mask_probability is not None and mask_probability >= threshold


def probe_variant(strategy: str, *, masked: bool) -> str:
    """The template variant a probe is compared with under a mask strategy."""
    if strategy not in PROBE_STRATEGIES:
        raise ValueError(f"unknown mask strategy {strategy!r}; choose from {sorted(PROBE_STRATEGIES)}")
    return PROBE_STRATEGIES[strategy] if masked else VARIANT_FULL
