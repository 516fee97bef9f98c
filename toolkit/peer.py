"""The peer pipeline the benchmarks compare with: the `face_recognition` library's way.

face_recognition 1.3.0 (ageitgey) is a thin layer over dlib: `load_image_file` (PIL, RGB),
`face_locations` (dlib's HOG frontal face detector, upsampled once), `face_encodings`
(model="small": the 5-point shape predictor, then dlib's ResNet descriptor on a 150 px chip
with padding 0.25, num_jitters=1) and `face_distance` (Euclidean; same person at <= 0.6).
The library itself cannot be imported here: it imports `face_recognition_models`, which needs
`pkg_resources` (gone from current setuptools). So this module makes the very same dlib calls
with the same arguments, reading the model files that `face-recognition-models==0.3.0` installs,
through `dlib-bin` (a test/benchmark dependency only; the product never runs dlib).
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

# face_recognition's defaults.
UPSAMPLE = 1
NUM_JITTERS = 1
TOLERANCE = 0.6


def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "face-recognition-models is not installed (pip install face-recognition-models==0.3.0)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def load_image_file(path: Path | str) -> np.ndarray:
    """face_recognition.load_image_file: PIL decode, converted to RGB (no EXIF rotation, as there)."""
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))


@dataclass
class PeerResult:
    encoding: np.ndarray | None
    faces: int
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.encoding is not None


class PeerPipeline:
    """dlib HOG detector + 5-point shape predictor + dlib ResNet descriptor, loaded once."""

    def __init__(self, upsample: int = UPSAMPLE, num_jitters: int = NUM_JITTERS) -> None:
        import dlib  # deferred: a test/benchmark-only dependency (dlib-bin)

        folder = models_dir()
        self.dlib = dlib
        self.upsample = upsample
        self.num_jitters = num_jitters
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(
            str(folder / "dlib_face_recognition_resnet_model_v1.dat")
        )

    def locate(self, rgb: np.ndarray) -> list:
        """dlib rectangles, largest first (face_recognition.face_locations, before the css conversion)."""
        rects = list(self.detector(rgb, self.upsample))
        rects.sort(key=lambda r: r.width() * r.height(), reverse=True)
        return rects

    def process(self, rgb: np.ndarray) -> PeerResult:
        """Encoding of the largest face (face_locations then face_encodings on that location)."""
        timings: dict[str, float] = {}
        start = time.perf_counter()
        rects = self.locate(rgb)
        timings["detect"] = (time.perf_counter() - start) * 1000.0
        if not rects:
            return PeerResult(None, 0, timings)
        start = time.perf_counter()
        shape = self.predictor(rgb, rects[0])
        timings["landmarks"] = (time.perf_counter() - start) * 1000.0
        start = time.perf_counter()
        encoding = np.array(self.encoder.compute_face_descriptor(rgb, shape, self.num_jitters))
        timings["embed"] = (time.perf_counter() - start) * 1000.0
        return PeerResult(encoding, len(rects), timings)

    def process_path(self, path: Path | str) -> PeerResult:
        start = time.perf_counter()
        rgb = load_image_file(path)
        decode_ms = (time.perf_counter() - start) * 1000.0
        result = self.process(rgb)
        result.timings_ms = {"decode": decode_ms, **result.timings_ms}
        return result

    def process_batch(self, images: list[np.ndarray]) -> list[PeerResult]:
        """Detect and predict per image, then one batched descriptor call (dlib's batch API)."""
        results, batch_images, batch_shapes, owners = [], [], [], []
        for rgb in images:
            timings: dict[str, float] = {}
            start = time.perf_counter()
            rects = self.locate(rgb)
            timings["detect"] = (time.perf_counter() - start) * 1000.0
            results.append(PeerResult(None, len(rects), timings))
            if rects:
                start = time.perf_counter()
                shapes = self.dlib.full_object_detections()
                shapes.append(self.predictor(rgb, rects[0]))
                timings["landmarks"] = (time.perf_counter() - start) * 1000.0
                batch_images.append(rgb)
                batch_shapes.append(shapes)
                owners.append(len(results) - 1)
        if batch_images:
            start = time.perf_counter()
            descriptors = self.encoder.compute_face_descriptor(batch_images, batch_shapes, self.num_jitters)
            per_face = (time.perf_counter() - start) * 1000.0 / len(batch_images)
            for owner, faces in zip(owners, descriptors, strict=True):
                results[owner].encoding = np.array(faces[0])
                results[owner].timings_ms["embed"] = per_face
        return results


def face_distance(a: np.ndarray, b: np.ndarray) -> float:
    """face_recognition.face_distance: Euclidean distance between two encodings."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))
