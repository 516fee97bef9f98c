"""Mask decisions for image files, one JSON object per image per line on standard output.

    python -m toolkit.detect_masks PATH... [--threshold 0.5] [--weights FILE] [--device auto]

PATHs are files or folders (folders are walked recursively for image extensions). Each line:
{"path", "face", "masked", "mask_probability"}; with no face, "masked" and
"mask_probability" are null. A file that cannot be read gives a line with an "error" key
(and "reason") instead of stopping the run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from inference.align import DLIB_150, align_face
from inference.decode import ImageDecodeError, load_image
from inference.detect import FaceDetector, get_face_detector
from inference.mask.classifier import MaskClassifier, get_mask_classifier
from inference.variants import DEFAULT_MASK_THRESHOLD

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})


def iter_image_paths(paths: Sequence[str | Path]) -> Iterator[Path]:
    """Files as given (whatever their extension); folders walked recursively for image files, sorted."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
        else:
            yield path


def classify_file(path: Path, threshold: float, classifier: MaskClassifier, detector: FaceDetector) -> dict:
    record: dict = {"path": str(path), "face": None, "masked": None, "mask_probability": None}
    try:
        rgb = load_image(path)
    except ImageDecodeError as exc:
        return {**record, "error": exc.message, "reason": exc.reason}
    except OSError as exc:
        return {**record, "error": str(exc) or type(exc).__name__, "reason": "unreadable"}
    face = detector.largest(rgb)
    if face is None:
        return {**record, "face": False}
    probability = float(classifier.predict_proba([align_face(rgb, face, DLIB_150)])[0])
    return {
        **record,
        "face": True,
        "masked": probability >= threshold,
        "mask_probability": round(probability, 6),
    }


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"threshold must be within [0, 1], got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m toolkit.detect_masks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("paths", nargs="+", help="image files or folders")
    parser.add_argument("--threshold", type=_probability, default=DEFAULT_MASK_THRESHOLD)
    parser.add_argument("--weights", default=None, help="mask classifier weights (default: the committed v2)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args(argv)

    classifier = get_mask_classifier(args.weights, device=args.device)
    detector = get_face_detector()
    for path in iter_image_paths(args.paths):
        try:
            record = classify_file(path, args.threshold, classifier, detector)
        except Exception as exc:  # one bad image must not end a batch run
            record = {
                "path": str(path),
                "face": None,
                "masked": None,
                "mask_probability": None,
                "error": f"{type(exc).__name__}: {exc}",
                "reason": "failed",
            }
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
