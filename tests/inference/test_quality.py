from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.decode import load_image
from inference.quality import DEFAULT_THRESHOLDS, QualityThresholds, assess_quality, head_pose


@pytest.fixture(scope="module")
def sharp_portrait(detector, portraits_dir: Path):
    rgb = load_image(portraits_dir / "img14.jpg")
    return rgb, detector.largest(rgb)


def test_a_clear_frontal_portrait_passes(sharp_portrait):
    rgb, face = sharp_portrait
    report = assess_quality(rgb, face)
    assert report.ok and report.reasons == []
    assert report.eyes_visible
    assert report.face_px > DEFAULT_THRESHOLDS.min_face_px
    assert abs(report.yaw) < 15 and abs(report.pitch) < 15 and abs(report.roll) < 10
    assert 0.5 < report.score <= 1.0


def test_most_portraits_pass(detector, portraits_dir: Path):
    passed = []
    for path in sorted(portraits_dir.glob("*.jpg")):
        rgb = load_image(path)
        passed.append(assess_quality(rgb, detector.largest(rgb)).ok)
    assert np.mean(passed) >= 0.9


def test_blur_is_reported_and_lowers_the_score(detector, sharp_portrait):
    rgb, face = sharp_portrait
    blurred = cv2.GaussianBlur(rgb, (0, 0), 3 * face.size / 150)
    blurred_face = detector.largest(blurred)

    report = assess_quality(blurred, blurred_face)

    assert "too_blurred" in report.reasons and not report.ok
    assert report.sharpness < assess_quality(rgb, face).sharpness / 5
    assert report.score < assess_quality(rgb, face).score


def test_sharpness_does_not_depend_on_the_photo_resolution(detector, portraits_dir: Path):
    rgb = load_image(portraits_dir / "img13.jpg")
    values = []
    for factor in (1.0, 0.5, 0.35):
        image = (
            rgb
            if factor == 1.0
            else cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        )
        values.append(assess_quality(image, detector.largest(image)).sharpness)
    # The face stays larger than the 150 px chip at every factor, so the chip looks alike; on raw
    # pixels the Laplacian's variance would change by an order of magnitude over these sizes.
    assert max(values) < 2 * min(values)


def test_small_face_is_reported(detector, sharp_portrait):
    rgb, _ = sharp_portrait
    small = cv2.resize(rgb, None, fx=0.2, fy=0.2, interpolation=cv2.INTER_AREA)
    face = detector.largest(small)
    assert face is not None
    report = assess_quality(small, face)
    assert "face_too_small" in report.reasons
    assert report.face_px == pytest.approx(face.size)


def test_roll_follows_an_in_plane_rotation(detector, sharp_portrait):
    rgb, face = sharp_portrait
    height, width = rgb.shape[:2]
    centre = ((face.bbox[0] + face.bbox[2]) / 2, (face.bbox[1] + face.bbox[3]) / 2)
    before = assess_quality(rgb, face).roll
    for angle in (20.0, 60.0):
        turned = cv2.warpAffine(rgb, cv2.getRotationMatrix2D(centre, angle, 1.0), (width, height))
        report = assess_quality(turned, detector.largest(turned))
        assert report.roll - before == pytest.approx(angle, abs=5)
    assert "pose_too_far" in report.reasons


def test_mirror_image_negates_yaw_and_roll_and_keeps_pitch(detector, portraits_dir: Path):
    rgb = load_image(portraits_dir / "img12.jpg")
    yaw, pitch, roll = head_pose(detector.largest(rgb).landmarks)
    m_yaw, m_pitch, m_roll = head_pose(detector.largest(np.ascontiguousarray(rgb[:, ::-1])).landmarks)
    assert abs(yaw) > 4
    assert m_yaw == pytest.approx(-yaw, abs=3)
    assert m_roll == pytest.approx(-roll, abs=3)
    assert m_pitch == pytest.approx(pitch, abs=3)


def test_yaw_sign_follows_the_nose(detector, portraits_dir: Path):
    # Yaw is positive when the face turns towards the image's right, where the nose then points.
    for name in ("img12.jpg", "img13.jpg", "img14.jpg"):
        rgb = load_image(portraits_dir / name)
        landmarks = detector.largest(rgb).landmarks
        nose_offset = landmarks[1, 0] - (landmarks[33, 0] + landmarks[263, 0]) / 2
        assert np.sign(head_pose(landmarks)[0]) == np.sign(nose_offset), name


def test_closed_eyes_are_reported(detector, mask_data_dir: Path):
    # Photos from the unmasked set where the person has the eyes shut (looked at by eye).
    for name in ("0_0_gulinazha_0035.jpg", "1_0_aidai_0086.jpg"):
        rgb = load_image(mask_data_dir / "without_mask" / name)
        report = assess_quality(rgb, detector.largest(rgb))
        assert not report.eyes_visible, name
        assert "eyes_not_visible" in report.reasons


def test_eyes_cut_off_by_the_frame_are_not_visible(detector, sharp_portrait):
    rgb, face = sharp_portrait
    eye_row = int(face.landmarks[[145, 374], 1].max()) + 1
    cropped = np.ascontiguousarray(rgb[eye_row:])
    cropped_face = face.from_landmarks(face.landmarks - np.array([0, eye_row, 0], dtype=np.float32))
    assert "eyes_not_visible" in assess_quality(cropped, cropped_face).reasons


def test_thresholds_come_from_one_place(sharp_portrait):
    rgb, face = sharp_portrait
    strict = replace(DEFAULT_THRESHOLDS, min_face_px=10_000, min_sharpness=1e9)
    report = assess_quality(rgb, face, strict)
    assert report.reasons == ["face_too_small", "too_blurred"]
    assert isinstance(strict, QualityThresholds)
