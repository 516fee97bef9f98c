"""The face pipeline's cost on large photos: YuNet's last scan bordering a small view (the product)
against bordering the full image (the chain as it was), in one run.

    python -m toolkit.dev.bench_large_images --portraits ../shared/data/portraits \\
        --json docs/benchmarks/large_images.json --plot docs/benchmarks/large_images.png

Three kinds of photo at each size (megapixels): a faceless scene (a portrait's background,
resized), a close-up whose face fills the frame (a tight crop of a portrait's face, resized) and
a whole portrait (resized). Each is detected by both chains, interleaved with the order
alternating per repeat so load swings hit both alike; the median time, the faces found and the
one-minute load average before and after are recorded. Detection is the stage the change touches:
alignment and embedding cost the same in both chains.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inference.decode import load_image
from inference.detect import SCAN_FILL_SIDE, FaceDetector

FULL_IMAGE = 1 << 30  # a fill view longer than any photo: the whole image is bordered
KINDS = ("faceless", "close_up", "portrait")


def photos(portraits: Path, megapixels: Sequence[float]) -> dict[tuple[str, float], np.ndarray]:
    """The three kinds at each size, square or the portrait's own aspect, RGB uint8."""
    # Background only (tests check it), stacked to a photo's shape: bordering the full image of a
    # 3.5:1 strip of 36 MP made YuNet's input 324 MP, and the old chain died of memory here.
    scene = np.vstack([load_image(portraits / "img22.jpg")[:200, :700]] * 3)
    portrait = load_image(portraits / "img1.jpg")
    with FaceDetector() as detector:
        face = detector.largest(portrait)
    if face is None:
        raise SystemExit("no face found in img1.jpg: cannot build the close-up")
    x0, y0, x1, y1 = (int(v) for v in face.bbox)
    close_up = portrait[max(0, y0) : y1, max(0, x0) : x1]
    out = {}
    for mp in megapixels:
        for kind, source in (("faceless", scene), ("close_up", close_up), ("portrait", portrait)):
            height, width = source.shape[:2]
            scale = np.sqrt(mp * 1e6 / (height * width))
            size = (round(width * scale), round(height * scale))
            out[(kind, mp)] = cv2.resize(source, size, interpolation=cv2.INTER_CUBIC)
    return out


def _strip(portraits: Path, megapixels: float) -> np.ndarray:
    scene = load_image(portraits / "img22.jpg")[:200, :700]
    scale = np.sqrt(megapixels * 1e6 / (200 * 700))
    return cv2.resize(scene, (round(700 * scale), round(200 * scale)), interpolation=cv2.INTER_CUBIC)


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    from the parent into a spawned child, so a child of a large parent would report its peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _strip_child(portraits: str, megapixels: float) -> dict:
    cv2.setNumThreads(1)
    strip = _strip(Path(portraits), megapixels)
    with FaceDetector() as detector:
        detector.detect(np.full((480, 640, 3), 128, np.uint8))
        before = _peak_rss_mb()
        started = time.perf_counter()
        faces = detector.detect(strip)
        seconds = time.perf_counter() - started
    peak = _peak_rss_mb()
    return {
        "size": [int(strip.shape[1]), int(strip.shape[0])],
        "seconds": round(seconds, 3),
        "faces": len(faces),
        "peak_rss_mb": round(peak, 1),
        "peak_rss_growth_mb": round(peak - before, 1),
    }


def strip_memory(portraits: Path, megapixels: float) -> dict:
    """The product's chain on a faceless 3.5:1 strip, in a fresh process: its time and peak memory
    (the old chain is not run on it: its YuNet input was 324 MP at 36 MP, and it died of memory)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_strip_child, (str(portraits), megapixels))


def measure(images: dict, repeats: int) -> list[dict]:
    arms = {
        "fill_view": FaceDetector(scan_fill_side=SCAN_FILL_SIDE),
        "full_image": FaceDetector(scan_fill_side=FULL_IMAGE),
    }
    warm = np.full((480, 640, 3), 128, np.uint8)
    for detector in arms.values():
        detector.detect(warm)
    rows = []
    for (kind, mp), rgb in tqdm(list(images.items()), desc="photos", unit="photo"):
        times: dict[str, list[float]] = {name: [] for name in arms}
        found: dict[str, int] = {}
        for repeat in range(repeats):
            order = list(arms) if repeat % 2 == 0 else list(reversed(arms))
            for name in order:
                started = time.perf_counter()
                faces = arms[name].detect(rgb)
                times[name].append(time.perf_counter() - started)
                found[name] = len(faces)
        fill, full = (float(np.median(times[name])) for name in arms)
        rows.append(
            {
                "kind": kind,
                "megapixels": mp,
                "size": [int(rgb.shape[1]), int(rgb.shape[0])],
                "fill_view_s": round(fill, 3),
                "full_image_s": round(full, 3),
                "full_over_fill": round(full / fill, 2),
                "faces_fill_view": found["fill_view"],
                "faces_full_image": found["full_image"],
            }
        )
    for detector in arms.values():
        detector.close()
    return rows


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.4), dpi=100)
    axes = fig.subplots(1, len(KINDS), sharey=True)
    for axis, kind in zip(axes, KINDS, strict=True):
        mine = [row for row in rows if row["kind"] == kind]
        x = np.arange(len(mine))
        axis.bar(x - 0.2, [r["full_image_s"] for r in mine], 0.4, label="border around the full image")
        fill_label = f"border around a {SCAN_FILL_SIDE} px view"
        axis.bar(x + 0.2, [r["fill_view_s"] for r in mine], 0.4, label=fill_label)
        axis.set_xticks(x, [f"{r['megapixels']:g} MP" for r in mine])
        axis.set_yscale("log")
        axis.set_title(kind.replace("_", " "), fontsize=10)
        axis.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("detection, s (median)")
    axes[0].legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m toolkit.dev.bench_large_images", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--portraits", type=Path, required=True, help="the portraits folder (img1, img22)")
    parser.add_argument("--megapixels", default="2,12,36", help="comma-separated sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args(argv)

    cv2.setNumThreads(1)  # the worker's setting: the measurement is per thread
    images = photos(args.portraits, [float(v) for v in args.megapixels.split(",")])
    load_start = os.getloadavg()
    rows = measure(images, args.repeats)
    load_end = os.getloadavg()
    strip = strip_memory(args.portraits, max(float(v) for v in args.megapixels.split(",")))
    given = argv if argv is not None else sys.argv[1:]
    report = {
        "command": "python -m toolkit.dev.bench_large_images " + " ".join(given),
        "fill_view": f"YuNet's last scan borders the image shrunk to {SCAN_FILL_SIDE} px (the product)",
        "full_image": "YuNet's last scan borders the full image (the chain before the change)",
        "threads": "one OpenCV thread; torch/mediapipe as the process starts",
        "cpu_count": os.cpu_count(),
        "load_average_1min": [round(load_start[0], 2), round(load_end[0], 2)],
        "rows": rows,
        "faceless_strip_3.5to1": strip,
    }
    for row in rows:
        print(
            f"{row['kind']:>9} {row['megapixels']:>4g} MP  full image {row['full_image_s']:7.2f} s  "
            f"fill view {row['fill_view_s']:6.2f} s  ratio {row['full_over_fill']:6.2f}  "
            f"faces {row['faces_full_image']}/{row['faces_fill_view']}"
        )
    print(f"faceless 3.5:1 strip {strip['size']}: {strip['seconds']} s, peak RSS {strip['peak_rss_mb']} MB")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot is not None:
        plot(rows, args.plot)
    return report


if __name__ == "__main__":
    main()
