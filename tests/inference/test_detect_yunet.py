"""YuNet beside the mesh: its five points on detected faces, the "yunet" alignment mode, and the
faces that only YuNet's scan finds."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.align import ALIGN_MODES, ARCFACE_112, DLIB_150, alignment_matrix, transform_points
from inference.boxes import iou
from inference.decode import load_image
from inference.detect import SCAN_FILL_SIDE, SCAN_MAX_SIDE, DetectedFace, FaceDetector
from inference.templates import TEMPLATES
from inference.yunet import YUNET_DIR, YUNET_WEIGHTS, YuNet, YuNetFace


@pytest.fixture(scope="module")
def abel(detector, lfw_image) -> tuple[np.ndarray, DetectedFace]:
    rgb = lfw_image("Abel_Pacheco", 1)
    return rgb, detector.largest(rgb)


class _SeenSizes(YuNet):
    """The real YuNet, noting the size of every image it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, int]] = []

    def detect_bgr(self, bgr: np.ndarray) -> list[YuNetFace]:
        self.sizes.append(bgr.shape[:2])
        return super().detect_bgr(bgr)


def _interocular(points5: np.ndarray) -> float:
    return float(np.linalg.norm(points5[0] - points5[1]))


def test_yunet_weights_ship_with_their_licence():
    assert YUNET_WEIGHTS.is_file() and (YUNET_DIR / "LICENSE").is_file()
    assert "MIT License" in (YUNET_DIR / "LICENSE").read_text()


def test_a_meshed_face_gets_yunets_five_points_in_arcface_order(abel):
    _, face = abel
    points = face.points5
    assert points is not None and points.shape == (5, 2) and points.dtype == np.float32
    assert not points.flags.writeable
    left_eye, right_eye, nose, left_mouth, right_mouth = points
    # Image-left features first; eyes above the nose, the nose above the mouth.
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
    # The same five places as the mesh's (YuNet's nose and mouth sit a little higher).
    mesh_points = ARCFACE_112.source_points(face.landmarks)
    distance = np.linalg.norm(points - mesh_points, axis=1)
    assert distance.max() < 0.35 * _interocular(points)


def test_yunet_mode_puts_yunets_points_on_the_template(abel):
    _, face = abel
    for template in (t for t in TEMPLATES.values() if t.mesh_indices == ARCFACE_112.mesh_indices):
        matrix = alignment_matrix(face, template, mode="yunet")
        landed = transform_points(face.points5, matrix)
        assert np.abs(landed - template.points).max() < 0.12 * template.size[0]
        assert not np.allclose(matrix, alignment_matrix(face, template, mode="five_point"))


def test_yunet_mode_falls_back_to_the_mesh_without_points5(abel):
    _, face = abel
    bare = face.with_points5(None)
    assert "yunet" in ALIGN_MODES
    assert np.array_equal(
        alignment_matrix(bare, ARCFACE_112, mode="yunet"),
        alignment_matrix(face, ARCFACE_112, mode="five_point"),
    )


def test_yunet_mode_is_refused_for_a_template_of_other_points(abel):
    _, face = abel
    with pytest.raises(ValueError, match="yunet"):
        alignment_matrix(face, DLIB_150, mode="yunet")


def test_yunet_sees_the_same_face_as_the_mesh_in_a_real_photo(lfw_image):
    faces = YuNet().detect_rgb(lfw_image("Abel_Pacheco", 1))
    assert faces and faces[0].score > 0.8
    x0, y0, x1, y1 = faces[0].box
    assert 40 < x0 < x1 < 210 and 40 < y0 < y1 < 220


def test_the_detector_before_yunet_gives_no_points5(lfw_image):
    with FaceDetector(yunet=False) as plain:
        face = plain.largest(lfw_image("Abel_Pacheco", 1))
    assert face is not None and face.points5 is None


