"""Derive where the eye, brow and nose mesh points sit in each alignment template.

The "eyes" and "mesh" alignment modes fit the similarity on mesh points that have no published
template position. This script measures them: unmasked faces are meshed, aligned to each
template with the five-point method, and every mesh point's template position is averaged
(a 10% trimmed mean, so a few bad meshes do not pull it). The output is the Python literal
`DERIVED_POSITIONS` for inference/align.py.

Data: ../shared/data/mask-classification/without_mask and ../shared/data/portraits (never LFW,
the evaluation set). Run from the repository root:

    python -m toolkit.dev.derive_eye_template [--data ../shared/data] [--limit N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from inference.align import EYE_MESH_INDICES, MESH_MODE_INDICES, TEMPLATES, alignment_matrix, transform_points
from inference.decode import ImageDecodeError, load_image
from inference.detect import get_face_detector
from toolkit.paths import SHARED_DATA


def _image_paths(data: Path, limit: int | None) -> list[Path]:
    paths = sorted((data / "mask-classification" / "without_mask").glob("*"))
    paths += sorted((data / "portraits").glob("*.jpg"))
    paths = [p for p in paths if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    return paths[:limit] if limit else paths


def _trimmed_mean(values: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    ordered = np.sort(values, axis=0)
    cut = int(len(ordered) * fraction)
    return ordered[cut : len(ordered) - cut].mean(axis=0)


def derive(data: Path, limit: int | None = None) -> tuple[dict[str, dict[int, tuple[float, float]]], int]:
    indices = sorted(set(EYE_MESH_INDICES) | set(MESH_MODE_INDICES))
    detector = get_face_detector()
    collected: dict[str, list[np.ndarray]] = {name: [] for name in TEMPLATES}
    used = 0
    for path in _image_paths(data, limit):
        try:
            rgb = load_image(path)
        except ImageDecodeError:
            continue
        face = detector.largest(rgb)
        if face is None:
            continue
        used += 1
        for name, template in TEMPLATES.items():
            matrix = alignment_matrix(face, template, mode="five_point")
            collected[name].append(transform_points(face.landmarks[indices], matrix))
    positions = {}
    for name, samples in collected.items():
        mean = _trimmed_mean(np.stack(samples))
        positions[name] = {
            index: (round(float(x), 3), round(float(y), 3))
            for index, (x, y) in zip(indices, mean, strict=True)
        }
    return positions, used


def _format(positions: dict[str, dict[int, tuple[float, float]]], used: int, data: Path) -> str:
    lines = [f"# Derived from {used} unmasked faces (mask-classification/without_mask + portraits)."]
    lines.append("# fmt: off")
    lines.append("DERIVED_POSITIONS: dict[str, dict[int, tuple[float, float]]] = {")
    for name, points in positions.items():
        lines.append(f'    "{name}": {{')
        items = [f"{index}: ({x}, {y})" for index, (x, y) in points.items()]
        for start in range(0, len(items), 4):
            lines.append("        " + ", ".join(items[start : start + 4]) + ",")
        lines.append("    },")
    lines.append("}")
    lines.append("# fmt: on")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images (a quick check)")
    args = parser.parse_args(argv)
    positions, used = derive(args.data, args.limit)
    print(_format(positions, used, args.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
