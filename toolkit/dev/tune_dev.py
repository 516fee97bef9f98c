"""Choose the pipeline's matching settings on development data, never on the LFW test folds.

Development images: the LFW identities that no line of pairs.txt names (see
`make_dev_pairs`) and the portraits (identities.txt). Every image is compared with every
other (all genuine and impostor pairs, so that the few hundred images give thousands of
impostor pairs and a usable TAR at FAR=1e-3), once unmasked and once with the second image
of each pair wearing a MaskTheFace overlay (evaluation templates, never the product's
renderer). Each setting is scored by AUC, EER, TAR@FAR=1e-2 and 1e-3.

    python -m toolkit.dev.tune_dev [--experiment unmasked|masked|both] [--json OUT]

The masked experiment treats every overlaid probe as masked (the mask classifier's
decision is measured separately by the evaluation CLI) and compares the strategies:
plain (full-face templates), synthetic (rendered-mask templates) and cutout (lower face
blanked from a row, both sides), for each alignment mode of the masked variants.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.variants import (
    STRATEGY_CUTOUT,
    STRATEGY_PLAIN,
    STRATEGY_SYNTHETIC,
    VARIANT_CUTOUT,
    VARIANT_FULL,
    VARIANT_SYNTHETIC,
)
from toolkit.dev.make_dev_pairs import identity_images
from toolkit.eval_jobs import DEFAULT_CACHE, DEFAULT_TEMPLATES, CachingDetector, detector_fingerprint
from toolkit.json_output import print_and_save
from toolkit.metrics import auc, equal_error_rate, tar_at_far
from toolkit.pairs import read_pairs
from toolkit.paths import SHARED_DATA


class _NoMaskClassifier:
    """Tuning decides the mask state itself; the classifier is not needed (nor loaded)."""

    def predict_proba(self, crops):
        return np.zeros(len(crops), dtype=np.float32)


@dataclass
class DevImage:
    path: Path
    identity: str
    rgb: np.ndarray
    face: object
    masked_rgb: np.ndarray | None = None
    masked_face: object = None


def dev_images(shared: Path, limit: int | None) -> list[tuple[Path, str]]:
    lfw = shared / "lfw"
    excluded: set[str] = set()
    pairs, _ = read_pairs(lfw / "pairs.txt")
    for pair in pairs:
        excluded.update(pair.names)
    items = []
    for name, numbers in identity_images(lfw / "images").items():
        if name in excluded or len(numbers) < 2:
            continue
        items.extend((lfw / "images" / name / f"{name}_{n:04d}.jpg", name) for n in numbers)
    portraits = shared / "portraits"
    for line in (portraits / "identities.txt").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3:
            items.extend((portraits / file, "portrait_" + fields[0]) for file in fields[1:])
    return items[:limit] if limit else items


def all_pair_scores(gallery: np.ndarray, probe: np.ndarray, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Scores of every ordered pair (i enrolled, j probe), i != j; gallery/probe: (n, k, d) template sets."""
    n = len(ids)
    # max over the k gallery templates and the probe's vectors
    sims = np.einsum("ikd,jld->ijkl", gallery, probe).reshape(n, n, -1).max(axis=2)
    labels = np.array([[a == b for b in ids] for a in ids])
    off = ~np.eye(n, dtype=bool)
    return sims[off], labels[off]


