"""The probe carries what its comparison spaces need; crops follow each template (contract C2)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.embedders import embedder_spec
from inference.mask.occlusion import lower_face_row
from inference.pipeline import (
    KIND_CUTOUT,
    KIND_FULL,
    KIND_OWN,
    KIND_RENDERED,
    KINDS,
    FacePipeline,
    enrollment_kinds,
    probe_kinds,
)
from inference.templates import ARCFACE_112, DLIB_150
from inference.variants import VARIANT_CUTOUT, VARIANT_FULL, VARIANT_SYNTHETIC


@pytest.fixture(scope="module")
def pipeline(detector) -> FacePipeline:
    return FacePipeline("dlib_resnet_v1", device="cpu", detector=detector)


def test_an_unmasked_sure_probe_costs_one_vector_and_asks_add_the_mask_aware_one():
    assert probe_kinds("cutout", masked=False, unsure=False) == {VARIANT_FULL: KIND_FULL}
    assert probe_kinds("cutout", masked=False, unsure=False, mask_aware=True) == {
        VARIANT_FULL: KIND_FULL,
        VARIANT_CUTOUT: KIND_CUTOUT,
    }
    # Synthetic space: a probe without a mask gets masks rendered on, a masked one is itself.
    assert (
        probe_kinds("synthetic", masked=False, unsure=False, mask_aware=True)[VARIANT_SYNTHETIC]
        == KIND_RENDERED
    )
    assert probe_kinds("synthetic", masked=True, unsure=False) == {VARIANT_SYNTHETIC: KIND_OWN}
    assert probe_kinds("cutout", masked=True, unsure=True) == {
        VARIANT_FULL: KIND_FULL,
        VARIANT_CUTOUT: KIND_CUTOUT,
    }


def test_a_masked_enrollment_photo_stores_no_full_face_template():
    assert VARIANT_FULL not in enrollment_kinds(masked=True)
    assert set(enrollment_kinds(masked=False)) == {VARIANT_FULL, VARIANT_CUTOUT, VARIANT_SYNTHETIC}


def test_full_face_crops_follow_the_spec_unless_the_caller_overrides(pipeline, detector):
    assert pipeline.align_mode == embedder_spec("dlib_resnet_v1").input.align_mode
    assert pipeline.masked_align_mode == "mesh"
    chosen = FacePipeline(
        "dlib_resnet_v1", device="cpu", detector=detector, align_mode="eyes", optimize=False
    )
    assert chosen.align_mode == "eyes" and chosen.masked_align_mode == "mesh"


def test_the_cutout_starts_below_the_nose_on_every_template():
    assert lower_face_row(DLIB_150) == 76  # dlib's chip: exactly the row measured best before
    assert lower_face_row(ARCFACE_112) == 74  # not 57, the old scaled row, on the eyes
    # A template without mean mesh positions (ArcFace's five-point convention) gets the same row.
    from inference.templates import AlignTemplate

    canvas = AlignTemplate(
        "canvas_without_positions", (112, 112), ARCFACE_112.points, ARCFACE_112.mesh_indices
    )
    assert lower_face_row(canvas) == 74
    scaled = AlignTemplate(
        "scaled", (144, 144), (ARCFACE_112.points + 0.5) * 144 / 112 - 0.5, ARCFACE_112.mesh_indices
    )
    assert lower_face_row(scaled) == pytest.approx(74 * 144 / 112, abs=1)


def test_the_pipeline_blanks_its_own_templates_row_with_the_networks_mean(pipeline):
    assert pipeline.cutout_row == 76 and pipeline.cutout_start_row is None
    chip = np.full((150, 150, 3), 7, dtype=np.uint8)
    out = pipeline._cutout(chip)
    assert (out[:76] == 7).all() and (out[76:] == (123, 117, 104)).all()


def test_an_unmasked_probe_asked_for_the_mask_aware_vector_carries_both(pipeline, lfw_image):
    rgb = lfw_image("Aaron_Peirsol", 2)
    plain = pipeline.probe([rgb], strategy="cutout")[0]
    assert not plain.masked and not plain.mask_unsure and set(plain.embeddings) == {VARIANT_FULL}
    asked = pipeline.probe([rgb], strategy="cutout", mask_aware=True)[0]
    assert set(asked.embeddings) == {VARIANT_FULL, VARIANT_CUTOUT}
    np.testing.assert_allclose(
        asked.embeddings[VARIANT_FULL][0], plain.embeddings[VARIANT_FULL][0], atol=1e-5
    )
    # The same vector as the enrolled cutout template of the same photo: the spaces agree.
    enrolled = pipeline.enroll([rgb], allow_masked=True, enforce_policy=False)[0]
    np.testing.assert_allclose(
        asked.embeddings[VARIANT_CUTOUT][0], enrolled.embeddings[VARIANT_CUTOUT][0], atol=1e-4
    )
    every = pipeline.embed_kinds([rgb])[0]
    assert set(every.embeddings) == set(KINDS)
    np.testing.assert_allclose(every.embeddings[KIND_FULL][0], plain.embeddings[VARIANT_FULL][0], atol=1e-4)
