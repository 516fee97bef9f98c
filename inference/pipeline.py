"""The whole pipeline for enrollment photos and verification probes.

decode -> detect (the largest face in the frame) -> quality -> align -> mask decision -> embed.

Mask-aware matching, on both sides (inference.comparison decides the space): an unmasked
enrollment photo gives the full-face template and two mask-aware ones, `masked_synthetic`
(procedural masks rendered from the mesh) and `masked_cutout` (the lower face blanked); a photo
with a mask on only the mask-aware ones. A probe carries its full face when unmasked and its
mask-aware vector when masked (for the synthetic gallery its own face, or renders when it has no
mask); both when its mask decision is unsure or the caller asks (`mask_aware`). The common case,
an unmasked probe, costs one embedding. Which kinds of vector (inference.vector_kinds) a photo or
probe needs is `enrollment_kinds` / `probe_kinds`; the evaluation embeds all (`embed_kinds`).

Matching options, chosen on development data outside the LFW test pairs (the numbers are in
docs/benchmarks/README.md): full faces are aligned as the embedder's spec says
(`spec.input.align_mode`, the five points unless measured otherwise; `align_mode` overrides); the
mask-aware variants, on both sides (gallery and masked probe), on the eye, brow and nose mesh
points (`masked_align_mode="mesh"`: a better fit when the mouth is hidden); the synthetic
template is the mean of three renders (`synthetic_masks_per_photo`); every template is
flip-averaged. `jitter` (probes) and `enroll_jitter` (enrolled templates) average that many
perturbed copies of the chip (dlib's jitter: up to 3 degrees, 3% scale, 2% shift; a fixed seed):
neither gained anything measurable and each copy costs an embedding, so both are off by default.

A worker keeps one pipeline per model and device (`get_pipeline`, a small LRU cache): what differs
between organizations (the mask threshold, the mask strategy) is an argument of each call.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from inference.align import ALIGN_MODES, DLIB_150, align_face, alignment_matrix
from inference.cpu_compile import frozen_copy
from inference.detect import DetectedFace, FaceDetector, get_face_detector
from inference.device import resolve_device
from inference.embedders import DEFAULT_EMBEDDER, create_embedder
from inference.embedders.base import Embedder
from inference.lru_cache import LruCache
from inference.mask.classifier import MaskClassifier, get_mask_classifier
from inference.mask.occlusion import blank_lower_face, lower_face_row
from inference.mask.render import render_synthetic_mask
from inference.quality import QualityReport, assess_quality
from inference.variants import (
    DEFAULT_MASK_THRESHOLD,
    STRATEGY_SYNTHETIC,
    VARIANT_CUTOUT,
    VARIANT_FULL,
    VARIANT_SYNTHETIC,
    is_masked,
    is_unsure,
)
from inference.vector_kinds import (  # re-exported: the evaluation tools import them from here
    KIND_CUTOUT,
    KIND_FULL,
    KIND_OWN,
    KIND_RENDERED,
    KINDS,
    enrollment_kinds,
    probe_kinds,
)

# dlib's jitter_image: rotation up to 3 degrees, the face 0-3% smaller, shifted up to 2%.
JITTER_MAX_DEGREES = 3.0
JITTER_MAX_SHRINK = 0.03
JITTER_MAX_SHIFT = 0.02
JITTER_SEED = 2017

# A second face at least this large relative to the largest makes an enrollment photo ambiguous.
SEVERAL_FACES_RATIO = 0.6
# The detector finds faces far smaller than this (crowds, masked faces in the wild), but a probe
# face smaller than half the enrollment minimum (inference.quality) carries too little to be
# compared: it is refused, not scored.
PROBE_MIN_FACE_PX = 24.0


@dataclass
class FaceResult:
    """What the pipeline found in one image. `refusal` is a reason code, or None when usable."""

    refusal: str | None
    face: DetectedFace | None = None
    quality: QualityReport | None = None
    masked: bool | None = None
    mask_probability: float | None = None
    mask_unsure: bool | None = None  # the mask probability lies in the unsure band
    embeddings: dict[str, list[np.ndarray]] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.refusal is None

    def to_dict(self) -> dict:
        """JSON-safe form, for Celery results and API answers."""
        quality = None
        if self.quality is not None:
            quality = {
                "score": round(float(self.quality.score), 4),
                "face_px": round(float(self.quality.face_px), 1),
                "sharpness": round(float(self.quality.sharpness), 2),
                "yaw": round(float(self.quality.yaw), 1),
                "pitch": round(float(self.quality.pitch), 1),
                "roll": round(float(self.quality.roll), 1),
                "eyes_visible": bool(self.quality.eyes_visible),
                "reasons": list(self.quality.reasons),
            }
        return {
            "refusal": self.refusal,
            "face_found": self.face is not None,
            "bbox": [round(float(v), 1) for v in self.face.bbox] if self.face is not None else None,
            "quality": quality,
            "masked": self.masked,
            "mask_probability": None if self.mask_probability is None else round(self.mask_probability, 4),
            "mask_unsure": self.mask_unsure,
            "embeddings": {k: [v.astype(float).tolist() for v in vs] for k, vs in self.embeddings.items()},
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }


class _Stopwatch:
    def __init__(self, timings: dict[str, float], stage: str) -> None:
        self.timings, self.stage = timings, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        elapsed = (time.perf_counter() - self.start) * 1000.0
        self.timings[self.stage] = self.timings.get(self.stage, 0.0) + elapsed


class FacePipeline:
    """Models are loaded once (per process, through the stage caches) and reused for every call."""

    def __init__(
        self,
        embedder: str = DEFAULT_EMBEDDER,
        *,
        device: str = "auto",
        mask_threshold: float = DEFAULT_MASK_THRESHOLD,
        cutout_start_row: int | None = None,
        synthetic_masks_per_photo: int = 3,
        align_mode: str | None = None,
        masked_align_mode: str | None = "mesh",
        jitter: int = 0,
        enroll_jitter: int = 0,
        flip: bool = True,
        optimize: bool = True,
        detector: FaceDetector | None = None,
        mask_classifier: MaskClassifier | None = None,
        embedding_model: Embedder | None = None,
    ) -> None:
        self.detector = detector or get_face_detector()
        self.mask_classifier = mask_classifier or get_mask_classifier(device=device)
        self.embedder = embedding_model or create_embedder(embedder, device=device)
        if optimize:
            # On the CPU, frozen TorchScript copies of both networks (convolution, batch norm
            # and activation fused): the two forwards of a probe take about a third less time.
            width, height = self.embedder.spec.input_size
            self.embedder = frozen_copy(self.embedder, "module", (3, height, width))
            size = getattr(self.mask_classifier, "input_size", None)
            if isinstance(size, int):
                self.mask_classifier = frozen_copy(self.mask_classifier, "model", (3, size, size))
        self.mask_threshold = mask_threshold
        # None: cut below the template's nose (occlusion.lower_face_row); a number: a dlib row, scaled.
        self.cutout_start_row = cutout_start_row
        spec = self.embedder.spec
        self.cutout_row = lower_face_row(spec.template)
        # The blanked rows take the network's mean colour (zeros after normalisation), in RGB.
        bgr = getattr(spec.input, "channel_order", "rgb") == "bgr"
        self.cutout_fill = tuple(float(v) for v in (spec.input.mean[::-1] if bgr else spec.input.mean))
        self.synthetic_masks_per_photo = synthetic_masks_per_photo
        align_mode = align_mode or getattr(spec.input, "align_mode", "five_point")
        for mode in (align_mode, masked_align_mode):
            if mode is not None and mode not in ALIGN_MODES:
                raise ValueError(f"unknown alignment mode {mode!r}; choose from {ALIGN_MODES}")
        if jitter < 0 or enroll_jitter < 0:
            raise ValueError("jitter and enroll_jitter must be >= 0")
        self.align_mode = align_mode
        self.masked_align_mode = masked_align_mode or align_mode
        self.jitter = jitter
        self.enroll_jitter = enroll_jitter
        self.flip = flip

    @property
    def settings(self) -> dict[str, object]:
        """What decides the vectors besides the models: recorded with benchmark results."""
        return {
            "embedder": self.embedder.spec.name,
            "model_version": self.embedder.spec.version,
            "mask_threshold": self.mask_threshold,
            "cutout_start_row": self.cutout_start_row,
            "cutout_row": self.cutout_row if self.cutout_start_row is None else None,
            "synthetic_masks_per_photo": self.synthetic_masks_per_photo,
            "align_mode": self.align_mode,
            "masked_align_mode": self.masked_align_mode,
            "jitter": self.jitter,
            "enroll_jitter": self.enroll_jitter,
            "flip": self.flip,
        }

    @property
    def model_version(self) -> str:
        return self.embedder.spec.version

    # -- stages --------------------------------------------------------------------------
    def analyze(self, rgb: np.ndarray, *, strict: bool, mask_threshold: float | None = None) -> FaceResult:
        """Detect, check quality and decide mask for one image; embeds nothing.

        strict: enrollment rules (one clear face, quality reasons refuse the photo); a probe
        only needs a face of PROBE_MIN_FACE_PX or more, its quality is reported but not
        enforced. mask_threshold: the caller's (an organization's policy); None takes the
        pipeline's default.
        """
        result = FaceResult(refusal=None)
        with _Stopwatch(result.timings_ms, "detect"):
            # YuNet's points cost a second detector pass per face: only when an alignment uses them.
            faces = self.detector.detect(rgb, points5="yunet" in (self.align_mode, self.masked_align_mode))
        if not faces:
            result.refusal = "no_face"
            return result
        # The face with the most pixels in the frame: the mesh extrapolates a face cut by the
        # image border beyond it, and that face's box must not outweigh a whole one.
        faces = sorted(faces, key=lambda f: visible_area(f, rgb.shape), reverse=True)
        face = faces[0]
        result.face = face
        if not strict and face.size < PROBE_MIN_FACE_PX:
            result.refusal = "face_too_small"
        if (
            strict
            and len(faces) > 1
            and visible_area(faces[1], rgb.shape) >= SEVERAL_FACES_RATIO * visible_area(face, rgb.shape)
        ):
            result.refusal = "several_faces"
        with _Stopwatch(result.timings_ms, "quality"):
            result.quality = assess_quality(rgb, face)
        if strict and result.refusal is None and result.quality.reasons:
            result.refusal = result.quality.reasons[0]
        with _Stopwatch(result.timings_ms, "mask"):
            chip = align_face(rgb, face, DLIB_150)
            probability = float(self.mask_classifier.predict_proba([chip])[0])
        threshold = self._mask_threshold(mask_threshold)
        result.mask_probability = probability
        result.masked = is_masked(probability, threshold)
        result.mask_unsure = is_unsure(probability, threshold)
        return result

    def enroll(
        self,
        images: Sequence[np.ndarray],
        *,
        mask_threshold: float | None = None,
        allow_masked: bool = False,
        enforce_policy: bool = True,
    ) -> list[FaceResult]:
        """Full-face and mask-aware templates for each photo; a masked photo is refused unless allowed.

        enforce_policy=False (evaluation only) enrolls whatever face is found, however small,
        blurred or crowded; its quality reasons are still reported in `result.quality`.
        """
        mask_threshold = self._mask_threshold(mask_threshold)
        results = [self.analyze(rgb, strict=enforce_policy, mask_threshold=mask_threshold) for rgb in images]
        jobs: list[tuple[int, str, list[np.ndarray]]] = []
        for index, (rgb, result) in enumerate(zip(images, results, strict=True)):
            if result.ok and result.masked and not allow_masked:
                result.refusal = "masked"
            if not result.ok:
                continue
            with _Stopwatch(result.timings_ms, "align"):
                jobs.extend((index, variant, crop) for variant, crop in self._enrollment_crops(rgb, result))
        self._embed_into(results, jobs)
        return results

    def probe(
        self,
        images: Sequence[np.ndarray],
        *,
        mask_threshold: float | None = None,
        strategy: str = STRATEGY_SYNTHETIC,
        mask_aware: bool = False,
    ) -> list[FaceResult]:
        """One result per frame; each usable frame carries the vectors verification compares.

        mask_aware: also the mask-aware vector of an unmasked frame (the caller will meet photos
        that exist only in the mask-aware space); an unsure frame carries it anyway.
        """
        probe_kinds(strategy, masked=False, unsure=False)  # an unknown strategy fails here
        mask_threshold = self._mask_threshold(mask_threshold)
        results = [self.analyze(rgb, strict=False, mask_threshold=mask_threshold) for rgb in images]
        jobs: list[tuple[int, str, list[np.ndarray]]] = []
        for index, (rgb, result) in enumerate(zip(images, results, strict=True)):
            if not result.ok:
                continue
            kinds = probe_kinds(
                strategy, masked=bool(result.masked), unsure=bool(result.mask_unsure), mask_aware=mask_aware
            )
            with _Stopwatch(result.timings_ms, "align"):
                for variant, kind in kinds.items():
                    jobs.append((index, variant, self._kind_crops(rgb, result, kind, copies=self.jitter)))
        self._embed_into(results, jobs)
        return results

    def embed_kinds(
        self,
        images: Sequence[np.ndarray],
        *,
        kinds: Sequence[str] = KINDS,
        copies: int | None = None,
        mask_threshold: float | None = None,
    ) -> list[FaceResult]:
        """Every face found (no policy enforced) with one vector per kind, keyed by kind: what
        the evaluation computes once per image and picks enrollment and probe vectors from."""
        unknown = [kind for kind in kinds if kind not in KINDS]
        if unknown:
            raise ValueError(f"unknown vector kinds {unknown}; choose from {KINDS}")
        mask_threshold = self._mask_threshold(mask_threshold)
        results = [self.analyze(rgb, strict=False, mask_threshold=mask_threshold) for rgb in images]
        jobs: list[tuple[int, str, list[np.ndarray]]] = []
        for index, (rgb, result) in enumerate(zip(images, results, strict=True)):
            if result.face is None:
                continue
            result.refusal = None  # evaluation: quality is reported, not enforced
            with _Stopwatch(result.timings_ms, "align"):
                for kind in kinds:
                    jobs.append((index, kind, self._kind_crops(rgb, result, kind, copies=copies)))
        self._embed_into(results, jobs)
        return results

    # -- helpers -------------------------------------------------------------------------
    def _mask_threshold(self, given: float | None) -> float:
        threshold = self.mask_threshold if given is None else float(given)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"mask_threshold must be within [0, 1], got {threshold}")
        return threshold

    def _enrollment_crops(
        self, rgb: np.ndarray, result: FaceResult
    ) -> Iterable[tuple[str, list[np.ndarray]]]:
        # A masked photo never yields a full-face template: see enrollment_kinds.
        for variant, kind in enrollment_kinds(masked=bool(result.masked)).items():
            yield variant, self._kind_crops(rgb, result, kind, copies=self.enroll_jitter)

    def _kind_crops(
        self, rgb: np.ndarray, result: FaceResult, kind: str, *, copies: int | None
    ) -> list[np.ndarray]:
        """The crops whose normalised mean vector is one vector of this kind."""
        if kind == KIND_FULL:
            return self._crops(rgb, result.face, VARIANT_FULL, copies=copies)
        if kind == KIND_CUTOUT:
            return [
                self._cutout(crop) for crop in self._crops(rgb, result.face, VARIANT_CUTOUT, copies=copies)
            ]
        if kind == KIND_OWN:
            return self._crops(rgb, result.face, VARIANT_SYNTHETIC, copies=copies)
        if kind == KIND_RENDERED:
            # Several renders (varied shape, colour, texture) make one vector: the mean of theirs.
            # The renders are an average already: they are not jittered on top.
            renders = []
            for seed in range(self.synthetic_masks_per_photo):
                masked = render_synthetic_mask(rgb, result.face, rng=np.random.default_rng(seed))
                renders.extend(self._crops(masked, result.face, VARIANT_SYNTHETIC, copies=0))
            return renders
        raise ValueError(f"unknown vector kind {kind!r}; choose from {KINDS}")

    def _crops(
        self, rgb: np.ndarray, face: DetectedFace, variant: str, *, copies: int | None = None
    ) -> list[np.ndarray]:
        """The aligned chip for a variant, then `copies` (default: `jitter`) perturbed copies.

        The perturbations come from a fixed seed, so a photo always gives the same vector.
        """
        template = self.embedder.spec.template
        mode = self.align_mode if variant == VARIANT_FULL else self.masked_align_mode
        matrix = alignment_matrix(face, template, mode=mode)
        matrices = [matrix]
        copies = self.jitter if copies is None else copies
        if copies:
            rng = np.random.default_rng(JITTER_SEED)
            matrices += [_perturbed(matrix, template.size, rng) for _ in range(copies)]
        image = np.ascontiguousarray(rgb)
        return [
            cv2.warpAffine(image, m, template.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            for m in matrices
        ]

    def _cutout(self, crop: np.ndarray) -> np.ndarray:
        if self.cutout_start_row is not None:  # a row of the 150 px dlib chip, scaled
            return blank_lower_face(crop, start_row=self.cutout_start_row, fill=self.cutout_fill)
        return blank_lower_face(crop, row=self.cutout_row, fill=self.cutout_fill)

    def _embed_into(self, results: list[FaceResult], jobs: list[tuple[int, str, list[np.ndarray]]]) -> None:
        """Embed every crop of every image as one batch: batching is where the time is won.

        A job's crops (the chip and its jittered copies) become one template: the normalised
        mean of their vectors.
        """
        if not jobs:
            return
        started = time.perf_counter()
        vectors = np.asarray(self.embedder.embed([c for _, _, crops in jobs for c in crops], flip=self.flip))
        per_job = (time.perf_counter() - started) * 1000.0 / len(jobs)
        offset = 0
        for index, variant, crops in jobs:
            group = vectors[offset : offset + len(crops)]
            offset += len(crops)
            vector = group[0] if len(group) == 1 else _normalised(group.mean(axis=0))
            results[index].embeddings.setdefault(variant, []).append(vector)
            results[index].timings_ms["embed"] = results[index].timings_ms.get("embed", 0.0) + per_job


def visible_area(face: DetectedFace, shape: tuple[int, ...]) -> float:
    """Area of the face's landmark box inside an image of this shape (rows, columns, ...)."""
    height, width = shape[:2]
    x0, y0, x1, y1 = face.bbox
    return max(0.0, min(x1, width) - max(x0, 0.0)) * max(0.0, min(y1, height) - max(y0, 0.0))


