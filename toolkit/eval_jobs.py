"""The evaluation's per-image work: images through the pipeline in worker processes, cached on disk.

`run_jobs` hands each image job (an image with or without a MaskTheFace overlay, which gives every
kind of vector the product could need of it, enrolled or probed: inference.pipeline.KINDS; the
roles "enroll" and "probe" differ only when their jitter settings do) to `--workers` processes
that load their own models; what each image gave (a `Record`) is kept in a `ResultCache` keyed by
the file, the settings and a digest of the pipeline's code and weights, so a rerun only redoes
what changed. `CachingDetector` also keeps the Face Mesh's answer per image.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import time
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from inference.embedders import DEFAULT_EMBEDDER
from inference.variants import PROBE_STRATEGIES
from inference.vector_kinds import kinds_for_strategies
from toolkit.paths import REPO_ROOT, SHARED_DATA

DEFAULT_TEMPLATES = SHARED_DATA / "mask-overlays"
DEFAULT_CACHE = Path(os.environ.get("FACEID_EVAL_CACHE", "/tmp/faceid-eval-cache"))
STRATEGIES = tuple(PROBE_STRATEGIES)
CACHE_VERSION = 2


# -- configuration sent to the workers ------------------------------------------------------
@dataclass(frozen=True)
class EvalConfig:
    pipeline: str = "faceid"  # or "peer": the face_recognition library's pipeline
    embedder: str = DEFAULT_EMBEDDER
    device: str = "cpu"
    threads: int = 1
    options: tuple[tuple[str, object], ...] = ()  # FacePipeline keyword options
    strategies: tuple[str, ...] = STRATEGIES
    templates: str = str(DEFAULT_TEMPLATES)
    overlay_seed: int = 0
    cache_dir: str | None = str(DEFAULT_CACHE)

    def cache_identity(self) -> dict:
        """What the vectors depend on (not the device: CPU and GPU must agree; not the workers)."""
        keep = asdict(self)
        for name in ("device", "threads", "cache_dir"):
            keep.pop(name)
        return keep


@dataclass(frozen=True)
class ImageJob:
    path: str
    role: str  # "image" (both sides alike), "enroll" or "probe" (sides with their own jitter), "peer"
    overlay: bool  # a MaskTheFace mask is put on the image first


@dataclass
class Record:
    """What one image gave; pickled into the cache."""

    face: bool
    refusal: str | None = None
    masked: bool | None = None
    mask_probability: float | None = None
    mask_unsure: bool | None = None
    quality_reasons: list[str] = field(default_factory=list)
    # faceid: {"kinds": {kind: (1, d)}} (inference.pipeline.KINDS); peer: {"peer": {"full": (1, d)}}
    embeddings: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    overlay: str | None = None  # "ok", or "no_face" when no face was found to put the mask on
    model_version: str | None = None


# -- per-image detection cache -----------------------------------------------------------------
class CachingDetector:
    """A FaceDetector that remembers its answer per image (keyed by the pixels) on disk.

    Tuning alignment or embedding settings then skips the mesh, the slowest stage. Each face's
    mesh, score, source and YuNet five points (`points5`, or None) come back as detected; a file
    written before points5 was kept has no such array and is detected again. The time
    the detection took when it really ran is kept, so reported stage timings stay honest.
    """

    def __init__(self, inner, folder: Path, fingerprint: str) -> None:
        self.inner = inner
        self.folder = folder
        self.fingerprint = fingerprint
        self.last_hit = False
        self.last_ms = 0.0

    def detect(self, rgb: np.ndarray, *, points5: bool = True):
        """The inner detector's faces, always with points5 where YuNet sees them (whatever the
        caller asks: one cached answer serves every alignment mode)."""
        from inference.detect import DetectedFace

        image = np.ascontiguousarray(rgb)
        digest = hashlib.sha1(self.fingerprint.encode() + str(image.shape).encode())
        digest.update(image.data)
        key = digest.hexdigest()
        path = self.folder / key[:2] / f"{key}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    landmarks, scores, points5 = data["landmarks"], data["scores"], data["points5"]
                    sources, ms = [str(s) for s in data["sources"]], float(data["ms"])
                faces = [
                    DetectedFace.from_landmarks(
                        points,
                        source=source,
                        score=None if np.isnan(score) else score,
                        points5=None if np.isnan(five).any() else five,
                    )
                    for points, source, score, five in zip(
                        landmarks, sources, scores.tolist(), points5, strict=True
                    )
                ]
                self.last_hit, self.last_ms = True, ms
                return faces
            except (OSError, KeyError, ValueError):
                pass  # a torn or old file: detect again and overwrite it
        started = time.perf_counter()
        faces = self.inner.detect(image, points5=True)
        self.last_hit, self.last_ms = False, (time.perf_counter() - started) * 1000.0
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(
            temporary,
            landmarks=np.array([f.landmarks for f in faces], dtype=np.float32).reshape(-1, 478, 3),
            scores=np.array([np.nan if f.score is None else f.score for f in faces], dtype=np.float64),
            sources=np.array([f.source for f in faces], dtype=str),
            # YuNet's five points ("yunet" alignment), NaN where YuNet did not see the face.
            points5=np.array(
                [np.full((5, 2), np.nan) if f.points5 is None else f.points5 for f in faces], dtype=np.float32
            ).reshape(-1, 5, 2),
            ms=np.float64(self.last_ms),
        )
        os.replace(temporary, path)
        return faces

    def largest(self, rgb: np.ndarray):
        faces = self.detect(rgb)
        return faces[0] if faces else None

    def close(self) -> None:
        self.inner.close()


def _file_digest(paths: Iterable[Path]) -> str:
    digest = hashlib.sha1()
    for path in sorted(paths):
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def detector_fingerprint() -> str:
    """A digest of the detector's code and YuNet's (whose five points the cache keeps) and weights."""
    inference = REPO_ROOT / "inference"
    return _file_digest(
        [inference / "detect.py", inference / "yunet.py", *(inference / "weights" / "yunet").glob("*.onnx")]
    )


def pipeline_fingerprint() -> str:
    """A digest of the pipeline's code and weights: cached results die with any change to them."""
    folder = REPO_ROOT / "inference"
    files = [
        p
        for p in folder.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.suffix in {".py", ".pt", ".pth", ".npz", ".npy", ".json", ".bin", ".dat", ".onnx"}
    ]
    return _file_digest(files)


