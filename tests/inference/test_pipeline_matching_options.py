"""The matching options the benchmarks chose: face choice, frozen CPU networks, jitter, plain probes."""

import cv2
import numpy as np
import pytest
import torch

from inference.cpu_compile import frozen_copy
from inference.detect import DetectedFace
from inference.pipeline import (
    VARIANT_CUTOUT,
    VARIANT_FULL,
    VARIANT_SYNTHETIC,
    FacePipeline,
    match_similarity,
    visible_area,
)


@pytest.fixture(scope="module")
def pipeline(detector) -> FacePipeline:
    return FacePipeline("dlib_resnet_v1", device="cpu", detector=detector)


def _face_with_box(x0, y0, x1, y1) -> DetectedFace:
    points = np.zeros((478, 3), dtype=np.float32)
    points[:, :2] = (x0, y0)
    points[1, :2] = (x1, y1)
    return DetectedFace.from_landmarks(points)


def test_visible_area_counts_only_the_part_inside_the_frame():
    assert visible_area(_face_with_box(10, 20, 110, 120), (250, 250, 3)) == 100 * 100
    # A face cut by the left border: the mesh box extends to x=-40, only 60 columns are visible.
    assert visible_area(_face_with_box(-40, 20, 60, 130), (250, 250, 3)) == 60 * 110
    assert visible_area(_face_with_box(300, 0, 400, 100), (250, 250, 3)) == 0


def test_the_face_with_most_pixels_in_the_frame_is_used(pipeline, lfw_image):
    # A neighbour's face cut by the left border: the mesh box extrapolated beyond the frame is
    # larger than the subject's, the part inside the frame is not.
    rgb = lfw_image("Robin_McLaurin_Williams", 1)
    faces = pipeline.detector.detect(rgb)
    assert len(faces) == 2 and faces[0].bbox[0] < 0  # the detector's "largest" is the cut one
    result = pipeline.analyze(rgb, strict=False)
    assert result.face.bbox == faces[1].bbox


def test_frozen_networks_match_the_eager_ones(pipeline, lfw_image):
    eager = FacePipeline("dlib_resnet_v1", device="cpu", detector=pipeline.detector, optimize=False)
    rgb = lfw_image("Aaron_Peirsol", 2)
    face = pipeline.detector.largest(rgb)
    crops = pipeline._crops(rgb, face, VARIANT_FULL)
    np.testing.assert_allclose(pipeline.embedder.embed(crops), eager.embedder.embed(crops), atol=1e-5)
    chip = cv2.resize(crops[0], (150, 150))
    np.testing.assert_allclose(
        pipeline.mask_classifier.predict_proba([chip]), eager.mask_classifier.predict_proba([chip]), atol=1e-5
    )
    # The pipeline may keep a compiled copy (whichever form is fastest); the shared
    # (process-cached) originals always stay eager.
    assert not isinstance(eager.embedder.module, torch.jit.ScriptModule)
    assert not isinstance(eager.mask_classifier.model, torch.jit.ScriptModule)
    sentinel = object()
    assert frozen_copy(sentinel, "module", (3, 8, 8)) is sentinel


def test_jitter_is_deterministic_and_normalised(detector, lfw_image):
    jittered = FacePipeline("dlib_resnet_v1", device="cpu", detector=detector, jitter=2)
    rgb = lfw_image("Aaron_Peirsol", 3)
    first = jittered.probe([rgb])[0].embeddings[VARIANT_FULL][0]
    second = jittered.probe([rgb])[0].embeddings[VARIANT_FULL][0]
    np.testing.assert_array_equal(first, second)
    assert np.linalg.norm(first) == pytest.approx(1.0, abs=1e-5)


def test_enroll_jitter_averages_enrollment_templates_and_leaves_probes_alone(pipeline, lfw_image):
    jittered = FacePipeline("dlib_resnet_v1", device="cpu", detector=pipeline.detector, enroll_jitter=3)
    rgb = lfw_image("Aaron_Peirsol", 1)
    plain = pipeline.enroll([rgb], allow_masked=True, enforce_policy=False)[0].embeddings
    averaged = jittered.enroll([rgb], allow_masked=True, enforce_policy=False)[0].embeddings
    again = jittered.enroll([rgb], allow_masked=True, enforce_policy=False)[0].embeddings
    for variant in (VARIANT_FULL, VARIANT_CUTOUT):
        assert len(averaged[variant]) == 1  # still one template per variant and photo
        np.testing.assert_array_equal(averaged[variant][0], again[variant][0])
        assert np.linalg.norm(averaged[variant][0]) == pytest.approx(1.0, abs=1e-5)
        # The same face seen a few pixels and degrees apart: close to, not equal to, the plain chip.
        similarity = float(averaged[variant][0] @ plain[variant][0])
        assert 0.98 < similarity < 1.0 - 1e-6
    probe = lfw_image("Aaron_Peirsol", 2)
    # Two pipeline objects may take different CPU kernels: equal up to float rounding (a jittered
    # probe would differ by about 1e-2).
    np.testing.assert_allclose(
        jittered.probe([probe])[0].embeddings[VARIANT_FULL][0],
        pipeline.probe([probe])[0].embeddings[VARIANT_FULL][0],
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="enroll_jitter"):
        FacePipeline(device="cpu", detector=pipeline.detector, enroll_jitter=-1)


def test_enrollment_templates_and_plain_probes(pipeline, lfw_image):
    rgb = lfw_image("Aaron_Peirsol", 1)
    enrolled = pipeline.enroll([rgb], allow_masked=True, enforce_policy=False)[0]
    assert enrolled.ok and not enrolled.masked
    counts = {variant: len(vectors) for variant, vectors in enrolled.embeddings.items()}
    # One template per variant (the template store keeps one per variant and photo): the
    # synthetic one is the mean of the renders.
    assert pipeline.synthetic_masks_per_photo > 1
    assert counts == {VARIANT_FULL: 1, VARIANT_CUTOUT: 1, VARIANT_SYNTHETIC: 1}
    assert np.linalg.norm(enrolled.embeddings[VARIANT_SYNTHETIC][0]) == pytest.approx(1.0, abs=1e-5)
    probe = pipeline.probe([lfw_image("Aaron_Peirsol", 2)], strategy="plain")[0]
    assert set(probe.embeddings) == {VARIANT_FULL}  # unmasked: full face whatever the strategy
    assert match_similarity(probe, enrolled.embeddings) > 0.9
    with pytest.raises(ValueError, match="unknown mask strategy"):
        pipeline.probe([rgb], strategy="nope")


def test_enforce_policy_false_enrolls_a_face_the_policy_refuses(pipeline, lfw_image):
    rgb = lfw_image("Aaron_Peirsol", 1)
    blurred = cv2.GaussianBlur(rgb, (0, 0), 4)
    strict = pipeline.enroll([blurred])[0]
    if strict.ok:
        pytest.skip("the blurred photo passed the quality checks")
    relaxed = pipeline.enroll([blurred], allow_masked=True, enforce_policy=False)[0]
    assert relaxed.ok and relaxed.quality.reasons and relaxed.embeddings
