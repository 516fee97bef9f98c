"""The detection chain before and after YuNet: faces found on masked photos, and the cost on unmasked ones.

    python -m toolkit.dev.bench_detect --data ../shared/data/mask-classification \\
        --lfw ../shared/data/lfw/images --json docs/benchmarks/detect_chain.json \\
        --grid docs/benchmarks/detect_new_faces.png

"Before" is `FaceDetector(yunet=False)` (mesh, FaceDetection boxes, padded image: the chain as it
was), "after" the default chain. Found rates are per photo (at least one face), on the held-out
split the mask classifier's training uses (toolkit.mask_training: same grouping of copies, same
seed and fraction) and on all with_mask photos. Speed: both chains on the same unmasked images
(a deterministic LFW sample and held-out without_mask photos), interleaved image by image with
the order alternating, so load changes hit both alike; the load average is recorded. The grid
shows every face the new chain finds on held-out with_mask photos that the old chain missed,
for a person to check that none is a false detection.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from inference.boxes import iou
from inference.decode import load_image
from inference.detect import DetectedFace, FaceDetector
from toolkit.mask_training.config import CLASSES, TrainConfig
from toolkit.mask_training.data import duplicate_groups, list_images, stratified_group_split

GRID_CELL = 72


def heldout_split(data: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """All mask-data paths, labels and the held-out mask, exactly as the classifier's training splits."""
    base = TrainConfig(data=data, out=Path("unused"))
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(CLASSES):
        files = list_images(data / name)
        paths += files
        labels += [label] * len(files)
    groups = duplicate_groups([str(p) for p in paths])
    label_array = np.asarray(labels, dtype=np.int64)
    _, test = stratified_group_split(label_array, groups, base.test_fraction, base.seed)
    heldout = np.zeros(len(paths), dtype=bool)
    heldout[test] = True
    return paths, label_array, heldout


def _timed(detector: FaceDetector, rgb: np.ndarray, points5: bool = True) -> tuple[list[DetectedFace], float]:
    start = time.perf_counter()
    faces = detector.detect(rgb, points5=points5)
    return faces, time.perf_counter() - start


