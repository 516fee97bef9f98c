"""What a full-face template from a photo called masked risks, measured on real masked photos.

An enrollment photo the classifier calls masked (where the policy allows one) could store the
full-face template as well as the mask-aware ones, so that an unmasked probe has something to
meet. On LFW the photos called masked are unmasked faces behind a hand, a microphone or a
beard, and without a full template their person cannot be verified unmasked at all.

The risk of doing so: a masked impostor whose mask the classifier misses is matched on its full
face, so it meets that template, a masked face against a masked face, at the *unmasked*
threshold. This script measures how often that passes: every real with_mask photo of
../shared/data/mask-classification (never LFW) is enrolled as the product would and probed as
a missed masked face (its full-face vector); every pair of photos from different near-duplicate
groups is an impostor pair (the data has no identities, so a few same-person pairs remain and
the rate is an upper bound). The classifier's miss rate on masked faces comes from its
held-out report (docs/benchmarks/mask_classifier.json).

    python -m toolkit.dev.masked_enrollment_risk [--data ../shared/data] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inference.decode import ImageDecodeError, load_image
from inference.pipeline import FacePipeline
from inference.variants import STRATEGY_PLAIN, VARIANT_FULL
from toolkit.json_output import print_and_save
from toolkit.mask_training.data import duplicate_groups, list_images
from toolkit.paths import BENCHMARKS, SHARED_DATA


def full_vectors(pipeline: FacePipeline, paths: Sequence[Path]) -> tuple[list[str], np.ndarray, list[bool]]:
    """Full-face vectors of the photos where a face is found, and whether each was called masked."""
    kept, vectors, called = [], [], []
    for path in tqdm(paths, desc="faces", unit="photo"):
        try:
            rgb = load_image(path)
        except ImageDecodeError:
            continue
        result = pipeline.probe([rgb], strategy=STRATEGY_PLAIN)[0]
        if not result.ok:
            continue
        kept.append(str(path))
        vectors.append(result.embeddings[VARIANT_FULL][0])
        called.append(bool(result.masked))
    return kept, np.asarray(vectors, dtype=np.float32), called


def impostor_rate(vectors: np.ndarray, groups: np.ndarray, thresholds: Sequence[float]) -> dict:
    """Share of pairs from different groups at or above each threshold, and the highest score."""
    scores = vectors @ vectors.T
    different = groups[:, None] != groups[None, :]
    upper = np.triu(np.ones_like(different), k=1) & different
    values = scores[upper]
    return {
        "pairs": int(values.size),
        "max_score": float(values.max()) if values.size else None,
        "rate_at": {f"{t:.2f}": float(np.mean(values >= t)) for t in thresholds},
    }


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--thresholds", default="0.90,0.92,0.94,0.96", help="cosine thresholds (default unmasked: 0.94)"
    )
    args = parser.parse_args(argv)

    thresholds = sorted(float(t) for t in args.thresholds.split(","))
    pipeline = FacePipeline(device="cpu")
    masked_paths = list_images(args.data / "mask-classification" / "with_mask")[: args.limit]
    paths, vectors, called = full_vectors(pipeline, masked_paths)
    groups = duplicate_groups(paths)
    report = {
        "command": "python -m toolkit.dev.masked_enrollment_risk " + " ".join(argv or sys.argv[1:]),
        "embedder": pipeline.embedder.spec.name,
        "masked_photos": len(masked_paths),
        "faces": len(paths),
        "groups": int(len(set(groups.tolist()))),
        "called_masked": float(np.mean(called)) if called else None,
        "masked_vs_masked_full_face": impostor_rate(vectors, groups, thresholds),
    }
    heldout = BENCHMARKS / "mask_classifier.json"
    if heldout.is_file():
        confusion = json.loads(heldout.read_text())["heldout"]["confusion"]
        missed = confusion["true_with_mask_called_without"]
        miss_rate = missed / (missed + confusion["true_with_mask_called_masked"])
        report["classifier_heldout_miss_rate"] = miss_rate
        report["false_accept_per_masked_impostor_attempt"] = {
            key: miss_rate * rate for key, rate in report["masked_vs_masked_full_face"]["rate_at"].items()
        }
    print_and_save(report, args.json)
    return report


if __name__ == "__main__":
    main()