def score(sims: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "auc": round(auc(sims, labels), 6),
        "eer": round(equal_error_rate(sims, labels), 5),
        "tar@1e-2": round(tar_at_far(sims, labels, 0.01)[0], 4),
        "tar@1e-3": round(tar_at_far(sims, labels, 0.001)[0], 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED_DATA)
    parser.add_argument("--experiment", choices=("unmasked", "masked", "both"), default="both")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jitters", default="0,4,8")
    parser.add_argument("--rows", default="60,70,76,82,88")
    args = parser.parse_args(argv)

    import cv2
    import torch

    from inference.detect import get_face_detector
    from inference.pipeline import FacePipeline
    from toolkit.overlay import load_templates, random_overlay

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    from inference.decode import load_image

    detector = CachingDetector(get_face_detector(), DEFAULT_CACHE / "detect", detector_fingerprint())
    templates = load_templates(DEFAULT_TEMPLATES)
    images: list[DevImage] = []
    for path, identity in dev_images(args.shared, args.limit):
        rgb = load_image(path)
        face = _primary(detector.detect(rgb), rgb.shape)
        if face is None:
            print(f"no face: {path}", file=sys.stderr)
            continue
        item = DevImage(path, identity, rgb, face)
        rng = np.random.default_rng([0, zlib.crc32(path.name.encode())])
        item.masked_rgb = random_overlay(rgb, face, templates, rng)
        item.masked_face = _primary(detector.detect(item.masked_rgb), rgb.shape)
        images.append(item)
    ids = [im.identity for im in images]
    print(f"{len(images)} development images, {len(set(ids))} identities", file=sys.stderr)
    results: dict = {"images": len(images), "identities": len(set(ids)), "unmasked": [], "masked": []}

    def pipeline(**options) -> FacePipeline:
        return FacePipeline(device="cpu", mask_classifier=_NoMaskClassifier(), **options)

    def vectors(p: FacePipeline, crops_per_image: list[list[list[np.ndarray]]]) -> np.ndarray:
        """(n, k, d): per image, k templates, each the normalised mean over its jittered crops."""
        flat = [c for templates_ in crops_per_image for crops in templates_ for c in crops]
        embedded = p.embedder.embed(flat, flip=p.flip)
        out, offset = [], 0
        for templates_ in crops_per_image:
            row = []
            for crops in templates_:
                group = embedded[offset : offset + len(crops)]
                offset += len(crops)
                mean = group.mean(axis=0)
                row.append(mean / np.linalg.norm(mean))
            out.append(row)
        return np.asarray(out, dtype=np.float32)

    jitters = [int(v) for v in args.jitters.split(",")]
    started = time.perf_counter()
    if args.experiment in ("unmasked", "both"):
        for mode, flip, jitter in itertools.product(("five_point", "mesh", "eyes"), (False, True), jitters):
            if jitter and not flip:
                continue
            p = pipeline(align_mode=mode, flip=flip, jitter=jitter)
            g = vectors(p, [[p._crops(im.rgb, im.face, VARIANT_FULL)] for im in images])
            row = {"align_mode": mode, "flip": flip, "jitter": jitter, **score(*all_pair_scores(g, g, ids))}
            results["unmasked"].append(row)
            print(json.dumps(row), file=sys.stderr)

    if args.experiment in ("masked", "both"):
        rows = [int(v) for v in args.rows.split(",")]
        usable = [im.masked_face is not None for im in images]
        print(f"masked probes with a face: {sum(usable)} of {len(images)}", file=sys.stderr)
        for mode in ("five_point", "eyes", "mesh"):
            p = pipeline(align_mode="five_point", masked_align_mode=mode)
            keep = [im for im, ok in zip(images, usable, strict=True) if ok]
            kept_ids = [im.identity for im in keep]
            # plain: masked probe's full-face vector against the full-face template
            if mode == "five_point":
                g = vectors(p, [[p._crops(im.rgb, im.face, VARIANT_FULL)] for im in keep])
                q = vectors(p, [[p._crops(im.masked_rgb, im.masked_face, VARIANT_FULL)] for im in keep])
                row = {"strategy": STRATEGY_PLAIN, **score(*all_pair_scores(g, q, kept_ids))}
                results["masked"].append(row)
                print(json.dumps(row), file=sys.stderr)
            for renders in (1, 3):
                p.synthetic_masks_per_photo = renders
                gallery = []
                for im in keep:
                    crops = list(p._enrollment_crops(im.rgb, _Analysed(im.face)))
                    gallery.append([c for variant, c in crops if variant == VARIANT_SYNTHETIC])
                g = vectors(p, gallery)
                q = vectors(p, [[p._crops(im.masked_rgb, im.masked_face, VARIANT_SYNTHETIC)] for im in keep])
                row = {"strategy": STRATEGY_SYNTHETIC, "masked_align_mode": mode, "renders": renders}
                row.update(score(*all_pair_scores(g, q, kept_ids)))
                results["masked"].append(row)
                print(json.dumps(row), file=sys.stderr)
            for start_row in rows:
                p.cutout_start_row = start_row
                g = vectors(
                    p, [[[p._cutout(c) for c in p._crops(im.rgb, im.face, VARIANT_CUTOUT)]] for im in keep]
                )
                q = vectors(
                    p,
                    [
                        [[p._cutout(c) for c in p._crops(im.masked_rgb, im.masked_face, VARIANT_CUTOUT)]]
                        for im in keep
                    ],
                )
                row = {"strategy": STRATEGY_CUTOUT, "masked_align_mode": mode, "start_row": start_row}
                row.update(score(*all_pair_scores(g, q, kept_ids)))
                results["masked"].append(row)
                print(json.dumps(row), file=sys.stderr)
    results["seconds"] = round(time.perf_counter() - started, 1)
    print_and_save(results, args.json)
    return 0


def _primary(faces: list, shape: tuple[int, ...]):
    """The face the pipeline takes: the most pixels inside the frame."""
    from inference.pipeline import visible_area

    return max(faces, key=lambda f: visible_area(f, shape)) if faces else None


@dataclass
class _Analysed:
    """The bits of a FaceResult that `_enrollment_crops` reads, for an unmasked photo."""

    face: object
    masked: bool = False


if __name__ == "__main__":
    raise SystemExit(main())
