"""Train (and measure) the mask classifier on the pipeline's own face chips.

    python -m inference.mask.train --data ../shared/data/mask-classification \\
        --out inference/weights/mask_classifier_v1.pt \\
        [--epochs N --seed S --lfw ../shared/data/lfw/images --report docs/benchmarks/mask_classifier.json]

Every image goes through the pipeline's detector and aligner (`get_face_detector().largest`,
`align_face(..., DLIB_150)`); images without a face are skipped and counted. Near-duplicate
photos (the data set holds copies) are kept on one side of a stratified held-out split, so
the held-out accuracy is not inflated by copies of training photos. Training adds masks to
training faces without one (MaskTheFace overlays from --templates and the product's
procedural renderer) as extra positives; the held-out split never gets any. With --lfw,
the false-mask rate on LFW (no masks there) is measured too. `--eval-only` measures the
weights at --out without training. Deterministic for a given --seed.

This reads ../shared at training time only; the product loads the written weights.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from inference import align, detect
from inference.align import DLIB_150, align_face
from inference.decode import ImageDecodeError, load_image
from inference.detect import DetectedFace, get_face_detector
from inference.mask.classifier import (
    CHECKPOINT_FORMAT,
    DEFAULT_MASK_THRESHOLD,
    MaskClassifier,
    preprocess,
)
from inference.mask.network import MaskNet, NetworkConfig, count_parameters
from inference.mask.overlay import load_templates, random_overlay
from inference.mask.render import render_synthetic_mask

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CLASSES = ("without_mask", "with_mask")  # label 0, label 1
VERSION = "mask_classifier_v1"
DEFAULT_CACHE = Path("/tmp/faceid-mask-cache")
# Two photos whose 64-bit difference hashes differ in at most this many bits count as copies.
DUPLICATE_BITS = 4


@dataclass
class FaceSet:
    """Images run through detector and aligner: one row per image."""

    paths: list[str]
    labels: np.ndarray  # int64, 0 without mask, 1 with mask (or -1 where unknown)
    found: np.ndarray  # bool: a face was found
    chips: np.ndarray  # (N, 150, 150, 3) uint8, zeros where no face
    landmarks: np.ndarray  # (N, 478, 3) float32, zeros where no face
    sizes: np.ndarray  # (N, 2) image width and height, 0 where unreadable
    errors: list[str]  # "" or why the image could not be read


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _cache_key(paths: Sequence[Path]) -> str:
    digest = hashlib.sha1()
    # The chips depend on the files and on the detector and aligner code: any change re-runs the mesh.
    for module in (detect, align):
        digest.update(inspect.getsource(module).encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def extract_faces(
    paths: Sequence[Path], labels: Sequence[int], *, cache_dir: Path | None, desc: str
) -> FaceSet:
    """Detect, mesh and align every image (cached under cache_dir by content of files and code)."""
    cache_file = cache_dir / f"{desc}-{_cache_key(paths)}.npz" if cache_dir else None
    if cache_file is not None and cache_file.is_file():
        data = np.load(cache_file, allow_pickle=False)
        return FaceSet(
            paths=[str(p) for p in paths],
            labels=np.asarray(labels, dtype=np.int64),
            found=data["found"],
            chips=data["chips"],
            landmarks=data["landmarks"],
            sizes=data["sizes"],
            errors=[str(e) for e in data["errors"]],
        )
    detector = get_face_detector()
    count = len(paths)
    found = np.zeros(count, dtype=bool)
    chips = np.zeros((count, 150, 150, 3), dtype=np.uint8)
    landmarks = np.zeros((count, detect.NUM_LANDMARKS, 3), dtype=np.float32)
    sizes = np.zeros((count, 2), dtype=np.int32)
    errors = [""] * count
    for index, path in enumerate(tqdm(paths, desc=f"mesh {desc}", unit="img", file=sys.stderr)):
        try:
            rgb = load_image(path)
        except (ImageDecodeError, OSError) as exc:
            errors[index] = str(exc)
            continue
        sizes[index] = rgb.shape[1], rgb.shape[0]
        face = detector.largest(rgb)
        if face is None:
            continue
        found[index] = True
        landmarks[index] = face.landmarks
        chips[index] = align_face(rgb, face, DLIB_150)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, found=found, chips=chips, landmarks=landmarks, sizes=sizes, errors=np.array(errors))
        tmp.replace(cache_file)
    return FaceSet(
        [str(p) for p in paths], np.asarray(labels, dtype=np.int64), found, chips, landmarks, sizes, errors
    )


def difference_hash(path: str) -> np.uint64:
    gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if gray is None:
        return np.uint64(0)
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2))


def duplicate_groups(paths: Sequence[str], max_bits: int = DUPLICATE_BITS) -> np.ndarray:
    """A group id per image; near-identical images (copies, re-encodes) share one."""
    hashes = np.array([difference_hash(p) for p in paths], dtype=np.uint64)
    parent = np.arange(len(paths))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    as_bytes = hashes.view(np.uint8).reshape(-1, 8)
    for i in range(len(paths)):
        distance = np.unpackbits(as_bytes[i + 1 :] ^ as_bytes[i], axis=1).sum(axis=1)
        for j in np.nonzero(distance <= max_bits)[0] + i + 1:
            a, b = root(i), root(int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    return np.array([root(i) for i in range(len(paths))])


def stratified_group_split(
    labels: np.ndarray, groups: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): about test_fraction of each class held out, whole groups at a time."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.nonzero(labels == label)[0]
        class_groups = np.unique(groups[members])
        rng.shuffle(class_groups)
        target = test_fraction * len(members)
        taken = 0
        for group in class_groups:
            if taken >= target:
                break
            in_group = members[groups[members] == group]
            test[in_group] = True
            taken += len(in_group)
    return np.nonzero(~test)[0], np.nonzero(test)[0]


def augment(chip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flip, small affine, colour jitter, and sometimes low resolution, blur or noise (small faces)."""
    height, width = chip.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(-12, 12), rng.uniform(0.9, 1.1))
    matrix[:, 2] += rng.uniform(-0.06, 0.06, 2) * width
    out = cv2.warpAffine(
        chip, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    if rng.random() < 0.5:
        out = out[:, ::-1]
    f = out.astype(np.float32)
    f *= rng.uniform(0.65, 1.3)
    mean = f.mean()
    f = (f - mean) * rng.uniform(0.7, 1.3) + mean
    gray = f @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    saturation = 0.0 if rng.random() < 0.1 else rng.uniform(0.6, 1.4)
    f = gray[..., None] + (f - gray[..., None]) * saturation
    f *= rng.uniform(0.9, 1.1, 3).astype(np.float32)  # white balance
    if rng.random() < 0.25:
        factor = rng.uniform(0.25, 0.7)
        small = cv2.resize(f, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        f = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.15:
        f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.2:
        f += rng.normal(0.0, rng.uniform(2.0, 8.0), f.shape).astype(np.float32)
    return np.clip(f + 0.5, 0, 255).astype(np.uint8)


def synthetic_positive(
    path: str, landmarks: np.ndarray, templates: list, rng: np.random.Generator
) -> np.ndarray | None:
    """A face without a mask, given one: a MaskTheFace overlay (when templates are given) or the renderer."""
    try:
        rgb = load_image(path)
    except (ImageDecodeError, OSError):
        return None
    face = DetectedFace.from_landmarks(landmarks)
    if templates:
        masked = random_overlay(rgb, face, templates, rng)
    else:
        masked = render_synthetic_mask(rgb, face, rng=rng)
    return align_face(masked, face, DLIB_150)


def predict_chips(model: MaskNet, chips: np.ndarray, size: int, batch_size: int = 128) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(chips), batch_size):
            out.append(torch.sigmoid(model(preprocess(chips[start : start + batch_size], size))).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def train_model(
    faces: FaceSet,
    train_idx: np.ndarray,
    templates: list,
    *,
    epochs: int,
    seed: int,
    config: NetworkConfig,
    batch_size: int = 64,
    lr: float = 3e-3,
    synthetic_fraction: float = 0.5,
) -> tuple[MaskNet, list[dict]]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = MaskNet(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    negatives = train_idx[faces.labels[train_idx] == 0]
    n_synthetic = int(round(synthetic_fraction * len(negatives)))
    steps_per_epoch = math.ceil((len(train_idx) + n_synthetic) / batch_size)
    total_steps = epochs * steps_per_epoch
    warmup = steps_per_epoch

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    # Two masked versions of every training face without a mask, one from each source, drawn once:
    # rendering costs more than a training step, and augmentation varies them further every epoch.
    pool: list[np.ndarray] = []
    for index in tqdm(negatives, desc="synthetic masks", unit="face", file=sys.stderr):
        for use_overlay in (True, False):
            chip = synthetic_positive(
                faces.paths[index], faces.landmarks[index], templates if use_overlay else [], rng
            )
            if chip is not None:
                pool.append(chip)

    history = []
    step = 0
    for epoch in range(epochs):
        started = time.perf_counter()
        synthetic = [pool[i] for i in rng.choice(len(pool), size=min(n_synthetic, len(pool)), replace=False)]
        chips = [faces.chips[i] for i in train_idx] + synthetic
        targets = np.concatenate([faces.labels[train_idx], np.ones(len(synthetic), dtype=np.int64)])
        order = rng.permutation(len(chips))
        model.train()
        losses, correct = [], 0
        bar = tqdm(
            range(0, len(order), batch_size),
            desc=f"epoch {epoch + 1}/{epochs}",
            unit="batch",
            file=sys.stderr,
        )
        for start in bar:
            batch_ids = order[start : start + batch_size]
            batch = preprocess([augment(chips[i], rng) for i in batch_ids], config.input_size)
            target = torch.from_numpy(targets[batch_ids]).float()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            logits = model(batch)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(float(loss))
            correct += int(((logits > 0).float() == target).sum())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        history.append(
            {
                "epoch": epoch + 1,
                "loss": round(float(np.mean(losses)), 5),
                "train_accuracy": round(correct / len(order), 5),
                "synthetic": len(synthetic),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        print(json.dumps(history[-1]), file=sys.stderr)
    model.eval()
    return model, history


def save_checkpoint(model: MaskNet, path: Path, extra: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        # float16 halves the file; the loader computes in float32 (accuracy unchanged, checked in the report).
        "state_dict": {
            k: v.detach().half() if v.is_floating_point() else v for k, v in model.state_dict().items()
        },
        "input": {"template": DLIB_150.name, "chip_size": 150, "network_size": model.config.input_size},
        **extra,
    }
    torch.save(checkpoint, path)


def confusion(labels: np.ndarray, predicted: np.ndarray) -> dict:
    return {
        "true_without_mask_called_without": int(((labels == 0) & ~predicted).sum()),
        "true_without_mask_called_masked": int(((labels == 0) & predicted).sum()),
        "true_with_mask_called_without": int(((labels == 1) & ~predicted).sum()),
        "true_with_mask_called_masked": int(((labels == 1) & predicted).sum()),
    }


def no_face_report(faces: FaceSet, data_root: Path) -> dict:
    report = {}
    for label, name in enumerate(CLASSES):
        members = np.nonzero(faces.labels == label)[0]
        readable = members[np.array([faces.errors[i] == "" for i in members], dtype=bool)]
        missed = readable[~faces.found[readable]]
        long_side = faces.sizes[readable].max(axis=1)
        missed_side = faces.sizes[missed].max(axis=1) if len(missed) else np.zeros(0)
        report[name] = {
            "images": int(len(members)),
            "unreadable": int(len(members) - len(readable)),
            "face_found": int(faces.found[readable].sum()),
            "no_face": int(len(missed)),
            "face_found_rate": round(float(faces.found[readable].mean()), 4) if len(readable) else None,
            "median_long_side_px": float(np.median(long_side)) if len(long_side) else None,
            "missed_median_long_side_px": float(np.median(missed_side)) if len(missed_side) else None,
            "missed_examples": [str(Path(faces.paths[i]).relative_to(data_root)) for i in missed[:40]],
        }
    return report


def measure_speed(classifier: MaskClassifier, chips: np.ndarray, repeats: int = 200) -> dict:
    torch.set_num_threads(2)
    single = [chips[i % len(chips)] for i in range(repeats)]
    classifier.predict_proba(single[:8])  # warm-up
    times = []
    for chip in single:
        started = time.perf_counter()
        classifier.predict_proba([chip])
        times.append(time.perf_counter() - started)
    batch = [chips[i % len(chips)] for i in range(32)]
    batch_times = []
    for _ in range(10):
        started = time.perf_counter()
        classifier.predict_proba(batch)
        batch_times.append((time.perf_counter() - started) / len(batch))
    return {
        "device": str(classifier.device),
        "torch_threads": torch.get_num_threads(),
        "batch1_ms_median": round(1000 * float(np.median(times)), 3),
        "batch1_ms_p95": round(1000 * float(np.percentile(times, 95)), 3),
        "batch32_ms_per_face_median": round(1000 * float(np.median(batch_times)), 3),
        "includes": "resize 150->network size, tensor conversion, forward, sigmoid",
    }


def measure_lfw(
    classifier: MaskClassifier, lfw_dir: Path, limit: int, cache_dir: Path | None, threshold: float
) -> dict:
    paths = list_images(lfw_dir)
    total = len(paths)
    if limit and limit < total:
        # A deterministic spread over all people: every k-th file in sorted order.
        paths = paths[:: math.ceil(total / limit)]
    faces = extract_faces(paths, [-1] * len(paths), cache_dir=cache_dir, desc="lfw")
    probabilities = classifier.predict_proba(faces.chips[faces.found])
    called = probabilities >= threshold
    found_paths = [p for p, f in zip(faces.paths, faces.found, strict=True) if f]
    worst = np.argsort(-probabilities)[:15]
    return {
        "images_in_folder": total,
        "images_measured": len(paths),
        "faces_found": int(faces.found.sum()),
        "no_face": int((~faces.found).sum()),
        "called_masked": int(called.sum()),
        "false_mask_rate": round(float(called.mean()), 5) if len(called) else None,
        "probability_quantiles": {
            q: round(float(np.quantile(probabilities, float(q))), 5) for q in ("0.5", "0.9", "0.99", "0.999")
        },
        "highest": [
            {
                "path": str(Path(found_paths[i]).relative_to(lfw_dir)),
                "mask_probability": round(float(probabilities[i]), 4),
            }
            for i in worst
        ],
        "_probabilities": probabilities,
    }


def draw_histogram(path: Path, series: dict[str, np.ndarray], threshold: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 41)
    for name, values in series.items():
        ax.hist(values, bins=bins, alpha=0.55, label=f"{name} (n={len(values)})", density=True)
    ax.axvline(threshold, color="k", linestyle="--", linewidth=1, label=f"threshold {threshold}")
    ax.set_yscale("log")
    ax.set_xlabel("mask probability")
    ax.set_ylabel("density (log)")
    ax.set_title("Mask classifier: held-out mask data and LFW")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m inference.mask.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="folder with with_mask/ and without_mask/")
    parser.add_argument(
        "--out", type=Path, required=True, help="weights file to write (or read, with --eval-only)"
    )
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument(
        "--templates", type=Path, default=None, help="MaskTheFace templates (default: DATA/../mask-overlays)"
    )
    parser.add_argument(
        "--synthetic-fraction",
        type=float,
        default=0.5,
        help="synthetic positives per epoch, per training negative",
    )
    parser.add_argument(
        "--lfw", type=Path, default=None, help="LFW images folder: measure the false-mask rate there"
    )
    parser.add_argument(
        "--lfw-limit", type=int, default=0, help="measure a deterministic sample of this many (0: all)"
    )
    parser.add_argument("--threshold", type=float, default=DEFAULT_MASK_THRESHOLD)
    parser.add_argument("--report", type=Path, default=None, help="JSON report to write")
    parser.add_argument("--histogram", type=Path, default=None, help="PNG of the probability histograms")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where meshed chips are cached")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--eval-only", action="store_true", help="measure the weights at --out without training"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    started = time.perf_counter()
    cache_dir = None if args.no_cache else args.cache_dir
    data = args.data.resolve()

    paths, labels = [], []
    for label, name in enumerate(CLASSES):
        files = list_images(data / name)
        if not files:
            raise SystemExit(f"no images in {data / name}")
        paths += files
        labels += [label] * len(files)
    faces = extract_faces(paths, labels, cache_dir=cache_dir, desc="mask-data")
    groups = duplicate_groups(faces.paths)
    train_all, test_all = stratified_group_split(faces.labels, groups, args.test_fraction, args.seed)
    train_idx = train_all[faces.found[train_all]]
    test_idx = test_all[faces.found[test_all]]
    print(
        f"{len(paths)} images, {int(faces.found.sum())} with a face, "
        f"{len(np.unique(groups))} distinct photos; train {len(train_idx)}, held out {len(test_idx)}",
        file=sys.stderr,
    )

    history: list[dict] = []
    config = NetworkConfig()
    if args.eval_only:
        classifier = MaskClassifier.from_weights(args.out, device="cpu")
    else:
        template_dir = args.templates or data.parent / "mask-overlays"
        templates = load_templates(template_dir) if template_dir.exists() else []
        model, history = train_model(
            faces,
            train_idx,
            templates,
            epochs=args.epochs,
            seed=args.seed,
            config=config,
            synthetic_fraction=args.synthetic_fraction,
        )
        heldout_fp32 = predict_chips(model, faces.chips[test_idx], config.input_size)
        save_checkpoint(
            model,
            args.out,
            {
                "training": {
                    "command": "python -m inference.mask.train "
                    + " ".join(sys.argv[1:] if argv is None else argv),
                    "seed": args.seed,
                    "epochs": args.epochs,
                    "train_faces": len(train_idx),
                    "heldout_faces": len(test_idx),
                    "heldout_accuracy_fp32": round(
                        float(((heldout_fp32 >= 0.5) == faces.labels[test_idx]).mean()), 5
                    ),
                    "history": history,
                },
            },
        )
        classifier = MaskClassifier.from_weights(args.out, device="cpu")

    heldout = classifier.predict_proba(faces.chips[test_idx])
    predicted = heldout >= args.threshold
    truth = faces.labels[test_idx]
    wrong = np.nonzero(predicted != truth.astype(bool))[0]
    report: dict = {
        "model": {
            "version": classifier.version,
            "weights": str(args.out),
            "weights_bytes": args.out.stat().st_size,
            "parameters": count_parameters(classifier.model),
            "architecture": "MobileNetV2-style, width 0.5, 112x112 input from the dlib_150 aligned chip",
            "config": classifier.model.config.to_dict(),
        },
        "threshold": args.threshold,
        "split": {
            "seed": args.seed,
            "test_fraction": args.test_fraction,
            "grouped_near_duplicates": f"difference hash within {DUPLICATE_BITS} bits",
            "distinct_photos": int(len(np.unique(groups))),
            "train_faces": int(len(train_idx)),
            "heldout_faces": int(len(test_idx)),
            "heldout_per_class": {name: int((truth == label).sum()) for label, name in enumerate(CLASSES)},
        },
        "heldout": {
            "accuracy": round(float((predicted == truth.astype(bool)).mean()), 5),
            "confusion": confusion(truth, predicted),
            "errors": [
                {
                    "path": str(Path(faces.paths[test_idx[i]]).relative_to(data)),
                    "mask_probability": round(float(heldout[i]), 4),
                }
                for i in wrong
            ],
        },
        "face_detection_on_mask_data": no_face_report(faces, data),
    }

    # Synthetic masks on held-out faces without one: evaluation only, never trained on.
    template_dir = args.templates or data.parent / "mask-overlays"
    templates = load_templates(template_dir) if template_dir.exists() else []
    report["heldout_synthetic_masks"] = synthetic_recall(
        classifier, faces, test_idx[faces.labels[test_idx] == 0], templates, args.seed + 1, args.threshold
    )

    report["speed_cpu"] = measure_speed(classifier, faces.chips[test_idx])
    histogram_series = {
        "held-out without_mask": heldout[truth == 0],
        "held-out with_mask": heldout[truth == 1],
    }
    if args.lfw is not None:
        lfw = measure_lfw(classifier, args.lfw.resolve(), args.lfw_limit, cache_dir, args.threshold)
        histogram_series["LFW"] = lfw.pop("_probabilities")
        report["lfw"] = lfw
    # What the checkpoint says about its own training run (command, seed, per-epoch history).
    report["training"] = dict(classifier.metadata.get("training", {}))
    if history:
        report["training"]["seconds_this_run"] = round(time.perf_counter() - started, 1)
    if args.histogram is not None:
        draw_histogram(args.histogram, histogram_series, args.threshold)
    text = json.dumps(report, indent=2)
    print(text)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n")
    return report


def synthetic_recall(
    classifier: MaskClassifier,
    faces: FaceSet,
    indices: np.ndarray,
    templates: list,
    seed: int,
    threshold: float,
) -> dict:
    """How many faces without a mask are called masked once a synthetic mask is put on them."""
    rng = np.random.default_rng(seed)
    result: dict = {"faces": int(len(indices))}
    for name, source in (("procedural_renderer", []), ("overlay_templates", templates)):
        if name == "overlay_templates" and not templates:
            continue
        chips = [synthetic_positive(faces.paths[i], faces.landmarks[i], source, rng) for i in indices]
        chips = [c for c in chips if c is not None]
        called = classifier.predict_proba(chips) >= threshold
        result[f"{name}_called_masked"] = round(float(called.mean()), 5) if len(called) else None
    return result


if __name__ == "__main__":
    main()
