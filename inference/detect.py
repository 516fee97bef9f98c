"""Faces and their 478-point MediaPipe mesh in an RGB image, with YuNet's five points where it sees them.

Face Mesh's built-in short-range detector misses small faces in wide scenes, faces that fill
the whole frame, and many masked, tilted or half-hidden faces. When the plain pass finds
nothing, or finds only faces small enough that the image is a scene that may hold more, YuNet
(OpenCV's dnn, `weights/yunet/`) scans the image at several scales; each YuNet face the mesh
did not see is cropped with a margin, turned upright by its eye line, upscaled and meshed, so
every returned face still has the full mesh (quality, alignment and the mask classifier read
it). A YuNet box that the mesh cannot confirm is dropped: a face is never invented from a box
alone. The older fallbacks (full-range FaceDetection boxes, then the whole image meshed inside
a border) run after that if still nothing is found.

Every face also gets YuNet's five points (`points5`) when YuNet finds the same face: from the
scan where one ran, otherwise from one small YuNet pass over a crop around the mesh face.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from inference.boxes import crop_with_border, inside_box, iou, resized, shrunk, tiles
from inference.yunet import YuNet, YuNetFace

NUM_LANDMARKS = 478

# YuNet keeps boxes above this score; the mesh must then confirm each box that it adds.
YUNET_SCORE = 0.6
# The points5 pass: a square crop of this many mesh-box sides around a mesh face, resized so its
# side is YUNET_CROP_SIDE px. YuNet's cost grows with the pixels it sees (one thread: about 6 ms
# at 250x250, 1.5 ms at 128, 0.9 ms at 96), and its int8 points move by about 9% of the eye
# distance between any two input scales (LFW, 80 faces: full frame against crops of 96, 128 or
# 160 px alike, and full frame against the frame at 1.25x), so the cheapest size that still
# finds the face costs no precision.
YUNET_CROP_FACTOR = 1.6
YUNET_CROP_SIDE = 96
# The scan: the image resized so its longer side is at most this (large photos), and small
# images also tried at twice their size (faces of a few pixels), and inside a grey border
# (a face that fills the frame).
SCAN_MAX_SIDE = 960
SCAN_UPSCALE_BELOW = 480
# The last scan, for a face filling the frame, borders a view this long: YuNet finds such faces
# best when they are small, and its cost grows with its input (docs/benchmarks, "Large photos").
SCAN_FILL_SIDE = 320
# The scan also runs when the largest mesh face is smaller than this fraction of the image's
# shorter side: such an image is a scene, and the mesh's short-range detector misses its other
# small faces. Portrait and LFW-style photos (face about 40% of the side) skip it.
SCAN_WHEN_FACE_BELOW = 0.25
# The crops meshed around a YuNet face the mesh missed, tried in order until the mesh finds it:
# (YuNet-box sides, border fill: a colour, or None to replicate the edge), all turned upright.
# Chosen on the masked misses of the mask data's held-out split (toolkit/dev/bench_detect.py):
# of 36 photos still missed, one grey-bordered crop of 3 sides meshed 7 where 2.2 sides with a
# replicated edge meshed none; wider crops and a replicated edge each add a few others.
YUNET_MESH_CROPS: tuple[tuple[float, tuple[int, int, int] | None], ...] = (
    (3.0, (128, 128, 128)),
    (5.0, (128, 128, 128)),
    (3.0, None),
)

# Margin around a detector box before meshing the crop: the mesh wants forehead and chin in view.
CROP_MARGIN = 0.6
# Crops are upscaled to at least this side; the mesh model works at 192 px and loses small faces.
MIN_CROP_SIDE = 256
# Borders tried, in order, around the whole image in the last pass: (fraction of the longer
# side, fill colour). A flat border beats a replicated edge (the mesh detector needs to see the
# face's outline); chosen on the mask-classification set, whose tight crops the plain pass
# misses: of 429 masked misses, a 0.5 grey border recovers 200 and a 0.2 black one 42 more.
PADDINGS: tuple[tuple[float, tuple[int, int, int]], ...] = ((0.5, (128, 128, 128)), (0.2, (0, 0, 0)))

Box = tuple[float, float, float, float, float]  # x0, y0, x1, y1, score


# eq=False: comparing two faces field by field would compare landmark arrays elementwise.
@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One face: mesh landmarks in input-image pixels (z in the same pixel scale as x)."""

    landmarks: np.ndarray = field(repr=False)
    bbox: tuple[float, float, float, float]
    source: str = "mesh"
    score: float | None = None
    # YuNet's five points (5x2 float32 image pixels), in the order of ARCFACE_112.points: eye on
    # the image's left, eye on the image's right, nose tip, mouth corner on the image's left, on
    # the right. None when YuNet did not find this face.
    points5: np.ndarray | None = field(default=None, repr=False)

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
        cls,
        landmarks: np.ndarray,
        source: str = "mesh",
        score: float | None = None,
        points5: np.ndarray | None = None,
    ) -> DetectedFace:
        points = np.asarray(landmarks, dtype=np.float32).reshape(NUM_LANDMARKS, 3)
        points.setflags(write=False)
        x0, y0 = points[:, :2].min(axis=0)
        x1, y1 = points[:, :2].max(axis=0)
        bbox = (float(x0), float(y0), float(x1), float(y1))
        return cls(landmarks=points, bbox=bbox, source=source, score=score, points5=_frozen_points5(points5))

    def with_points5(self, points5: np.ndarray | None) -> DetectedFace:
        return replace(self, points5=_frozen_points5(points5))


