"""Faces and their 478-point MediaPipe mesh in an RGB image.

Face Mesh's built-in short-range detector misses small faces in wide scenes and faces that
fill the whole frame. Two fallbacks run only when the plain pass finds nothing: the
full-range FaceDetection model proposes boxes that are cropped, upscaled and meshed one by
one, and then the image is meshed again inside a border so a tight face crop looks like a
face in a scene.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

NUM_LANDMARKS = 478

# Margin around a detector box before meshing the crop: the mesh wants forehead and chin in view.
CROP_MARGIN = 0.6
# Crops are upscaled to at least this side; the mesh model works at 192 px and loses small faces.
MIN_CROP_SIDE = 256
# Borders tried, in order, around the whole image in the last pass: (fraction of the longer
# side, fill colour). A flat border beats a replicated edge (the mesh detector needs to see the
# face's outline); chosen on the mask-classification set, whose tight crops the plain pass
# misses: of 429 masked misses, a 0.5 grey border recovers 200 and a 0.2 black one 42 more.
PADDINGS: tuple[tuple[float, tuple[int, int, int]], ...] = ((0.5, (128, 128, 128)), (0.2, (0, 0, 0)))
# The full-range detector sees a 192 px view of the image; large images are also searched in
# overlapping tiles so a face a few percent of the width still gets a box.
TILE_MIN_SIDE = 640
TILE_GRID_MAX = 3

Box = tuple[float, float, float, float, float]  # x0, y0, x1, y1, score


# eq=False: comparing two faces field by field would compare landmark arrays elementwise.
@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One face: mesh landmarks in input-image pixels (z in the same pixel scale as x)."""

    landmarks: np.ndarray = field(repr=False)
    bbox: tuple[float, float, float, float]
    source: str = "mesh"
    score: float | None = None

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.bbox
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)

    @property
    def size(self) -> float:
        """Side of the landmark box's larger dimension, in pixels."""
        x0, y0, x1, y1 = self.bbox
        return max(x1 - x0, y1 - y0)

    @classmethod
    def from_landmarks(
        cls, landmarks: np.ndarray, source: str = "mesh", score: float | None = None
    ) -> DetectedFace:
        points = np.asarray(landmarks, dtype=np.float32).reshape(NUM_LANDMARKS, 3)
        points.setflags(write=False)
        x0, y0 = points[:, :2].min(axis=0)
        x1, y1 = points[:, :2].max(axis=0)
        bbox = (float(x0), float(y0), float(x1), float(y1))
        return cls(landmarks=points, bbox=bbox, source=source, score=score)


class FaceDetector:
    """MediaPipe Face Mesh with detector and padding fallbacks; safe to share between threads."""

    def __init__(
        self, max_faces: int = 5, min_detection_confidence: float = 0.5, *, fallbacks: bool = True
    ) -> None:
        import mediapipe as mp  # deferred: importing mediapipe costs about a second

        self.max_faces = max_faces
        self.min_detection_confidence = min_detection_confidence
        self.fallbacks = fallbacks
        self._lock = threading.Lock()
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            refine_landmarks=True,
            max_num_faces=max_faces,
            min_detection_confidence=min_detection_confidence,
        )
        self._boxes = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_detection_confidence
        )

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        """All faces found, largest first."""
        image = _as_rgb(rgb)
        with self._lock:
            faces = self._mesh_image(image, source="mesh")
            if not faces and self.fallbacks:
                faces = self._mesh_detector_boxes(image) or self._mesh_padded(image)
        faces.sort(key=lambda face: face.area, reverse=True)
        return faces[: self.max_faces]

    def largest(self, rgb: np.ndarray) -> DetectedFace | None:
        faces = self.detect(rgb)
        return faces[0] if faces else None

    def close(self) -> None:
        with self._lock:
            self._mesh.close()
            self._boxes.close()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _mesh_image(self, image: np.ndarray, source: str) -> list[DetectedFace]:
        height, width = image.shape[:2]
        result = self._mesh.process(image)
        faces = []
        for face_landmarks in result.multi_face_landmarks or ():
            points = np.array([(p.x, p.y, p.z) for p in face_landmarks.landmark], dtype=np.float32)
            # MediaPipe normalises x by width, y by height and z roughly like x.
            points *= np.array([width, height, width], dtype=np.float32)
            faces.append(DetectedFace.from_landmarks(points, source=source))
        return faces

    def _detector_boxes(self, image: np.ndarray) -> list[Box]:
        """Face boxes (x0, y0, x1, y1, score) from the full-range detector, whole image then tiles."""
        boxes = self._detect_boxes_in(image, 0, 0)
        if not boxes:
            for x0, y0, side in _tiles(image.shape[1], image.shape[0]):
                boxes.extend(self._detect_boxes_in(image[y0 : y0 + side, x0 : x0 + side], x0, y0))
        boxes.sort(key=lambda b: b[4], reverse=True)
        kept: list[Box] = []
        for box in boxes:
            if all(_iou(box[:4], other[:4]) <= 0.3 for other in kept):
                kept.append(box)
        return kept[: self.max_faces]

    def _detect_boxes_in(self, image: np.ndarray, ox: int, oy: int) -> list[Box]:
        height, width = image.shape[:2]
        result = self._boxes.process(np.ascontiguousarray(image))
        boxes = []
        for detection in result.detections or ():
            box = detection.location_data.relative_bounding_box
            x0, y0 = ox + box.xmin * width, oy + box.ymin * height
            score = float(detection.score[0]) if detection.score else 0.0
            boxes.append((x0, y0, x0 + box.width * width, y0 + box.height * height, score))
        return boxes

    def _mesh_detector_boxes(self, image: np.ndarray) -> list[DetectedFace]:
        faces: list[DetectedFace] = []
        for bx0, by0, bx1, by1, score in self._detector_boxes(image):
            bw, bh = bx1 - bx0, by1 - by0
            if bw <= 1 or bh <= 1:
                continue
            side = max(bw, bh) * (1.0 + 2.0 * CROP_MARGIN)
            cx, cy = bx0 + bw / 2.0, by0 + bh / 2.0
            x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
            crop = _crop_with_border(image, x0, y0, int(round(side)))
            scale = max(1.0, MIN_CROP_SIDE / crop.shape[0])
            if scale > 1.0:
                crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            candidates = self._mesh_image(crop, source="detector")
            if not candidates:
                continue
            # The crop may hold a neighbour too: keep the face nearest the crop's centre.
            centre = np.array(crop.shape[1::-1], dtype=np.float32) / 2.0
            best = min(candidates, key=lambda f: float(np.linalg.norm(_bbox_centre(f) - centre)))
            points = best.landmarks.copy()
            points /= np.float32(scale)
            points[:, 0] += x0
            points[:, 1] += y0
            faces.append(DetectedFace.from_landmarks(points, source="detector", score=score))
        return _drop_duplicates(faces)

    def _mesh_padded(self, image: np.ndarray) -> list[DetectedFace]:
        for fraction, colour in PADDINGS:
            pad = int(round(fraction * max(image.shape[:2])))
            padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=colour)
            faces = []
            for face in self._mesh_image(padded, source="mesh"):
                points = face.landmarks.copy()
                points[:, :2] -= pad
                faces.append(DetectedFace.from_landmarks(points, source="mesh"))
            if faces:
                return faces
        return []


