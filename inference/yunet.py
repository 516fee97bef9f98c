"""YuNet, a small face detector with five landmarks, run by OpenCV's dnn from the shipped weights.

The weights (`inference/weights/yunet/`, MIT, OpenCV Zoo 2023mar, block-quantized int8) are read
by `cv2.FaceDetectorYN`; OpenCV folds the int8 blocks into float weights when it loads the graph
(a float copy of the graph measured no faster). YuNet takes BGR at any input size, set per image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

YUNET_DIR = Path(__file__).resolve().parent / "weights" / "yunet"
YUNET_WEIGHTS = YUNET_DIR / "face_detection_yunet_2023mar_int8bq.onnx"
# YuNet's own non-maximum suppression between its boxes, and the most boxes it returns per image.
NMS_THRESHOLD = 0.3
TOP_K = 200


@dataclass(frozen=True, eq=False)
class YuNetFace:
    """One YuNet face: box (x0, y0, x1, y1), five points, score, all in the image's pixels.

    The five points come out of YuNet in the order of ARCFACE_112.points (checked on LFW: the
    first eye is the one on the image's left): eye on the image's left, eye on the image's right,
    nose tip, mouth corner on the image's left, mouth corner on the image's right.
    """

    box: tuple[float, float, float, float]
    points5: np.ndarray = field(repr=False)
    score: float

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def centre(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0])

    def mapped(self, scale: float, dx: float = 0.0, dy: float = 0.0) -> YuNetFace:
        """The same face in another image's pixels: p' = p * scale + (dx, dy)."""
        x0, y0, x1, y1 = self.box
        box = (x0 * scale + dx, y0 * scale + dy, x1 * scale + dx, y1 * scale + dy)
        points = (self.points5 * scale + np.array([dx, dy], dtype=np.float32)).astype(np.float32)
        return YuNetFace(box=box, points5=points, score=self.score)


class YuNet:
    """One OpenCV FaceDetectorYN; not safe to share between threads (the caller holds a lock)."""

    def __init__(self, path: str | Path = YUNET_WEIGHTS, score_threshold: float = 0.6) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"YuNet weights not found at {path}")
        self._net = cv2.FaceDetectorYN.create(
            str(path), "", (320, 320), score_threshold, NMS_THRESHOLD, TOP_K
        )

    def detect_rgb(self, rgb: np.ndarray) -> list[YuNetFace]:
        """Faces in an HxWx3 uint8 RGB image, highest score first."""
        return self.detect_bgr(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def detect_bgr(self, bgr: np.ndarray) -> list[YuNetFace]:
        height, width = bgr.shape[:2]
        if height < 8 or width < 8:
            return []
        self._net.setInputSize((width, height))
        _, rows = self._net.detect(np.ascontiguousarray(bgr))
        faces = []
        for row in rows if rows is not None else ():
            x, y, w, h = (float(v) for v in row[:4])
            points = np.asarray(row[4:14], dtype=np.float32).reshape(5, 2)
            faces.append(YuNetFace(box=(x, y, x + w, y + h), points5=points, score=float(row[14])))
        faces.sort(key=lambda face: face.score, reverse=True)
        return faces