def _normalised(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else vector.astype(np.float32)


def _perturbed(matrix: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The alignment followed by a small random similarity about the chip centre (dlib's jitter)."""
    width, height = size
    angle = np.deg2rad(rng.uniform(-JITTER_MAX_DEGREES, JITTER_MAX_DEGREES))
    scale = 1.0 - rng.uniform(0.0, JITTER_MAX_SHRINK)
    shift = rng.uniform(-JITTER_MAX_SHIFT, JITTER_MAX_SHIFT, 2) * np.array([width, height])
    centre = np.array([width / 2.0, height / 2.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    outer = np.empty((2, 3))
    outer[:, :2] = rotation
    outer[:, 2] = centre + shift - rotation @ centre
    combined = np.empty((2, 3))
    combined[:, :2] = outer[:, :2] @ matrix[:, :2]
    combined[:, 2] = outer[:, :2] @ matrix[:, 2] + outer[:, 2]
    return combined


def match_similarity(probe: FaceResult, gallery: dict[str, Sequence[np.ndarray]]) -> float | None:
    """Best cosine similarity between the probe's vectors and the enrolled templates of each variant.

    gallery maps a variant to that person's template vectors (L2-normalised). A quick check that
    ignores comparison spaces and thresholds; decisions follow inference.comparison.decide.
    """
    best: float | None = None
    for variant, probe_vectors in probe.embeddings.items():
        enrolled = gallery.get(variant)
        if enrolled is None or len(enrolled) == 0:
            continue
        scores = np.asarray(enrolled, dtype=np.float32) @ np.asarray(probe_vectors, dtype=np.float32).T
        value = float(scores.max())
        best = value if best is None else max(best, value)
    return best


# Pipelines kept per process. Each costs about 40 MB and a 4-7 s trace to build, and a worker
# serves one device and, in practice, one or two models; the least recently used one goes first.
PIPELINE_CACHE_SIZE = 4


_pipelines: LruCache[FacePipeline] = LruCache(PIPELINE_CACHE_SIZE)


def get_pipeline(embedder: str = DEFAULT_EMBEDDER, *, device: str = "auto") -> FacePipeline:
    """The per-process pipeline of one model on one device (workers call this after the fork).

    Per-call values, such as an organization's mask threshold, are arguments of enroll() and
    probe(), never part of this key: one pipeline serves every organization using the model.
    """
    resolved = str(resolve_device(device))  # "auto" and "cpu" are one pipeline on a CPU machine
    return _pipelines.get_or_build((embedder, resolved), lambda: FacePipeline(embedder, device=resolved))