class FaceDetector:
    """MediaPipe Face Mesh with detector and padding fallbacks; safe to share between threads."""

    def __init__(
        self,
        max_faces: int = 5,
        min_detection_confidence: float = 0.5,
        *,
        fallbacks: bool = True,
        yunet: bool = True,
        scan_fill_side: int = SCAN_FILL_SIDE,
    ) -> None:
        """fallbacks=False: the plain mesh pass only. yunet=False: no YuNet scan and no points5 (the
        detector as it was before YuNet, kept for before/after measurements); so is scan_fill_side."""
        import mediapipe as mp  # deferred: importing mediapipe costs about a second

        self.max_faces = max_faces
        self.min_detection_confidence = min_detection_confidence
        self.fallbacks = fallbacks
        self.scan_fill_side = scan_fill_side
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
        self._yunet = YuNet(score_threshold=YUNET_SCORE) if yunet else None

    def detect(self, rgb: np.ndarray, *, points5: bool = True) -> list[DetectedFace]:
        """All faces found, largest first; points5 filled where YuNet finds the same face.

        points5=False skips the small YuNet pass that gives points5 to faces the mesh found on
        its own (about a tenth of the mesh's cost): for callers that align on the mesh only.
        Faces found by the YuNet scan keep their points5 either way.
        """
        image = _as_rgb(rgb)
        with self._lock:
            faces = self._mesh_image(image, source="mesh")
            if self._yunet is not None and self.fallbacks and _is_scene(image, faces):
                scanned = self._yunet_scan(self._yunet, image, self.scan_fill_side)
                faces = self._add_yunet_faces(image, faces, scanned)
            if not faces and self.fallbacks:
                faces = self._mesh_detector_boxes(image) or self._mesh_padded(image)
            faces.sort(key=lambda face: face.area, reverse=True)
            faces = faces[: self.max_faces]
            if self._yunet is None or not points5:
                return faces
            return [
                face if face.points5 is not None else self._points5_for(self._yunet, image, face)
                for face in faces
            ]

    def largest(self, rgb: np.ndarray) -> DetectedFace | None:
        faces = self.detect(rgb)
        return faces[0] if faces else None

    def close(self) -> None:
        with self._lock:
            self._mesh.close()
            self._boxes.close()

    @staticmethod
    def _yunet_scan(yunet: YuNet, image: np.ndarray, fill_side: int = SCAN_FILL_SIDE) -> list[YuNetFace]:
        """YuNet over the whole image at several scales, duplicates merged (highest score kept)."""
        height, width = image.shape[:2]
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        scale = min(1.0, SCAN_MAX_SIDE / max(height, width))
        scales = [scale] + ([2.0 * scale] if max(height, width) * scale < SCAN_UPSCALE_BELOW else [])
        found: list[YuNetFace] = []
        for factor in scales:
            view = bgr if factor == 1.0 else resized(bgr, factor)
            found += [face.mapped(1.0 / factor) for face in yunet.detect_bgr(view)]
        if not found:
            # A face filling the frame: YuNet, like the mesh, wants its outline in view, and small.
            view, fill = shrunk(bgr, fill_side)
            pad = int(round(0.5 * max(view.shape[:2])))
            padded = cv2.copyMakeBorder(view, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
            found = [face.mapped(1.0 / fill, -pad / fill, -pad / fill) for face in yunet.detect_bgr(padded)]
        found.sort(key=lambda face: face.score, reverse=True)
        kept: list[YuNetFace] = []
        for face in found:
            if all(iou(face.box, other.box) <= 0.4 for other in kept):
                kept.append(face)
        return kept

    def _add_yunet_faces(
        self, image: np.ndarray, faces: list[DetectedFace], found: list[YuNetFace]
    ) -> list[DetectedFace]:
        """Mesh faces given YuNet's points where it saw them, then the faces only YuNet saw, meshed."""
        remaining = list(found)
        result = []
        for face in faces:
            match = _matching_yunet_face(face, remaining)
            if match is not None:
                remaining.remove(match)
                face = face.with_points5(match.points5)
            result.append(face)
        for candidate in remaining:
            if len(result) >= self.max_faces:
                break
            if any(inside_box(candidate.centre, face.bbox) for face in result):
                continue  # a second YuNet box on a face the mesh already has
            face = self._mesh_upright(image, candidate)
            if face is not None and all(iou(face.bbox, other.bbox) <= 0.5 for other in result):
                result.append(face)
        return result

    def _mesh_upright(self, image: np.ndarray, candidate: YuNetFace) -> DetectedFace | None:
        """Mesh enlarged crops around a YuNet face, rotated so its eyes are level (YUNET_MESH_CROPS).

        None when no crop gives a mesh face there of about YuNet's size: the box is then not
        taken for a face.
        """
        for margin, fill in YUNET_MESH_CROPS:
            face = self._mesh_upright_crop(image, candidate, margin, fill)
            if face is not None:
                return face
        return None

    def _mesh_upright_crop(
        self, image: np.ndarray, candidate: YuNetFace, margin: float, fill: tuple[int, int, int] | None
    ) -> DetectedFace | None:
        left_eye, right_eye = candidate.points5[0].astype(np.float64), candidate.points5[1].astype(np.float64)
        angle = float(np.degrees(np.arctan2(right_eye[1] - left_eye[1], right_eye[0] - left_eye[0])))
        side = candidate.size * margin
        if side <= 2:
            return None
        out_side = int(round(min(max(side, MIN_CROP_SIDE), 2 * MIN_CROP_SIDE)))
        scale = out_side / side
        centre = candidate.centre
        # Rotate about the face's centre (OpenCV: positive angles turn counter-clockwise on screen,
        # which levels an eye line that falls to the right), then move that centre to the crop's.
        matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
        matrix[:, 2] += out_side / 2.0 - centre
        border = (
            {"borderMode": cv2.BORDER_REPLICATE}
            if fill is None
            else {"borderMode": cv2.BORDER_CONSTANT, "borderValue": fill}
        )
        crop = cv2.warpAffine(image, matrix, (out_side, out_side), flags=cv2.INTER_LINEAR, **border)
        candidates = self._mesh_image(crop, source="yunet")
        if not candidates:
            return None
        middle = np.full(2, out_side / 2.0, dtype=np.float32)
        best = min(candidates, key=lambda f: float(np.linalg.norm(_bbox_centre(f) - middle)))
        expected = candidate.size * scale
        if (
            np.linalg.norm(_bbox_centre(best) - middle) > 0.35 * expected
            or not 0.6 * expected <= best.size <= 2.2 * expected
        ):
            return None  # the mesh found some other face in the crop, or a different-sized thing
        inverse = cv2.invertAffineTransform(matrix)
        points = best.landmarks.astype(np.float64)
        xy = points[:, :2] @ inverse[:, :2].T + inverse[:, 2]
        landmarks = np.column_stack([xy, points[:, 2] / scale]).astype(np.float32)
        return DetectedFace.from_landmarks(
            landmarks, source="yunet", score=candidate.score, points5=candidate.points5
        )

    @staticmethod
    def _points5_for(yunet: YuNet, image: np.ndarray, face: DetectedFace) -> DetectedFace:
        """The face with YuNet's five points from one small pass over a crop around it, if YuNet sees it."""
        if face.size <= 2:
            return face
        side = int(round(face.size * YUNET_CROP_FACTOR))
        centre = _bbox_centre(face)
        x0, y0 = int(round(centre[0] - side / 2.0)), int(round(centre[1] - side / 2.0))
        crop = crop_with_border(image, x0, y0, side)
        scale = YUNET_CROP_SIDE / side
        interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        small = cv2.resize(crop, (YUNET_CROP_SIDE, YUNET_CROP_SIDE), interpolation=interpolation)
        found = [f.mapped(1.0 / scale, x0, y0) for f in yunet.detect_rgb(small)]
        match = _matching_yunet_face(face, found)
        return face if match is None else face.with_points5(match.points5)

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
            for x0, y0, side in tiles(image.shape[1], image.shape[0]):
                boxes.extend(self._detect_boxes_in(image[y0 : y0 + side, x0 : x0 + side], x0, y0))
        boxes.sort(key=lambda b: b[4], reverse=True)
        kept: list[Box] = []
        for box in boxes:
            if all(iou(box[:4], other[:4]) <= 0.3 for other in kept):
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
            crop = crop_with_border(image, x0, y0, int(round(side)))
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
        # The mesh reads its own small input, so bordering a view loses nothing and spares a
        # large photo its padded full-size copies (docs/benchmarks, "Large photos").
        view, scale = shrunk(image, SCAN_MAX_SIDE)
        for fraction, colour in PADDINGS:
            pad = int(round(fraction * max(view.shape[:2])))
            padded = cv2.copyMakeBorder(view, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=colour)
            faces = []
            for face in self._mesh_image(padded, source="mesh"):
                points = face.landmarks.copy()
                points[:, :2] -= pad
                faces.append(DetectedFace.from_landmarks(points / np.float32(scale), source="mesh"))
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


def _bbox_centre(face: DetectedFace) -> np.ndarray:
    x0, y0, x1, y1 = face.bbox
    return np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0], dtype=np.float32)