# -- worker side ---------------------------------------------------------------------------------
_STATE: dict = {}


def _init_worker(config: EvalConfig) -> None:
    """Build the models in this process (after the start: nothing is shared with the parent)."""
    import cv2
    import torch

    torch.set_num_threads(max(1, config.threads))
    cv2.setNumThreads(1)
    _STATE.clear()
    _STATE["config"] = config
    if config.pipeline == "peer":
        from toolkit.peer import PeerPipeline

        _STATE["peer"] = PeerPipeline()
        return
    from inference.detect import get_face_detector
    from inference.pipeline import FacePipeline

    detector = get_face_detector()
    if config.cache_dir is not None:
        detector = CachingDetector(detector, Path(config.cache_dir) / "detect", detector_fingerprint())
    _STATE["detector"] = detector
    _STATE["pipeline"] = FacePipeline(
        config.embedder, device=config.device, detector=detector, **dict(config.options)
    )
    _STATE["templates"] = None


def _overlay_templates():
    if _STATE.get("templates") is None:
        from toolkit.overlay import load_templates

        _STATE["templates"] = load_templates(_STATE["config"].templates)
    return _STATE["templates"]


def _overlay_rng(config: EvalConfig, path: str) -> np.random.Generator:
    # The same image always gets the same mask, whichever pair or worker it comes in.
    relative = Path(path).name
    return np.random.default_rng([config.overlay_seed, zlib.crc32(relative.encode())])


def _run_job(job: ImageJob) -> tuple[ImageJob, Record]:
    from inference.decode import load_image

    config: EvalConfig = _STATE["config"]
    if config.pipeline == "peer":
        result = _STATE["peer"].process_path(job.path)
        embeddings = {"peer": {"full": result.encoding[None, :].astype(np.float32)}} if result.ok else {}
        return job, Record(face=result.ok, embeddings=embeddings, timings_ms=result.timings_ms)

    pipeline = _STATE["pipeline"]
    detector = _STATE["detector"]
    started = time.perf_counter()
    rgb = load_image(job.path)
    decode_ms = (time.perf_counter() - started) * 1000.0
    overlay = None
    if job.overlay:
        from inference.pipeline import visible_area
        from toolkit.overlay import random_overlay

        faces = detector.detect(rgb)  # the face the pipeline would take: most pixels in the frame
        face = max(faces, key=lambda f: visible_area(f, rgb.shape)) if faces else None
        if face is None:
            overlay = "no_face"
        else:
            rgb = random_overlay(rgb, face, _overlay_templates(), _overlay_rng(config, job.path))
            overlay = "ok"

    def honest_timings(result) -> dict[str, float]:
        timings = {"decode": decode_ms, **result.timings_ms}
        if isinstance(detector, CachingDetector) and detector.last_hit:
            timings["detect"] = detector.last_ms
        return timings

    # Every kind of vector once: enrollment and probe vectors, of every strategy and comparison
    # space, are picked from these (inference.pipeline.enrollment_kinds / probe_kinds).
    copies = pipeline.enroll_jitter if job.role == "enroll" else pipeline.jitter
    kinds = kinds_for_strategies(config.strategies)
    result = pipeline.embed_kinds([rgb], kinds=kinds, copies=copies)[0]
    record = _record(result, honest_timings(result), overlay, pipeline)
    if result.ok and result.embeddings:
        record.embeddings = {"kinds": _stack(result.embeddings)}
    return job, record