def _crop(rgb: np.ndarray, face: DetectedFace) -> np.ndarray:
    x0, y0, x1, y1 = (int(round(v)) for v in face.bbox)
    height, width = rgb.shape[:2]
    crop = rgb[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    if crop.size == 0:
        crop = np.zeros((8, 8, 3), np.uint8)
    return cv2.resize(crop, (GRID_CELL, GRID_CELL), interpolation=cv2.INTER_AREA)


def write_grid(crops: list[np.ndarray], path: Path, columns: int = 16) -> None:
    rows = max(1, -(-len(crops) // columns))
    grid = np.full((rows * (GRID_CELL + 2), columns * (GRID_CELL + 2), 3), 255, np.uint8)
    for index, crop in enumerate(crops):
        r, c = divmod(index, columns)
        y, x = r * (GRID_CELL + 2), c * (GRID_CELL + 2)
        grid[y : y + GRID_CELL, x : x + GRID_CELL] = crop
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def found_rates(
    paths: Sequence[Path], before: FaceDetector, after: FaceDetector, heldout: np.ndarray
) -> tuple[dict, list[np.ndarray], list[str]]:
    """Per-photo found rates of both chains on with_mask photos, and crops of the faces only 'after' finds."""
    rows = []
    new_crops: list[np.ndarray] = []
    new_names: list[str] = []
    for index, path in enumerate(paths):
        rgb = load_image(path)
        old, _ = _timed(before, rgb)
        new, _ = _timed(after, rgb)
        added = [f for f in new if all(iou(f.bbox, o.bbox) < 0.3 for o in old)]
        if heldout[index]:
            for face in added:
                new_crops.append(_crop(rgb, face))
                new_names.append(f"{path.name}:{face.source}")
        rows.append(
            {
                "heldout": bool(heldout[index]),
                "old": len(old),
                "new": len(new),
                "added": len(added),
                "sources": [f.source for f in new],
                "points5": sum(f.points5 is not None for f in new),
            }
        )

    def summary(selected: list[dict]) -> dict:
        count = len(selected)
        old_found = sum(r["old"] > 0 for r in selected)
        new_found = sum(r["new"] > 0 for r in selected)
        return {
            "photos": count,
            "found_before": old_found,
            "found_before_rate": round(old_found / count, 4) if count else None,
            "found_after": new_found,
            "found_after_rate": round(new_found / count, 4) if count else None,
            "faces_before": sum(r["old"] for r in selected),
            "faces_after": sum(r["new"] for r in selected),
            "faces_added": sum(r["added"] for r in selected),
            "faces_after_by_source": dict(Counter(s for r in selected for s in r["sources"])),
            "faces_after_with_points5": sum(r["points5"] for r in selected),
            "lost": sum(r["old"] > 0 and r["new"] == 0 for r in selected),
        }

    return (
        {"heldout": summary([r for r in rows if r["heldout"]]), "all": summary(rows)},
        new_crops,
        new_names,
    )


def speed(paths: Sequence[Path], before: FaceDetector, after: FaceDetector) -> dict:
    """Detection time per image of both chains (the new one with and without points5), interleaved."""
    images = [load_image(p) for p in paths]
    for rgb in images[:5]:  # warm-up: first calls allocate
        before.detect(rgb)
        after.detect(rgb)
    times: dict[str, list[float]] = {"before": [], "after": [], "after_without_points5": []}
    load_start = os.getloadavg()
    runs = (("before", before, True), ("after", after, True), ("after_without_points5", after, False))
    for index, rgb in enumerate(images):
        # Rotate the order per image so neither chain always runs first (warm caches, load swings).
        for name, detector, points5 in runs[index % 3 :] + runs[: index % 3]:
            times[name].append(_timed(detector, rgb, points5)[1])
    load_end = os.getloadavg()
    before_ms, after_ms = np.array(times["before"]) * 1e3, np.array(times["after"]) * 1e3
    bare_ms = np.array(times["after_without_points5"]) * 1e3
    return {
        "images": len(images),
        "before_ms_mean": round(float(before_ms.mean()), 3),
        "after_ms_mean": round(float(after_ms.mean()), 3),
        "before_ms_median": round(float(np.median(before_ms)), 3),
        "after_ms_median": round(float(np.median(after_ms)), 3),
        "slowdown_mean": round(float(after_ms.mean() / before_ms.mean()) - 1.0, 4),
        "slowdown_median": round(float(np.median(after_ms) / np.median(before_ms)) - 1.0, 4),
        "after_without_points5_ms_mean": round(float(bare_ms.mean()), 3),
        "after_without_points5_ms_median": round(float(np.median(bare_ms)), 3),
        "slowdown_without_points5_mean": round(float(bare_ms.mean() / before_ms.mean()) - 1.0, 4),
        "slowdown_without_points5_median": round(float(np.median(bare_ms) / np.median(before_ms)) - 1.0, 4),
        "load_average_1min": [round(load_start[0], 2), round(load_end[0], 2)],
    }


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m toolkit.dev.bench_detect", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="folder with with_mask/ and without_mask/")
    parser.add_argument("--lfw", type=Path, required=True, help="LFW images folder (unmasked speed sample)")
    parser.add_argument(
        "--speed-images", type=int, default=300, help="LFW images and without_mask photos, each"
    )
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--grid", type=Path, default=None, help="PNG of the faces only the new chain finds")
    args = parser.parse_args(argv)

    import cv2 as _cv2  # the measurement is per thread: one OpenCV thread, like the worker's

    _cv2.setNumThreads(1)
    before, after = FaceDetector(yunet=False), FaceDetector()
    paths, labels, heldout = heldout_split(args.data)
    masked = [i for i in range(len(paths)) if labels[i] == 1]
    started = time.time()
    rates, crops, names = found_rates([paths[i] for i in masked], before, after, heldout[masked])
    lfw = sorted(args.lfw.glob("*/*.jpg"))
    lfw_sample = lfw[:: max(1, len(lfw) // args.speed_images)][: args.speed_images]
    unmasked_heldout = [paths[i] for i in range(len(paths)) if labels[i] == 0 and heldout[i]]
    report = {
        "command": "python -m toolkit.dev.bench_detect "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "before": "FaceDetector(yunet=False): mesh, then FaceDetection boxes (and tiles), "
        "then the padded image",
        "after": "FaceDetector(): mesh; YuNet scan (several scales) when the mesh finds nothing or only "
        "small faces, each YuNet face the mesh missed meshed upright in an enlarged crop; then the old "
        "fallbacks; points5 from YuNet on every face",
        "with_mask": rates,
        "new_faces_listed": names,
        "speed_unmasked": {
            "lfw": speed(lfw_sample, before, after),
            "without_mask_heldout": speed(unmasked_heldout[: args.speed_images], before, after),
        },
        "threads": {"opencv": 1, "omp": os.environ.get("OMP_NUM_THREADS")},
        "wall_s": round(time.time() - started, 1),
    }
    if args.grid is not None:
        write_grid(crops, args.grid)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("with_mask", "speed_unmasked")}, indent=2))
    return report


if __name__ == "__main__":
    main()
