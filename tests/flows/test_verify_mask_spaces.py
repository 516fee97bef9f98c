"""Verify compares in the space the two sides' mask decisions call for: no pair goes unscored
because of which side wore the mask, and an unsure mask decision must pass both spaces."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from faceid import services
from faceid.contracts import FrameResult
from faceid.flows import prepare_verify
from faceid.flows.verify import finish_verify
from inference.variants import VARIANT_CUTOUT, VARIANT_FULL
from tests.flows.builders import MODEL, at_similarity, frame, images, output

pytestmark = pytest.mark.django_db


def verify(caller, claim: str, *frames: FrameResult):
    prepared = prepare_verify(caller, person_ref=claim, images=images(len(frames)))
    return prepared, finish_verify(prepared.call, output(*frames))


def add_photo(gallery, external_id: str, name: str, *, masked: bool, mask_probability: float = 0.02) -> dict:
    """One more enrollment photo of a person: with a mask on, only its mask-aware templates."""
    enrolled = gallery.people[external_id]
    vectors = {VARIANT_FULL: gallery.probe_vector(), VARIANT_CUTOUT: gallery.probe_vector()}
    variants = (VARIANT_CUTOUT,) if masked else (VARIANT_FULL, VARIANT_CUTOUT)
    services.store_templates(
        gallery.organization,
        enrolled.person,
        [
            services.TemplateData(
                model_name=MODEL,
                model_version="test-v1",
                variant=variant,
                embedding=vectors[variant],
                source_sha256=hashlib.sha256(name.encode()).hexdigest(),
                quality=0.9,
                mask_probability=mask_probability,
            )
            for variant in variants
        ],
    )
    return vectors


def test_an_unmasked_probe_of_a_person_enrolled_with_a_mask_is_scored_mask_aware(caller, gallery, attempts):
    gallery.enroll("dave", variants=(VARIANT_CUTOUT,))  # a photo with a mask on: no full face
    probe = frame(
        {
            VARIANT_FULL: [gallery.probe_vector()],
            VARIANT_CUTOUT: [gallery.probe("dave", 0.97, variant=VARIANT_CUTOUT)],
        }
    )
    prepared, result = verify(caller, "dave", probe)

    assert prepared.request.mask_aware is True  # the worker is asked for the mask-aware vector
    assert result.match is True and result.masked is False  # the probe itself wore no mask
    assert result.threshold == 0.96 and result.similarity == pytest.approx(0.97, abs=1e-4)
    row = attempts()[0]
    assert row.decision == "accept" and row.threshold == 0.96
    assert "masked space (masked_cutout)" in row.reason


def test_the_masked_threshold_holds_when_the_enrolled_side_wore_the_mask(caller, gallery):
    gallery.enroll("dave", variants=(VARIANT_CUTOUT,))
    probe = frame(
        {
            VARIANT_FULL: [gallery.probe_vector()],
            VARIANT_CUTOUT: [gallery.probe("dave", 0.94, variant=VARIANT_CUTOUT)],
        }
    )
    _, result = verify(caller, "dave", probe)
    assert result.match is False and result.threshold == 0.96  # 0.94 would pass unmasked (0.92)


def test_a_person_enrolled_without_a_mask_costs_the_probe_no_extra_vector(caller, gallery):
    gallery.enroll("alice")
    prepared = prepare_verify(caller, person_ref="alice", images=images())
    assert prepared.request.mask_aware is False


def test_an_unmasked_probe_matching_only_the_masked_photo_is_accepted(caller, gallery):
    gallery.enroll("erin")  # an unmasked photo the probe does not resemble
    masked = add_photo(gallery, "erin", "erin-masked.jpg", masked=True)
    probe = frame(
        {
            VARIANT_FULL: [gallery.probe("erin", 0.5)],
            VARIANT_CUTOUT: [at_similarity(masked[VARIANT_CUTOUT], 0.98, np.random.default_rng(1))],
        }
    )
    _, result = verify(caller, "erin", probe)
    assert result.match is True and result.threshold == 0.96


@pytest.mark.parametrize(("cutout", "match"), [(0.97, True), (0.95, False)])
def test_an_unsure_probe_must_pass_both_spaces(caller, gallery, attempts, cutout, match):
    gallery.enroll("alice")
    unsure = dataclasses.replace(
        frame(
            {
                VARIANT_FULL: [gallery.probe("alice", 0.99)],
                VARIANT_CUTOUT: [gallery.probe("alice", cutout, variant=VARIANT_CUTOUT)],
            }
        ),
        mask_probability=0.4,  # called unmasked at 0.5, but inside the unsure band
    )
    _, result = verify(caller, "alice", unsure)
    assert result.match is match and result.threshold == 0.96
    assert "the stricter decides" in attempts()[0].reason