def _drop_duplicates(faces: list[DetectedFace], max_iou: float = 0.5) -> list[DetectedFace]:
    kept: list[DetectedFace] = []
    for face in sorted(faces, key=lambda f: f.area, reverse=True):
        if all(iou(face.bbox, other.bbox) <= max_iou for other in kept):
            kept.append(face)
    return kept


def _frozen_points5(points5: np.ndarray | None) -> np.ndarray | None:
    if points5 is None:
        return None
    points = np.array(points5, dtype=np.float32).reshape(5, 2)
    points.setflags(write=False)
    return points


def _is_scene(image: np.ndarray, faces: list[DetectedFace]) -> bool:
    """Whether YuNet should scan: the mesh found nothing, or only faces small for the image."""
    if not faces:
        return True
    return max(face.size for face in faces) < SCAN_WHEN_FACE_BELOW * min(image.shape[:2])


def _matching_yunet_face(face: DetectedFace, found: list[YuNetFace]) -> YuNetFace | None:
    """The YuNet face that is this mesh face: its box centre and nose inside the mesh box, best IoU."""
    same = [
        candidate
        for candidate in found
        if inside_box(candidate.centre, face.bbox) and inside_box(candidate.points5[2], face.bbox)
    ]
    if not same:
        return None
    return max(same, key=lambda candidate: iou(candidate.box, face.bbox))