_cache: dict[tuple[int, int, float], FaceDetector] = {}
_cache_lock = threading.Lock()


def get_face_detector(max_faces: int = 5, min_detection_confidence: float = 0.5) -> FaceDetector:
    """The detector of this process (a forked worker builds its own: graphs do not survive a fork)."""
    key = (os.getpid(), max_faces, float(min_detection_confidence))
    with _cache_lock:
        detector = _cache.get(key)
        if detector is None:
            detector = FaceDetector(max_faces=max_faces, min_detection_confidence=min_detection_confidence)
            _cache[key] = detector
        return detector


def _as_rgb(rgb: np.ndarray) -> np.ndarray:
    image = np.asarray(rgb)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def _crop_with_border(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """A side x side crop at (x0, y0), replicating edge pixels where it leaves the image."""
    height, width = image.shape[:2]
    x1, y1 = x0 + side, y0 + side
    inner = image[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    return cv2.copyMakeBorder(
        inner,
        max(0, -y0),
        max(0, y1 - height),
        max(0, -x0),
        max(0, x1 - width),
        cv2.BORDER_REPLICATE,
    )


def _tiles(width: int, height: int) -> list[tuple[int, int, int]]:
    """Overlapping square tiles (x0, y0, side) over a large image; none when it is one tile already."""
    short = min(width, height)
    side = min(short, max(TILE_MIN_SIDE, short // 2))
    if max(width, height) < 1.5 * side:
        return []
    nx, ny = _tile_count(width, side), _tile_count(height, side)
    # With the count capped, grow the tiles until they cover the image with a quarter overlap
    # (an extreme panorama may still keep gaps once the tile reaches the short side).
    side = min(short, max(side, int(np.ceil(max(width / (0.75 * nx + 0.25), height / (0.75 * ny + 0.25))))))
    xs = sorted({int(x) for x in np.linspace(0, width - side, nx).round()})
    ys = sorted({int(y) for y in np.linspace(0, height - side, ny).round()})
    return [(x, y, side) for y in ys for x in xs]


def _tile_count(length: int, side: int) -> int:
    # Tiles overlap by a quarter so a face on a seam is whole in one of them.
    count = int(np.ceil((length - side) / (0.75 * side))) + 1 if length > side else 1
    return min(count, TILE_GRID_MAX)


def _bbox_centre(face: DetectedFace) -> np.ndarray:
    x0, y0, x1, y1 = face.bbox
    return np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0], dtype=np.float32)


def _drop_duplicates(faces: list[DetectedFace], max_iou: float = 0.5) -> list[DetectedFace]:
    kept: list[DetectedFace] = []
    for face in sorted(faces, key=lambda f: f.area, reverse=True):
        if all(_iou(face.bbox, other.bbox) <= max_iou for other in kept):
            kept.append(face)
    return kept


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
