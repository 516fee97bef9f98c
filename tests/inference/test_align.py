from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.align import (
    ALIGN_MODES,
    ARCFACE_112,
    DERIVED_POSITIONS,
    DLIB_150,
    EYE_MESH_INDICES,
    MESH_MODE_INDICES,
    TEMPLATES,
    align_face,
    alignment_matrix,
    derived_positions,
    estimate_similarity,
    transform_points,
)
from inference.decode import load_image
from inference.detect import DetectedFace


@pytest.fixture(scope="module")
def portrait(detector, portraits_dir: Path) -> tuple[np.ndarray, DetectedFace]:
    rgb = load_image(portraits_dir / "img13.jpg")
    return rgb, detector.largest(rgb)


def test_dlib_template_matches_dlibs_chip_geometry():
    # dlib's 150 px chip with padding 0.25: the eye-corner points sit near x = 37 and 113.
    assert DLIB_150.size == (150, 150)
    assert DLIB_150.points[2] == pytest.approx(
        ((0.25 + 0.1205750620789) / 1.5 * 150, (0.25 + 0.2137274526848) / 1.5 * 150)
    )
    assert DLIB_150.mesh_indices == (263, 362, 33, 133, 2)
    assert ARCFACE_112.size == (112, 112)
    assert ARCFACE_112.points.shape == (5, 2)


def test_similarity_recovers_a_known_transform(portrait):
    _, face = portrait
    src = face.landmarks[:, :2].astype(np.float64)
    angle, scale, shift = np.deg2rad(17.0), 0.37, np.array([12.5, -40.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = scale * src @ rotation.T + shift

    matrix = estimate_similarity(src, dst)

    assert matrix.shape == (2, 3)
    assert np.allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    assert np.allclose(matrix[:, 2], shift, atol=1e-6)


def test_similarity_never_mirrors():
    src = np.array([[0, 0], [3, 0], [0, 1], [2, 2], [1, 4]], dtype=float)
    mirrored = src * np.array([-1, 1])
    matrix = estimate_similarity(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


@pytest.mark.parametrize("template", [DLIB_150, ARCFACE_112], ids=lambda t: t.name)
def test_output_is_the_template_size_in_uint8_rgb(portrait, template):
    rgb, face = portrait
    # "yunet" fits YuNet's eye centres, nose and mouth corners: ArcFace-style templates only.
    for mode in (m for m in ALIGN_MODES if m != "yunet" or template is ARCFACE_112):
        crop = align_face(rgb, face, template, mode=mode)
        assert crop.shape == (template.size[1], template.size[0], 3)
        assert crop.dtype == np.uint8


@pytest.mark.parametrize("template", [DLIB_150, ARCFACE_112], ids=lambda t: t.name)
def test_five_points_land_on_the_template(portrait, template):
    _, face = portrait
    matrix = alignment_matrix(face, template)
    landed = transform_points(template.source_points(face.landmarks), matrix)
    # A similarity cannot fit five points of a real face exactly (the mesh's proportions are not
    # the template's); each stays within a few pixels.
    errors = np.linalg.norm(landed - template.points, axis=1)
    assert errors.max() < 0.07 * template.size[0]
    # And the fit is the least-squares optimum: nudging it only makes the error worse.
    base = (errors**2).sum()
    for delta in ([0.5, 0, 0], [0, 0.5, 0], [0.01, 0, 0]):
        nudged = matrix.copy()
        nudged[0] += delta
        worse = np.linalg.norm(
            transform_points(template.source_points(face.landmarks), nudged) - template.points, axis=1
        )
        assert (worse**2).sum() > base


def test_alignment_undoes_rotation_within_two_pixels(detector, portrait):
    rgb, face = portrait
    height, width = rgb.shape[:2]
    centre = ((face.bbox[0] + face.bbox[2]) / 2, (face.bbox[1] + face.bbox[3]) / 2)
    rotation = cv2.getRotationMatrix2D(centre, 25.0, 0.8)
    rotated = cv2.warpAffine(
        rgb, rotation, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    rotated_face = detector.largest(rotated)

    for template in (DLIB_150, ARCFACE_112):
        upright = transform_points(template.source_points(face.landmarks), alignment_matrix(face, template))
        turned = transform_points(
            template.source_points(rotated_face.landmarks), alignment_matrix(rotated_face, template)
        )
        assert np.linalg.norm(upright - turned, axis=1).max() < 2.0
        a = align_face(rgb, face, template).astype(np.int16)
        b = align_face(rotated, rotated_face, template).astype(np.int16)
        assert np.abs(a - b).mean() < 12


def test_derived_positions_cover_every_mode_point():
    for template in TEMPLATES.values():
        positions = derived_positions(template)
        assert set(EYE_MESH_INDICES) <= set(positions)
        assert set(MESH_MODE_INDICES) <= set(positions)
    assert derived_positions(DLIB_150) is DERIVED_POSITIONS["dlib_150"]


def test_arcface_style_templates_carry_arcfaces_derived_positions_over(portrait):
    rgb, face = portrait
    for template in TEMPLATES.values():
        if template.name in DERIVED_POSITIONS or template.mesh_indices != ARCFACE_112.mesh_indices:
            continue
        # "eyes" on such a template is ArcFace's "eyes" followed by the fixed ArcFace-to-template fit.
        to_template = estimate_similarity(ARCFACE_112.points, template.points)
        via_arcface = alignment_matrix(face, ARCFACE_112, mode="eyes")
        chained = to_template[:, :2] @ via_arcface
        chained[:, 2] += to_template[:, 2]
        assert np.allclose(alignment_matrix(face, template, mode="eyes"), chained, atol=1e-6)


def test_eyes_mode_agrees_with_five_points_on_an_unmasked_face(portrait):
    rgb, face = portrait
    for template in (DLIB_150, ARCFACE_112):
        corners = face.landmarks[[33, 133, 362, 263]]
        five = transform_points(corners, alignment_matrix(face, template))
        eyes = transform_points(corners, alignment_matrix(face, template, mode="eyes"))
        assert np.linalg.norm(five - eyes, axis=1).max() < 0.05 * template.size[0]


def test_eyes_mode_puts_a_masked_faces_eyes_where_the_template_expects(detector, mask_data_dir: Path):
    paths = sorted((mask_data_dir / "with_mask").glob("*.jpg"))[:40]
    errors = []
    for path in paths:
        rgb = load_image(path)
        face = detector.largest(rgb)
        if face is None:
            continue
        matrix = alignment_matrix(face, DLIB_150, mode="eyes")
        landed = transform_points(face.landmarks[[33, 263]], matrix)
        expected = np.array([DERIVED_POSITIONS["dlib_150"][33], DERIVED_POSITIONS["dlib_150"][263]])
        errors.append(np.linalg.norm(landed - expected, axis=1).max())
    assert len(errors) >= 25
    # Eye corners of a 150 px chip, where five-point alignment would trust a guessed nose.
    assert np.median(errors) < 4
    assert max(errors) < 12


def test_unknown_mode_is_refused(portrait):
    rgb, face = portrait
    with pytest.raises(ValueError, match="mode"):
        align_face(rgb, face, mode="nose_only")
