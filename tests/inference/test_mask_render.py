from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.align import DLIB_150, align_face
from inference.mask.render import KINDS, MaskStyle, mask_polygon, render_synthetic_mask
from toolkit.overlay import face_anchor_points, load_templates, overlay_mask

# Eye contours (both eyes) of the MediaPipe mesh: a mask must leave them alone.
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
# Unmasked LFW faces, frontal and turned, used as canvases.
LFW_FACES = (("Abel_Pacheco", 1), ("Aaron_Eckhart", 1), ("Colin_Powell", 2), ("Serena_Williams", 3))


@pytest.fixture(scope="module")
def faces(detector, lfw_image):
    out = []
    for name, number in LFW_FACES:
        rgb = lfw_image(name, number)
        face = detector.largest(rgb)
        assert face is not None, name
        out.append((rgb, face))
    return out


def _fill(shape: tuple[int, ...], polygon: np.ndarray) -> np.ndarray:
    canvas = np.zeros(shape[:2], dtype=np.uint8)
    cv2.fillPoly(canvas, [np.round(polygon).astype(np.int32)], 1)
    return canvas.astype(bool)


def test_same_seed_draws_the_same_mask_and_another_seed_a_different_one(faces):
    rgb, face = faces[0]
    first = render_synthetic_mask(rgb, face, rng=np.random.default_rng(7))
    again = render_synthetic_mask(rgb, face, rng=np.random.default_rng(7))
    other = render_synthetic_mask(rgb, face, rng=np.random.default_rng(8))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    # Without an rng the renderer is still deterministic (enrollment must be reproducible).
    assert np.array_equal(render_synthetic_mask(rgb, face), render_synthetic_mask(rgb, face))


def test_input_image_is_left_unchanged(faces):
    rgb, face = faces[0]
    before = rgb.copy()
    render_synthetic_mask(rgb, face, rng=np.random.default_rng(0))
    assert np.array_equal(rgb, before)


@pytest.mark.parametrize("seed", range(6))
def test_mask_is_drawn_inside_the_mesh_polygon_and_nowhere_else(faces, seed):
    rng = np.random.default_rng(seed)
    style = MaskStyle.random(rng)
    for rgb, face in faces:
        out = render_synthetic_mask(rgb, face, rng=rng, style=style)
        changed = np.any(out != rgb, axis=2)
        inside = _fill(rgb.shape, mask_polygon(face, style))
        # Anti-aliasing touches at most a pixel beyond the outline.
        near = cv2.dilate(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        core = cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert not changed[~near].any()
        assert changed[core].mean() > 0.95


def test_polygon_runs_from_the_nose_bridge_to_below_the_chin_and_spares_the_eyes(faces):
    for rgb, face in faces:
        points = face.landmarks[:, :2]
        for top in (0.0, 0.5, 1.0):
            inside = _fill(rgb.shape, mask_polygon(face, MaskStyle(top=top)))
            for index in (4, 13, 14, 61, 291):  # nose tip, lips, mouth corners
                x, y = np.round(points[index]).astype(int)
                assert inside[y, x], (index, top)
            x, y = np.round(points[152]).astype(int)
            assert inside[y - 2, x], top  # just above the chin point: the outline passes below it
            eyes = _fill(rgb.shape, points[list(RIGHT_EYE)]) | _fill(rgb.shape, points[list(LEFT_EYE)])
            assert not (inside & eyes).any(), top


def test_eyes_keep_their_pixels_whatever_the_style(faces):
    rng = np.random.default_rng(3)
    for rgb, face in faces:
        points = face.landmarks[:, :2]
        eyes = _fill(rgb.shape, points[list(RIGHT_EYE)]) | _fill(rgb.shape, points[list(LEFT_EYE)])
        for kind in KINDS:
            style = replace(MaskStyle.random(rng), kind=kind, top=0.0)  # the highest a mask sits
            out = render_synthetic_mask(rgb, face, rng=rng, style=style)
            assert np.array_equal(out[eyes], rgb[eyes]), kind


def test_a_higher_top_edge_covers_more_of_the_nose(faces):
    rgb, face = faces[0]
    high = _fill(rgb.shape, mask_polygon(face, MaskStyle(top=0.0))).sum()
    low = _fill(rgb.shape, mask_polygon(face, MaskStyle(top=1.0))).sum()
    assert high > low * 1.05


def test_unknown_mask_kind_is_refused():
    with pytest.raises(ValueError, match="unknown mask kind"):
        MaskStyle(kind="scarf")


def test_classifier_calls_faces_with_a_rendered_mask_masked(faces):
    from inference.mask.classifier import get_mask_classifier

    classifier = get_mask_classifier(device="cpu")
    plain, masked = [], []
    for index, (rgb, face) in enumerate(faces):
        plain.append(align_face(rgb, face, DLIB_150))
        for seed in range(3):
            rendered = render_synthetic_mask(rgb, face, rng=np.random.default_rng(100 * index + seed))
            masked.append(align_face(rendered, face, DLIB_150))
    assert (classifier.predict_proba(plain) < 0.5).all()
    assert (classifier.predict_proba(masked) >= 0.5).mean() >= 0.9


def test_overlay_templates_are_read_with_their_six_anchors(shared_data: Path):
    templates = load_templates(shared_data / "mask-overlays")
    names = {t.name for t in templates}
    assert {"surgical", "N95", "cloth", "KN95", "surgical_left", "surgical_right"} <= names
    assert not names & {"empty", "inpaint"}
    for template in templates:
        assert template.anchors.shape == (6, 2)
        assert template.rgba().shape[2] == 4
    assert {t.view for t in templates} == {"front", "left", "right"}


def test_overlay_covers_the_mouth_and_leaves_the_eyes(shared_data: Path, faces):
    templates = {t.name: t for t in load_templates(shared_data / "mask-overlays")}
    rgb, face = faces[0]
    out = overlay_mask(rgb, face, templates["surgical"])
    points = face.landmarks[:, :2]
    changed = np.any(out != rgb, axis=2)
    mouth = _fill(rgb.shape, points[[61, 0, 291, 17]])
    eyes = _fill(rgb.shape, points[list(RIGHT_EYE)]) | _fill(rgb.shape, points[list(LEFT_EYE)])
    assert changed[mouth].mean() > 0.95
    assert not changed[eyes].any()
    anchors = face_anchor_points(face)
    assert anchors[1, 1] < points[4, 1] < anchors[4, 1]  # nose bridge above the nose tip, chin below
