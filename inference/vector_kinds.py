"""The kinds of vector one face gives, and which of them an enrollment photo or a probe needs.

Pure Python: the pipeline embeds the kinds these functions name, and the evaluation tools, which
compute every kind once per image, pick enrollment and probe vectors with the same functions.
"""

from __future__ import annotations

from inference.comparison import probe_spaces, space_variant
from inference.variants import PROBE_STRATEGIES, VARIANT_CUTOUT, VARIANT_FULL, VARIANT_SYNTHETIC

# The kinds of vector one face gives. full: the full-face chip; cutout: the mask-aware chip with
# the lower face blanked; own: the mask-aware chip as it is (a masked face's own mask); rendered:
# the mean over synthetic masks rendered on the face (mask-aware chips).
KIND_FULL = "full"
KIND_CUTOUT = "cutout"
KIND_OWN = "own"
KIND_RENDERED = "rendered"
KINDS = (KIND_FULL, KIND_CUTOUT, KIND_OWN, KIND_RENDERED)


def enrollment_kinds(*, masked: bool) -> dict[str, str]:
    """Template variant -> vector kind stored for an enrollment photo.

    A photo taken with a real mask on (only where the policy allows it) is itself a masked
    template; it must never stand in for the full face: a masked impostor the classifier misses
    would meet it, masked face against masked face, at the unmasked threshold (measured by
    toolkit/dev/masked_enrollment_risk.py). So it stores no full-face template.
    """
    if masked:
        return {VARIANT_CUTOUT: KIND_CUTOUT, VARIANT_SYNTHETIC: KIND_OWN}
    return {VARIANT_CUTOUT: KIND_CUTOUT, VARIANT_FULL: KIND_FULL, VARIANT_SYNTHETIC: KIND_RENDERED}


def probe_kinds(strategy: str, *, masked: bool, unsure: bool, mask_aware: bool = False) -> dict[str, str]:
    """Template variant -> vector kind a probe carries (inference.comparison.probe_spaces)."""
    if strategy not in PROBE_STRATEGIES:
        raise ValueError(f"unknown mask strategy {strategy!r}; choose from {sorted(PROBE_STRATEGIES)}")
    kinds: dict[str, str] = {}
    for space in probe_spaces(masked=masked, unsure=unsure, mask_aware=mask_aware):
        variant = space_variant(space, strategy)
        if variant == VARIANT_FULL:
            kinds[variant] = KIND_FULL
        elif variant == VARIANT_CUTOUT:
            kinds[variant] = KIND_CUTOUT
        else:  # synthetic: a masked face as it is, an unmasked one with masks rendered on it
            kinds[variant] = KIND_OWN if masked else KIND_RENDERED
    return kinds


def kinds_for_strategies(strategies: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The kinds an evaluation must compute per image to score pairs under these strategies (an
    image may be enrolled or probed, masked or not, sure or unsure), in KINDS order."""
    needed: set[str] = set()
    for strategy in strategies:
        variants: set[str] = set()
        for masked in (False, True):
            for unsure in (False, True):
                kinds = probe_kinds(strategy, masked=masked, unsure=unsure, mask_aware=True)
                needed.update(kinds.values())
                variants.update(kinds)
        for masked in (False, True):
            needed.update(
                kind for variant, kind in enrollment_kinds(masked=masked).items() if variant in variants
            )
    return tuple(kind for kind in KINDS if kind in needed)
