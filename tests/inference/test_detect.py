from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.decode import load_image
from inference.detect import NUM_LANDMARKS, DetectedFace, FaceDetector, get_face_detector

# Tight crops from the mask data set that the plain mesh pass misses (found by running it).
TIGHT_CROPS = ("0_0_baobeier_0064.jpg", "0_0_huxia_0121.jpg", "1_0_anhu_0011.jpg")


@pytest.fixture(scope="module")
def plain_mesh() -> FaceDetector:
    detector = FaceDetector(fallbacks=False)
    yield detector
    detector.close()


def _inside(face: DetectedFace, box: tuple[float, float, float, float], slack: float = 0.0) -> bool:
    x0, y0, x1, y1 = face.bbox
    return x0 >= box[0] - slack and y0 >= box[1] - slack and x1 <= box[2] + slack and y1 <= box[3] + slack


def test_finds_the_face_in_an_lfw_image_with_a_full_mesh(detector, lfw_image):
    rgb = lfw_image("Abel_Pacheco", 1)
    faces = detector.detect(rgb)
    assert len(faces) == 1
    face = faces[0]
    assert face.landmarks.shape == (NUM_LANDMARKS, 3) and face.landmarks.dtype == np.float32
    assert face.source == "mesh"
    # LFW centres the face in the 250 px frame.
    assert _inside(face, (40, 40, 210, 220))
    assert 70 < face.size < 160
    assert face.area == pytest.approx((face.bbox[2] - face.bbox[0]) * (face.bbox[3] - face.bbox[1]))


def test_finds_a_face_in_every_portrait(detector, portraits_dir: Path):
    for path in sorted(portraits_dir.glob("*.jpg")):
        rgb = load_image(path)
        face = detector.largest(rgb)
        assert face is not None, path.name
        height, width = rgb.shape[:2]
        assert _inside(face, (0, 0, width, height), slack=0.05 * width), path.name


def test_keeps_the_largest_of_several_faces_first(detector, lfw_image):
    big = lfw_image("Abel_Pacheco", 1)
    small = cv2.resize(lfw_image("Aaron_Eckhart", 1), (150, 150), interpolation=cv2.INTER_AREA)
    canvas = np.full((300, 600, 3), 90, np.uint8)
    canvas[25:275, 0:250] = big
    canvas[75:225, 400:550] = small

    faces = detector.detect(canvas)

    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert faces[0].bbox[2] < 250 and faces[1].bbox[0] > 400
    assert detector.largest(canvas).bbox == faces[0].bbox


def test_returns_nothing_without_a_face(detector, portraits_dir: Path):
    flat = np.full((400, 400, 3), 180, np.uint8)
    assert detector.detect(flat) == []
    assert detector.largest(flat) is None
    # Real background: the top strip of a portrait, above the head.
    background = load_image(portraits_dir / "img22.jpg")[:200, :700]
    assert detector.detect(background) == []


@pytest.mark.parametrize("name", TIGHT_CROPS)
def test_finds_a_face_that_fills_the_frame(detector, plain_mesh, mask_data_dir: Path, name: str):
    rgb = load_image(mask_data_dir / "without_mask" / name)
    assert plain_mesh.detect(rgb) == []

    face = detector.largest(rgb)

    assert face is not None
    height, width = rgb.shape[:2]
    # The face fills the crop: its mesh spans most of it and reaches past its edges at most a little.
    assert face.size > 0.6 * min(width, height)
    assert _inside(face, (0, 0, width, height), slack=0.35 * max(width, height))


@pytest.fixture(scope="module")
def before_yunet() -> FaceDetector:
    """The chain without YuNet: mesh, then FaceDetection boxes, then the padded image."""
    detector = FaceDetector(yunet=False)
    yield detector
    detector.close()


@pytest.mark.parametrize(("chain", "source"), [("detector", "yunet"), ("before_yunet", "detector")])
def test_finds_a_small_face_in_a_large_scene(request, plain_mesh, lfw_image, chain: str, source: str):
    detector = request.getfixturevalue(chain)
    canvas = np.full((1200, 1600, 3), 110, np.uint8)
    canvas[700:790, 1100:1190] = cv2.resize(
        lfw_image("Abel_Pacheco", 1), (90, 90), interpolation=cv2.INTER_AREA
    )
    assert plain_mesh.detect(canvas) == []

    face = detector.largest(canvas)

    assert face is not None and face.source == source
    assert _inside(face, (1100, 700, 1190, 790))
    # The mesh keeps its shape after mapping back: eyes level and apart, nose between them.
    left, right, nose = face.landmarks[33, :2], face.landmarks[263, :2], face.landmarks[1, :2]
    assert abs(left[1] - right[1]) < 4 and right[0] - left[0] > 15
    assert left[0] < nose[0] < right[0]


@pytest.mark.parametrize(("chain", "source"), [("detector", "yunet"), ("before_yunet", "detector")])
def test_same_face_same_landmarks_through_the_crop_fallback(request, lfw_image, chain: str, source: str):
    # A face meshed in place and the same face found through a crop (YuNet's upright crop, or
    # the FaceDetection box's) must agree once mapped back.
    detector = request.getfixturevalue(chain)
    rgb = lfw_image("Abel_Pacheco", 1)
    direct = detector.largest(rgb)
    canvas = np.full((1200, 1600, 3), 110, np.uint8)
    canvas[600:850, 300:550] = rgb
    via_fallback = detector.largest(canvas)
    assert via_fallback is not None and via_fallback.source == source
    mapped = via_fallback.landmarks[:, :2] - np.array([300, 600])
    eye_span = np.linalg.norm(direct.landmarks[263, :2] - direct.landmarks[33, :2])
    assert np.median(np.linalg.norm(mapped - direct.landmarks[:, :2], axis=1)) < 0.1 * eye_span


def test_rejects_arrays_that_are_not_rgb_uint8(detector):
    with pytest.raises(ValueError):
        detector.detect(np.zeros((100, 100), np.uint8))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((100, 100, 3), np.float32))


def test_detector_is_cached_per_process():
    assert get_face_detector() is get_face_detector()