def _record(result, timings, overlay, pipeline) -> Record:
    return Record(
        face=result.face is not None,
        refusal=result.refusal,
        masked=result.masked,
        mask_probability=result.mask_probability,
        mask_unsure=result.mask_unsure,
        quality_reasons=list(result.quality.reasons) if result.quality is not None else [],
        timings_ms=timings,
        overlay=overlay,
        model_version=pipeline.model_version,
    )


def _stack(embeddings: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    return {variant: np.asarray(vectors, dtype=np.float32) for variant, vectors in embeddings.items()}


# -- main side -----------------------------------------------------------------------------------
class ResultCache:
    """One pickle per image result, named by a digest of everything the result depends on."""

    def __init__(self, folder: Path | None, config: EvalConfig) -> None:
        self.folder = folder / "results" if folder is not None else None
        # The strategies are applied when pairs are scored: an image's vectors do not depend on them.
        identity = {"version": CACHE_VERSION, "config": config.cache_identity()}
        identity["config"].pop("strategies")
        if config.pipeline != "peer":
            identity["code"] = pipeline_fingerprint()
            # Records aligned on YuNet's points before the detection cache kept them silently fell
            # back to the mesh's five points: this key retires those (and only those).
            if _reads_points5(config):
                identity["detector_points5"] = True
        self.identity = json.dumps(identity, sort_keys=True, default=str)
        # Enrollment results do not depend on the probes' jitter nor probes on the enrollment's:
        # changing one reuses the other side's cached results.
        self.identity_of_role: dict[str, str] = {}
        for role, other_side in (("enroll", "jitter"), ("probe", "enroll_jitter")):
            options = [item for item in identity["config"]["options"] if item[0] != other_side]
            keyed = {**identity, "config": {**identity["config"], "options": options}}
            self.identity_of_role[role] = json.dumps(keyed, sort_keys=True, default=str)

    def _path(self, job: ImageJob) -> Path | None:
        if self.folder is None:
            return None
        stat = os.stat(job.path)
        identity = self.identity_of_role.get(job.role, self.identity)
        text = json.dumps(
            [identity, os.path.abspath(job.path), stat.st_size, stat.st_mtime_ns, job.role, job.overlay]
        )
        key = hashlib.sha1(text.encode()).hexdigest()
        return self.folder / key[:2] / f"{key}.pkl"

    def get(self, job: ImageJob) -> Record | None:
        path = self._path(job)
        if path is None or not path.is_file():
            return None
        try:
            with open(path, "rb") as handle:
                data = pickle.load(handle)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ModuleNotFoundError):
            return None
        if not isinstance(data, dict):
            return data
        fields = Record.__dataclass_fields__
        return Record(**{key: value for key, value in data.items() if key in fields})

    def put(self, job: ImageJob, record: Record) -> None:
        path = self._path(job)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        with open(temporary, "wb") as handle:
            # A plain dict: the Record class is `__main__.Record` under `python -m`, which
            # another program (or the test suite) could not unpickle.
            pickle.dump(dict(vars(record)), handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)


def _reads_points5(config: EvalConfig) -> bool:
    """Whether this configuration's vectors depend on YuNet's points (an align mode "yunet")."""
    from inference.embedders import embedder_spec

    options = dict(config.options)
    full_mode = options.get("align_mode") or embedder_spec(config.embedder).input.align_mode
    return "yunet" in (full_mode, options.get("masked_align_mode"))


def run_jobs(
    jobs: list[ImageJob], config: EvalConfig, cache: ResultCache, workers: int, progress: bool = True
) -> dict[ImageJob, Record]:
    records: dict[ImageJob, Record] = {}
    missing = []
    for job in jobs:
        cached = cache.get(job)
        if cached is None:
            missing.append(job)
        else:
            records[job] = cached
    print(
        f"{len(jobs)} images: {len(jobs) - len(missing)} cached, {len(missing)} to process", file=sys.stderr
    )
    if not missing:
        return records
    # Jobs of one image side by side: they land in one chunk, so its detection is cached once.
    missing.sort(key=lambda job: (job.path, job.role, job.overlay))
    from tqdm import tqdm

    bar = tqdm(total=len(missing), file=sys.stderr, disable=not progress, unit="img", smoothing=0.05)
    if workers <= 1:
        _init_worker(config)
        for job in missing:
            _, record = _run_job(job)
            records[job] = record
            cache.put(job, record)
            bar.update()
    else:
        import multiprocessing

        # spawn: each worker starts clean and loads its own models (no torch/mediapipe state forked).
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_init_worker, initargs=(config,)) as pool:
            for job, record in pool.imap_unordered(_run_job, missing, chunksize=4):
                records[job] = record
                cache.put(job, record)
                bar.update()
    bar.close()
    return records
