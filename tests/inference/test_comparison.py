"""The scoring rule: which space a probe and an enrolled photo meet in, and which decision wins."""

from __future__ import annotations

import numpy as np
import pytest

from inference.comparison import (
    EnrolledPhoto,
    ProbeSide,
    Thresholds,
    decide,
    probe_spaces,
    score_photo,
    spaces_for,
)
from inference.variants import (
    SPACE_FULL,
    SPACE_MASKED,
    UNSURE_HIGH,
    UNSURE_LOW,
    VARIANT_CUTOUT,
    VARIANT_FULL,
    VARIANT_SYNTHETIC,
    is_unsure,
    unsure_band,
)

THRESHOLDS = Thresholds(unmasked=0.92, masked=0.96)
RNG = np.random.default_rng(3)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def at(target: np.ndarray, similarity: float) -> np.ndarray:
    noise = RNG.standard_normal(target.size)
    noise -= noise.dot(target) * target
    return unit(similarity * target + np.sqrt(1 - similarity**2) * unit(noise))


FULL, CUT, SYN = (unit(RNG.standard_normal(128)) for _ in range(3))
UNMASKED_PHOTO = EnrolledPhoto("a", {VARIANT_FULL: [FULL], VARIANT_CUTOUT: [CUT], VARIANT_SYNTHETIC: [SYN]})
MASKED_PHOTO = EnrolledPhoto("m", {VARIANT_CUTOUT: [CUT], VARIANT_SYNTHETIC: [SYN]})


def test_an_unmasked_probe_meets_a_photo_enrolled_with_a_mask_in_the_mask_aware_space():
    probe = ProbeSide({VARIANT_FULL: [at(FULL, 0.99)], VARIANT_CUTOUT: [at(CUT, 0.97)]}, masked=False)
    decision = score_photo(probe, MASKED_PHOTO, strategy="cutout", thresholds=THRESHOLDS)
    assert decision is not None and decision.accepted
    assert decision.space == SPACE_MASKED and decision.threshold == 0.96
    assert decision.deciding.variant == VARIANT_CUTOUT
    assert decision.similarity == pytest.approx(0.97, abs=1e-4)


def test_the_synthetic_strategy_compares_the_synthetic_variant_on_both_sides():
    probe = ProbeSide({VARIANT_FULL: [FULL], VARIANT_SYNTHETIC: [at(SYN, 0.95)]}, masked=False)
    decision = score_photo(probe, MASKED_PHOTO, strategy="synthetic", thresholds=THRESHOLDS)
    assert decision.deciding.variant == VARIANT_SYNTHETIC and not decision.accepted  # 0.95 < 0.96


def test_a_masked_photo_never_stands_in_for_the_full_face():
    # Even a perfect full-face vector cannot meet a masked photo: it has no full-face template.
    probe = ProbeSide({VARIANT_FULL: [FULL]}, masked=False)
    assert score_photo(probe, MASKED_PHOTO, strategy="cutout", thresholds=THRESHOLDS) is None
    assert spaces_for(probe_masked=False, probe_unsure=True, photo_has_full=False, photo_unsure=True) == (
        SPACE_MASKED,
    )


def test_neither_side_masked_compares_full_faces_at_the_unmasked_threshold():
    probe = ProbeSide({VARIANT_FULL: [at(FULL, 0.93)]}, masked=False)
    decision = score_photo(probe, UNMASKED_PHOTO, strategy="cutout", thresholds=THRESHOLDS)
    assert decision.accepted and decision.space == SPACE_FULL and decision.threshold == 0.92
    assert len(decision.comparisons) == 1


def test_a_masked_probe_against_an_unmasked_photo_uses_the_mask_aware_space():
    probe = ProbeSide({VARIANT_CUTOUT: [at(CUT, 0.95)]}, masked=True)
    decision = score_photo(probe, UNMASKED_PHOTO, strategy="cutout", thresholds=THRESHOLDS)
    assert decision.space == SPACE_MASKED and not decision.accepted


@pytest.mark.parametrize(
    ("full", "cutout", "accepted", "deciding_space"),
    [
        (0.99, 0.97, True, SPACE_MASKED),  # both pass: the smaller margin is reported
        (0.99, 0.95, False, SPACE_MASKED),  # full passes, mask-aware fails: rejected
        (0.90, 0.99, False, SPACE_FULL),  # mask-aware passes, full fails: rejected
    ],
)
def test_an_unsure_probe_is_compared_both_ways_and_the_stricter_decision_wins(
    full, cutout, accepted, deciding_space
):
    probe = ProbeSide(
        {VARIANT_FULL: [at(FULL, full)], VARIANT_CUTOUT: [at(CUT, cutout)]}, masked=False, unsure=True
    )
    decision = score_photo(probe, UNMASKED_PHOTO, strategy="cutout", thresholds=THRESHOLDS)
    assert {c.space for c in decision.comparisons} == {SPACE_FULL, SPACE_MASKED}
    assert decision.accepted is accepted and decision.space == deciding_space
    assert "stricter" in decision.describe()


def test_an_unsure_enrolled_photo_is_also_compared_both_ways():
    photo = EnrolledPhoto("u", UNMASKED_PHOTO.templates, unsure=True)
    probe = ProbeSide({VARIANT_FULL: [at(FULL, 0.99)], VARIANT_CUTOUT: [at(CUT, 0.90)]}, masked=False)
    assert score_photo(probe, photo, strategy="cutout", thresholds=THRESHOLDS).accepted is False


def test_the_person_decision_is_the_photo_with_the_largest_margin():
    # Matches only the masked photo: accepted through it, whatever the unmasked photo says.
    probe = ProbeSide({VARIANT_FULL: [at(FULL, 0.50)], VARIANT_CUTOUT: [at(CUT, 0.98)]}, masked=False)
    decision = decide(probe, [UNMASKED_PHOTO, MASKED_PHOTO], strategy="cutout", thresholds=THRESHOLDS)
    assert decision.accepted and decision.photo == "m" and decision.space == SPACE_MASKED
    assert decide(probe, [], strategy="cutout", thresholds=THRESHOLDS) is None


def test_only_an_unmasked_sure_probe_without_a_request_skips_the_mask_aware_vector():
    assert probe_spaces(masked=False, unsure=False) == (SPACE_FULL,)
    assert probe_spaces(masked=False, unsure=False, mask_aware=True) == (SPACE_FULL, SPACE_MASKED)
    assert probe_spaces(masked=True, unsure=False) == (SPACE_MASKED,)
    assert probe_spaces(masked=True, unsure=True) == (SPACE_FULL, SPACE_MASKED)


def test_the_unsure_band_holds_the_mask_threshold():
    assert unsure_band(0.5) == (UNSURE_LOW, UNSURE_HIGH)
    assert unsure_band(0.95) == (UNSURE_LOW, 0.95)
    assert is_unsure(0.5) and is_unsure(UNSURE_LOW) and not is_unsure(UNSURE_HIGH)
    assert not is_unsure(0.01) and not is_unsure(0.99) and not is_unsure(None)
