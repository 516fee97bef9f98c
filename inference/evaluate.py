"""Face verification accuracy on pairs in the LFW View-2 format, through the whole pipeline.

    python -m inference.evaluate --root ../shared/data/lfw/images --pairs ../shared/data/lfw/pairs.txt \
        [--synthetic-mask none|second|both] [--json OUT] [--roc PNG] [--workers N]

The first image of a pair is enrolled (every template the product stores for it, masked photos
allowed so that no pair is dropped for policy reasons) and the second is the probe, scored as a
verification scores it (`match_similarity`: the probe's mask decision picks the templates).
`--synthetic-mask second` first puts a MaskTheFace mask (the overlay templates in
../shared/data/mask-overlays: evaluation data, not the procedural renderer enrollment uses)
on the second image of every pair; `both` on both. A masked probe is scored with each
mask strategy (`synthetic`, `cutout`, and `plain`: the masked face against the full-face
templates); the top-level numbers are those of `--mask-strategy`, all of them are under
"strategies".

Accuracy is the mean over the folds of the accuracy with the threshold chosen on the other
folds; pairs where a face was not found count as errors. Standard output gets the JSON
document (also written to --json), standard error a summary. Per-image results are cached
(--cache-dir, keyed by the file, the settings and the code of the pipeline) so that a rerun
with other settings only redoes what changed; `--workers N` runs N processes, each loading
its own models after the start and using --threads torch threads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import sys
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from inference.metrics import kfold_accuracy, verification_report
from inference.pairs import Pair, image_path, read_pairs

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("FACEID_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
DEFAULT_TEMPLATES = SHARED_DATA / "mask-overlays"
DEFAULT_CACHE = Path(os.environ.get("FACEID_EVAL_CACHE", "/tmp/faceid-eval-cache"))
STRATEGIES = ("synthetic", "cutout", "plain")
SYNTHETIC_MASK_CHOICES = ("none", "second", "both")
CACHE_VERSION = 1
# Files whose change leaves cached results valid (they do not touch the vectors).
_NOT_PIPELINE = {"evaluate.py", "bench.py", "metrics.py", "pairs.py", "detect_masks.py", "peer.py"}


# -- configuration sent to the workers ------------------------------------------------------
@dataclass(frozen=True)
class EvalConfig:
    pipeline: str = "faceid"  # or "peer": the face_recognition library's pipeline
    embedder: str = "dlib_resnet_v1"
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
    role: str  # "enroll" or "probe"
    overlay: bool  # a MaskTheFace mask is put on the image first


@dataclass
class Record:
    """What one image gave; pickled into the cache."""

    face: bool
    refusal: str | None = None
    masked: bool | None = None
    mask_probability: float | None = None
    quality_reasons: list[str] = field(default_factory=list)
    # enroll: {"enroll": {variant: (k, d)}}; probe: {strategy: {variant: (k, d)}};
    # peer: {"peer": {"full": (1, d)}}
    embeddings: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    overlay: str | None = None  # "ok", or "no_face" when no face was found to put the mask on
    model_version: str | None = None


# -- per-image detection cache -----------------------------------------------------------------
class CachingDetector:
    """A FaceDetector that remembers its answer per image (keyed by the pixels) on disk.

    Tuning alignment or embedding settings then skips the mesh, the slowest stage. The time
    the detection took when it really ran is kept, so reported stage timings stay honest.
    """

    def __init__(self, inner, folder: Path, fingerprint: str) -> None:
        self.inner = inner
        self.folder = folder
        self.fingerprint = fingerprint
        self.last_hit = False
        self.last_ms = 0.0

    def detect(self, rgb: np.ndarray):
        from inference.detect import DetectedFace

        image = np.ascontiguousarray(rgb)
        digest = hashlib.sha1(self.fingerprint.encode() + str(image.shape).encode())
        digest.update(image.data)
        key = digest.hexdigest()
        path = self.folder / key[:2] / f"{key}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    landmarks, scores = data["landmarks"], data["scores"]
                    sources, ms = [str(s) for s in data["sources"]], float(data["ms"])
                faces = [
                    DetectedFace.from_landmarks(
                        points, source=source, score=None if np.isnan(score) else score
                    )
                    for points, source, score in zip(landmarks, sources, scores.tolist(), strict=True)
                ]
                self.last_hit, self.last_ms = True, ms
                return faces
            except (OSError, KeyError, ValueError):
                pass  # a torn or old file: detect again and overwrite it
        started = time.perf_counter()
        faces = self.inner.detect(image)
        self.last_hit, self.last_ms = False, (time.perf_counter() - started) * 1000.0
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(
            temporary,
            landmarks=np.array([f.landmarks for f in faces], dtype=np.float32).reshape(-1, 478, 3),
            scores=np.array([np.nan if f.score is None else f.score for f in faces], dtype=np.float64),
            sources=np.array([f.source for f in faces], dtype=str),
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
    return _file_digest([REPO_ROOT / "inference" / "detect.py"])


def pipeline_fingerprint() -> str:
    """A digest of the pipeline's code and weights: cached results die with any change to them."""
    folder = REPO_ROOT / "inference"
    files = [
        p
        for p in folder.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and "tools" not in p.relative_to(folder).parts
        and p.name not in _NOT_PIPELINE
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
        from inference.peer import PeerPipeline

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
        from inference.mask.overlay import load_templates

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
        from inference.mask.overlay import random_overlay
        from inference.pipeline import visible_area

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

    if job.role == "enroll":
        result = pipeline.enroll([rgb], allow_masked=True, enforce_policy=False)[0]
        record = _record(result, honest_timings(result), overlay, pipeline)
        if result.ok:
            record.embeddings = {"enroll": _stack(result.embeddings)}
        return job, record

    first = pipeline.probe([rgb], strategy=config.strategies[0])[0]
    record = _record(first, honest_timings(first), overlay, pipeline)
    if first.ok:
        record.embeddings[config.strategies[0]] = _stack(first.embeddings)
        for strategy in config.strategies[1:]:
            if first.masked:
                other = pipeline.probe([rgb], strategy=strategy)[0]
                record.embeddings[strategy] = _stack(other.embeddings)
            else:  # an unmasked probe is matched on its full face whatever the strategy
                record.embeddings[strategy] = record.embeddings[config.strategies[0]]
    return job, record


def _record(result, timings, overlay, pipeline) -> Record:
    return Record(
        face=result.face is not None,
        refusal=result.refusal,
        masked=result.masked,
        mask_probability=result.mask_probability,
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
        identity = {"version": CACHE_VERSION, "config": config.cache_identity()}
        if config.pipeline != "peer":
            identity["code"] = pipeline_fingerprint()
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


def select_pairs(pairs: list[Pair], folds: Sequence[int] | None, limit: int | None) -> list[Pair]:
    """Pairs of the chosen folds (1-based), at most `limit` in all, spread evenly over folds and sides."""
    if folds:
        wanted = {f - 1 for f in folds}
        pairs = [p for p in pairs if p.fold in wanted]
    if limit is None:
        return pairs
    fold_ids = sorted({p.fold for p in pairs})
    per_side = max(1, math.ceil(limit / (2 * max(len(fold_ids), 1))))
    kept, counts = [], {}
    for pair in pairs:
        key = (pair.fold, pair.same)
        if counts.get(key, 0) < per_side:
            counts[key] = counts.get(key, 0) + 1
            kept.append(pair)
    return kept


def build_jobs(
    pairs: list[Pair], root: Path, synthetic_mask: str, peer: bool = False
) -> list[tuple[ImageJob, ImageJob]]:
    """(enrolled, probe) image jobs per pair; the peer treats both sides alike (one job per image)."""
    enroll, probe = ("image", "image") if peer else ("enroll", "probe")
    jobs = []
    for pair in pairs:
        first = ImageJob(str(image_path(root, *pair.first)), enroll, synthetic_mask == "both")
        second = ImageJob(str(image_path(root, *pair.second)), probe, synthetic_mask in ("second", "both"))
        jobs.append((first, second))
    return jobs


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


def pair_score(enrolled: Record, probe: Record, strategy: str) -> float:
    """The verification score of one pair (NaN when either image has no face)."""
    if strategy == "peer":
        if not (enrolled.face and probe.face):
            return float("nan")
        a, b = enrolled.embeddings["peer"]["full"][0], probe.embeddings["peer"]["full"][0]
        return -float(np.linalg.norm(a - b))  # face_recognition's distance, negated: higher = more alike
    from inference.pipeline import FaceResult, match_similarity

    gallery = enrolled.embeddings.get("enroll")
    vectors = probe.embeddings.get(strategy)
    if not gallery or not vectors:
        return float("nan")
    result = FaceResult(refusal=None, embeddings={k: list(v) for k, v in vectors.items()})
    score = match_similarity(result, {k: list(v) for k, v in gallery.items()})
    return float("nan") if score is None else score


def _stage_summary(records: Iterable[Record]) -> dict[str, dict[str, float]]:
    stages: dict[str, list[float]] = {}
    for record in records:
        total = 0.0
        for stage, ms in record.timings_ms.items():
            stages.setdefault(stage, []).append(ms)
            total += ms
        stages.setdefault("total", []).append(total)
    return {
        stage: {"median": round(float(np.median(v)), 2), "mean": round(float(np.mean(v)), 2), "n": len(v)}
        for stage, v in stages.items()
    }


def evaluate(
    pairs: list[Pair],
    root: Path,
    config: EvalConfig,
    *,
    synthetic_mask: str,
    workers: int,
    cache: ResultCache,
    progress: bool = True,
    scores_csv: Path | None = None,
) -> dict:
    pair_jobs = build_jobs(pairs, root, synthetic_mask, peer=config.pipeline == "peer")
    unique = list(dict.fromkeys(job for pair in pair_jobs for job in pair))
    started = time.perf_counter()
    records = run_jobs(unique, config, cache, workers, progress)
    wall = time.perf_counter() - started

    labels = np.array([p.same for p in pairs], dtype=bool)
    folds = np.array([p.fold for p in pairs])
    strategies = ("peer",) if config.pipeline == "peer" else config.strategies
    no_face_first = np.array([not records[a].face for a, _ in pair_jobs])
    no_face_second = np.array([not records[b].face for _, b in pair_jobs])
    probe_masked = np.array([bool(records[b].masked) for _, b in pair_jobs])
    report: dict = {}
    per_strategy, scores_of = {}, {}
    for strategy in strategies:
        scores = np.array([pair_score(records[a], records[b], strategy) for a, b in pair_jobs])
        scores_of[strategy] = scores
        result = verification_report(scores, labels, folds)
        # The product picks the threshold by the probe's mask decision: the same, per fold.
        by_state = kfold_accuracy(scores, labels, folds, groups=probe_masked)
        result["accuracy_mask_state_thresholds"] = by_state["accuracy"]
        masked_scores = scores[probe_masked]
        if strategy != "peer" and probe_masked.any():
            result["masked_probe_pairs_tar_at_far"] = {
                far: float(np.mean(masked_scores[labels[probe_masked]] >= t)) if t is not None else None
                for far, t in result["far_thresholds"].items()
            }
        per_strategy[strategy] = result

    if scores_csv is not None:
        write_pair_scores(scores_csv, pairs, pair_jobs, records, scores_of)
    primary = per_strategy[strategies[0]]
    report.update({k: v for k, v in primary.items() if k != "roc"})
    report["mask_strategy"] = strategies[0]
    report["pairs"] = len(pairs)
    report["folds"] = int(len(set(folds.tolist())))
    report["no_face"] = int((no_face_first | no_face_second).sum())
    report["no_face_rate"] = float((no_face_first | no_face_second).mean()) if len(pairs) else 0.0
    report["no_face_detail"] = {"first": int(no_face_first.sum()), "second": int(no_face_second.sum())}
    # A face on both sides yet no score: the probe's variant has no enrolled template (an
    # enrollment photo called masked stores no full-face template, as in the product).
    unscored = np.isnan(scores_of[strategies[0]]) & ~no_face_first & ~no_face_second
    report["unscored_pairs"] = int(unscored.sum())
    report["masked_pairs"] = int(probe_masked.sum())
    report["enrolled_masked"] = int(sum(bool(records[a].masked) for a, _ in pair_jobs))
    report["synthetic_mask"] = synthetic_mask
    report["overlay_failed"] = int(sum(records[j].overlay == "no_face" for j in unique))
    report["enroll_quality_flagged"] = int(
        len({a for a, _ in pair_jobs if records[a].face and records[a].quality_reasons})
    )
    report["strategies"] = {
        name: {
            key: result[key]
            for key in (
                "accuracy", "accuracy_std", "accuracy_mask_state_thresholds", "auc", "eer", "tar_at_far",
                "threshold", "far_thresholds",
            )
        }
        | ({"masked_probe_pairs_tar_at_far": result["masked_probe_pairs_tar_at_far"]}
           if "masked_probe_pairs_tar_at_far" in result else {})
        for name, result in per_strategy.items()
    }  # fmt: skip
    computed = [records[j] for j in unique]
    roles = sorted({j.role for j in unique})
    report["stage_ms"] = {
        role: _stage_summary(r for j, r in zip(unique, computed, strict=True) if j.role == role)
        for role in roles
    }
    report["images"] = len(unique)
    report["wall_seconds"] = round(wall, 1)
    report["roc"] = {name: result["roc"] for name, result in per_strategy.items()}
    versions = {r.model_version for r in computed if r.model_version}
    report["model_version"] = sorted(versions)[0] if len(versions) == 1 else sorted(versions)
    return report


def write_pair_scores(
    path: Path,
    pairs: list[Pair],
    pair_jobs: list[tuple[ImageJob, ImageJob]],
    records: dict[ImageJob, Record],
    scores_of: dict[str, np.ndarray],
) -> None:
    """One CSV row per pair: its score under each strategy and both images' mask decisions."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        mask_columns = ["enrolled_mask_probability", "probe_mask_probability"]
        writer.writerow(["fold", "same", "enrolled", "probe", *scores_of, *mask_columns])
        for index, (pair, (first, second)) in enumerate(zip(pairs, pair_jobs, strict=True)):
            writer.writerow(
                [
                    pair.fold + 1,
                    int(pair.same),
                    Path(first.path).name,
                    Path(second.path).name,
                    *(f"{scores[index]:.6f}" for scores in scores_of.values()),
                    *(_probability_text(records[job].mask_probability) for job in (first, second)),
                ]
            )


def _probability_text(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def plot_roc(report: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for name, roc in report["roc"].items():
        far, tar = np.array(roc["far"]), np.array(roc["tar"])
        keep = far > 0
        stats = report["strategies"].get(name, report)
        label = (
            f"{name}: acc {100 * stats['accuracy']:.2f}%, AUC {stats['auc']:.4f}, "
            f"TAR@1e-3 {100 * stats['tar_at_far']['0.001']:.1f}%"
        )
        axis.plot(far[keep], tar[keep], label=label)
    axis.set_xscale("log")
    axis.set_xlim(1e-4, 1.0)
    axis.set_ylim(max(0.0, min(0.5, axis.get_ylim()[0])), 1.0)
    axis.set_xlabel("false accept rate")
    axis.set_ylabel("true accept rate")
    axis.set_title(title, fontsize=9)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="lower right", fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def _folds_arg(text: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"folds are comma-separated numbers from 1, got {text!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--root", type=Path, required=True, help="images: ROOT/<name>/<name>_<NNNN>.jpg")
    parser.add_argument("--pairs", type=Path, required=True, help="pairs file in the LFW View-2 format")
    parser.add_argument("--synthetic-mask", choices=SYNTHETIC_MASK_CHOICES, default="none")
    parser.add_argument("--json", type=Path, default=None, help="write the JSON document here too")
    parser.add_argument("--roc", type=Path, default=None, help="ROC plot (PNG); default: beside --json")
    parser.add_argument("--scores", type=Path, default=None, help="per-pair scores (CSV), for error analysis")
    parser.add_argument(
        "--mask-strategy", choices=STRATEGIES, default="cutout",
        help="strategy of the top-level numbers (all three are computed and reported under "
        "'strategies'); default cutout, the one that won on the development data",
    )  # fmt: skip
    parser.add_argument(
        "--pipeline",
        choices=("faceid", "peer"),
        default="faceid",
        help="peer: the face_recognition library's pipeline (dlib HOG + dlib descriptor)",
    )
    parser.add_argument("--embedder", default="dlib_resnet_v1")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--workers", type=int, default=1, help="processes (each loads its own models)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument(
        "--limit", type=int, default=None, help="at most N pairs, spread over folds and sides"
    )
    parser.add_argument("--folds", type=_folds_arg, default=None, help="only these folds, e.g. 1,2 (from 1)")
    parser.add_argument(
        "--mask-templates",
        type=Path,
        default=DEFAULT_TEMPLATES,
        help="MaskTheFace templates folder (with masks.cfg) for --synthetic-mask",
    )
    parser.add_argument("--overlay-seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    group = parser.add_argument_group("pipeline settings (defaults: the product's)")
    group.add_argument("--align-mode", default=None, choices=("five_point", "eyes", "mesh"))
    group.add_argument("--masked-align-mode", default=None, choices=("five_point", "eyes", "mesh"))
    group.add_argument("--jitter", type=int, default=None, help="perturbed copies averaged per probe vector")
    group.add_argument(
        "--enroll-jitter", type=int, default=None, help="perturbed copies averaged per enrolled template"
    )
    group.add_argument("--no-flip", action="store_true", help="do not average with the mirrored chip")
    group.add_argument("--cutout-start-row", type=int, default=None)
    group.add_argument("--synthetic-masks-per-photo", type=int, default=None)
    group.add_argument("--mask-threshold", type=float, default=None)
    return parser


def pipeline_options(args: argparse.Namespace) -> dict[str, object]:
    """Only the settings given on the command line; the rest are the pipeline's defaults."""
    options: dict[str, object] = {}
    for name in ("align_mode", "masked_align_mode", "jitter", "enroll_jitter", "cutout_start_row",
                 "synthetic_masks_per_photo", "mask_threshold"):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    if args.no_flip:
        options["flip"] = False
    return options


def _effective_settings(config: EvalConfig) -> dict:
    if config.pipeline == "peer":
        from inference import peer

        return {
            "pipeline": "face_recognition (dlib HOG, 5-point, dlib descriptor)",
            "upsample": peer.UPSAMPLE,
            "num_jitters": peer.NUM_JITTERS,
            "similarity": "negative euclidean distance",
        }
    import inspect

    from inference.pipeline import FacePipeline

    defaults = {
        name: p.default
        for name, p in inspect.signature(FacePipeline.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
        and name not in ("detector", "mask_classifier", "embedding_model")
    }
    settings = {**defaults, **dict(config.options), "embedder": config.embedder, "similarity": "cosine"}
    if settings.get("masked_align_mode") is None:
        settings["masked_align_mode"] = settings.get("align_mode")
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 1 or args.threads < 1:
        raise SystemExit("--workers and --threads must be at least 1")
    pairs, _ = read_pairs(args.pairs)
    pairs = select_pairs(pairs, args.folds, args.limit)
    if not pairs:
        raise SystemExit("no pairs selected")
    strategies = (args.mask_strategy,) + tuple(s for s in STRATEGIES if s != args.mask_strategy)
    config = EvalConfig(
        pipeline=args.pipeline,
        embedder=args.embedder,
        device=args.device,
        threads=args.threads,
        options=tuple(sorted(pipeline_options(args).items())),
        strategies=strategies,
        templates=str(args.mask_templates),
        overlay_seed=args.overlay_seed,
        cache_dir=None if args.no_cache else str(args.cache_dir),
    )
    if args.synthetic_mask != "none" and args.pipeline == "faceid":
        from inference.mask.overlay import load_templates

        load_templates(args.mask_templates)  # fail now, not in every worker
    cache = ResultCache(None if args.no_cache else args.cache_dir, config)
    report = evaluate(
        pairs,
        args.root,
        config,
        synthetic_mask=args.synthetic_mask,
        workers=args.workers,
        cache=cache,
        progress=not args.quiet,
        scores_csv=args.scores,
    )
    report = {
        "command": "python -m inference.evaluate " + " ".join(sys.argv[1:] if argv is None else argv),
        "pairs_file": str(args.pairs),
        "root": str(args.root),
        "pipeline": args.pipeline,
        "settings": _effective_settings(config),
        "workers": args.workers,
        "threads_per_worker": args.threads,
        "device": args.device,
        **report,
    }
    roc_path = args.roc or (args.json.with_suffix(".png") if args.json else None)
    if roc_path is not None:
        title = (
            f"{args.pairs.name}: {len(pairs)} pairs, synthetic mask: {args.synthetic_mask}, {args.pipeline}"
        )
        plot_roc(report, roc_path, title)
        report["roc_png"] = str(roc_path)
    text = json.dumps(report, indent=2, default=_json_default)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    _print_summary(report)
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _print_summary(report: dict) -> None:
    lines = [
        f"{report['pairs']} pairs in {report['folds']} folds, synthetic mask: {report['synthetic_mask']}, "
        f"no face: {report['no_face']} pairs, unscored: {report['unscored_pairs']}, "
        f"probes called masked: {report['masked_pairs']}, enrolled photos called masked: "
        f"{report['enrolled_masked']}",
    ]
    for name, stats in report["strategies"].items():
        lines.append(
            f"  {name:9s} accuracy {100 * stats['accuracy']:.2f}% +- {100 * stats['accuracy_std']:.2f}  "
            f"AUC {stats['auc']:.5f}  TAR@FAR=1e-2 {100 * stats['tar_at_far']['0.01']:.2f}%  "
            f"TAR@FAR=1e-3 {100 * stats['tar_at_far']['0.001']:.2f}%  threshold {stats['threshold']:.4f}"
        )
    role = "probe" if "probe" in report["stage_ms"] else "image"
    probe = report["stage_ms"][role]
    lines.append(f"  {role} ms (median): " + ", ".join(f"{k} {v['median']:.1f}" for k, v in probe.items()))
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
