"""What the trained mask classifier is measured on: the held-out split, synthetic masks, speed, LFW.

With an LFW folder the false-mask rate on LFW (no masks there) is measured too.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from inference.mask.classifier import MaskClassifier
from inference.mask.network import count_parameters
from toolkit.mask_training.augment import synthetic_positive
from toolkit.mask_training.config import CLASSES, TrainConfig
from toolkit.mask_training.data import DUPLICATE_BITS, FaceSet, MaskData, extract_faces, list_images
from toolkit.overlay import load_templates


def measure(config: TrainConfig, classifier: MaskClassifier, data: MaskData) -> tuple[dict, dict]:
    """The report on the classifier (held-out split, synthetic masks, speed, LFW) and histogram series."""
    faces, groups, train_idx, test_idx = data.faces, data.groups, data.train, data.test
    heldout = classifier.predict_proba(faces.chips[test_idx])
    predicted = heldout >= config.threshold
    truth = faces.labels[test_idx]
    wrong = np.nonzero(predicted != truth.astype(bool))[0]
    report: dict = {
        "model": {
            "version": classifier.version,
            "weights": str(config.out),
            "weights_bytes": config.out.stat().st_size,
            "parameters": count_parameters(classifier.model),
            "architecture": "MobileNetV2-style, width 0.5, 112x112 input from the dlib_150 aligned chip",
            "config": classifier.model.config.to_dict(),
        },
        "threshold": config.threshold,
        "split": {
            "seed": config.seed,
            "test_fraction": config.test_fraction,
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
                    "path": str(Path(faces.paths[test_idx[i]]).relative_to(config.data)),
                    "mask_probability": round(float(heldout[i]), 4),
                }
                for i in wrong
            ],
        },
        "face_detection_on_mask_data": no_face_report(faces, config.data),
    }

    # Synthetic masks on held-out faces without one: evaluation only, never trained on.
    templates = load_templates(config.template_dir) if config.template_dir.exists() else []
    report["heldout_synthetic_masks"] = synthetic_recall(
        classifier, faces, test_idx[faces.labels[test_idx] == 0], templates, config.seed + 1, config.threshold
    )

    report["speed_cpu"] = measure_speed(classifier, faces.chips[test_idx])
    histogram_series = {
        "held-out without_mask": heldout[truth == 0],
        "held-out with_mask": heldout[truth == 1],
    }
    if config.lfw is not None:
        lfw = measure_lfw(
            classifier, config.lfw.resolve(), config.lfw_limit, config.cache_dir, config.threshold
        )
        histogram_series["LFW"] = lfw.pop("_probabilities")
        report["lfw"] = lfw
    return report, histogram_series


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