def test_a_tilted_face_the_mesh_misses_is_found_upright_and_meshed(detector, lfw_image):
    rgb = lfw_image("Abel_Pacheco", 1)
    # A small face in a wide scene, turned 50 degrees: the plain mesh pass does not see it.
    small = cv2.resize(rgb, (110, 110), interpolation=cv2.INTER_AREA)
    matrix = cv2.getRotationMatrix2D((55.0, 55.0), 50.0, 1.0)
    tilted = cv2.warpAffine(small, matrix, (110, 110), borderMode=cv2.BORDER_REPLICATE)
    scene = np.full((480, 640, 3), 100, np.uint8)
    scene[300:410, 420:530] = tilted
    with FaceDetector(fallbacks=False, yunet=False) as plain:
        assert plain.detect(scene) == []

    faces = detector.detect(scene)

    assert len(faces) == 1
    face = faces[0]
    assert face.source == "yunet" and face.points5 is not None
    assert face.landmarks.shape == (478, 3)
    x0, y0, x1, y1 = face.bbox
    assert 410 < x0 < x1 < 540 and 290 < y0 < y1 < 420
    # The mesh's eye line follows the tilt (about 50 degrees, counter-clockwise on screen).
    eyes = ARCFACE_112.source_points(face.landmarks)[:2]
    angle = np.degrees(np.arctan2(eyes[0][1] - eyes[1][1], eyes[1][0] - eyes[0][0]))
    assert 35 < angle < 65


def test_a_crowd_of_small_faces_is_found_face_by_face(detector, lfw_image):
    names = ("Abel_Pacheco", "Aaron_Eckhart", "Aaron_Peirsol", "Abdullah_Gul")
    scene = np.full((600, 900, 3), 110, np.uint8)
    for index, name in enumerate(names):
        face = cv2.resize(lfw_image(name, 1), (90, 90), interpolation=cv2.INTER_AREA)
        scene[250:340, 40 + index * 220 : 130 + index * 220] = face

    faces = detector.detect(scene)

    assert len(faces) == len(names)
    assert all(face.points5 is not None for face in faces)
    assert sorted(round(face.bbox[0] / 220) for face in faces) == [0, 1, 2, 3]


def test_yunet_finds_no_face_in_a_blank_or_background_image(detector, portraits_dir: Path):
    flat = np.full((400, 400, 3), 180, np.uint8)
    assert YuNet().detect_rgb(flat) == []
    background = load_image(portraits_dir / "img22.jpg")[:200, :700]
    assert detector.detect(background) == []


def test_points5_can_be_skipped_for_callers_that_align_on_the_mesh(detector, lfw_image):
    rgb = lfw_image("Abel_Pacheco", 1)
    with_points = detector.largest(rgb)
    [bare] = detector.detect(rgb, points5=False)
    assert bare.points5 is None and with_points.points5 is not None
    assert np.array_equal(bare.landmarks, with_points.landmarks)


def test_a_face_filling_a_large_frame_is_found_in_a_small_bordered_view(lfw_image):
    close_up = lfw_image("Abel_Pacheco", 1)[80:175, 80:175]
    [small] = YuNet().detect_rgb(close_up)
    large = cv2.resize(close_up, (2400, 2400), interpolation=cv2.INTER_CUBIC)
    yunet = _SeenSizes()

    faces = FaceDetector._yunet_scan(yunet, large)

    assert faces, yunet.sizes
    # The scan's view (960 px) holds the face too large for YuNet: the bordered fill view finds it.
    assert max(yunet.sizes[-1]) <= 2 * SCAN_FILL_SIDE
    expected = small.mapped(2400 / 95)
    assert iou(faces[0].box, expected.box) > 0.6, (faces[0].box, expected.box)


def test_the_scan_never_gives_yunet_the_full_pixels_of_a_large_photo():
    yunet = _SeenSizes()
    assert FaceDetector._yunet_scan(yunet, np.full((6000, 4500, 3), 128, np.uint8)) == []
    assert yunet.sizes and max(max(size) for size in yunet.sizes) <= SCAN_MAX_SIDE


def test_the_bordered_mesh_pass_meshes_a_large_close_up_where_a_small_one_would_be(detector, lfw_image):
    close_up = lfw_image("Abel_Pacheco", 1)[60:190, 60:190]
    [small] = detector._mesh_padded(close_up)
    large = cv2.resize(close_up, (2600, 2600), interpolation=cv2.INTER_CUBIC)

    [face] = detector._mesh_padded(large)

    scale = 2600 / 130
    assert iou(face.bbox, tuple(v * scale for v in small.bbox)) > 0.9
    eyes = np.linalg.norm(face.landmarks[33, :2] - face.landmarks[263, :2])
    assert abs(eyes / scale - np.linalg.norm(small.landmarks[33, :2] - small.landmarks[263, :2])) < 2.0
