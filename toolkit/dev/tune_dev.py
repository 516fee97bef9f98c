"""Choose the pipeline's matching settings on development data, never on the LFW test folds.

Development images: the LFW identities that no line of pairs.txt names (see
`make_dev_pairs`) and the portraits (identities.txt). Every image is compared with every
other (all genuine and impostor pairs, so that the few hundred images give thousands of
impostor pairs and a usable TAR at FAR=1e-3), once unmasked and once with the second image
of each pair wearing a MaskTheFace overlay (evaluation templates, never the product's
renderer). Each setting is scored by AUC, EER, TAR@FAR=1e-2 and 1e-3.

    python -m toolkit.dev.tune_dev [--embedder NAME] [--experiment unmasked|masked|both] [--json OUT]
    python -m toolkit.dev.tune_dev --embedder NAME --experiment thresholds \
        --json docs/benchmarks/dev_thresholds_NAME.json

The thresholds experiment gives a model's default thresholds and floors (the rule of the
registry's comments): per alignment mode that fits the model's template, unmasked and with the
probe masked (matched on the cutout variant, and on the synthetic one: rendered-mask templates
against the masked probe's own), it reports d', AUC, EER, TAR and threshold at FAR 1e-2 and
1e-3 and FAR/FRR on a grid around them. The proposal reads the rows the pipeline serves (the
spec's align mode unmasked, cutout with the pipeline's masked align mode): default = threshold
at FAR 1e-3 rounded up to 0.01, floor = threshold at FAR 1e-2 rounded down to 0.01.

The masked experiment treats every overlaid probe as masked (the mask classifier's
decision is measured separately by the evaluation CLI) and compares the strategies:
plain (full-face templates), synthetic (rendered-mask templates) and cutout (lower face
blanked from a row, both sides), for each alignment mode of the masked variants.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference.embedders.registry import DEFAULT_EMBEDDER
from inference.variants import (
    STRATEGY_CUTOUT,
    STRATEGY_PLAIN,
    STRATEGY_SYNTHETIC,
    VARIANT_CUTOUT,
    VARIANT_FULL,
    VARIANT_SYNTHETIC,
)
from inference.vector_kinds import KIND_CUTOUT, KIND_FULL, KIND_OWN, KIND_RENDERED
from toolkit.dev.make_dev_pairs import identity_images
from toolkit.eval_jobs import DEFAULT_CACHE, DEFAULT_TEMPLATES, CachingDetector, detector_fingerprint
from toolkit.json_output import print_and_save
from toolkit.metrics import auc, equal_error_rate, tar_at_far
from toolkit.pairs import read_pairs
from toolkit.paths import SHARED_DATA

if TYPE_CHECKING:  # the pipeline loads MediaPipe and torch: only when an experiment runs
    from inference.detect import DetectedFace
    from inference.embedders.spec import EmbedderSpec
    from inference.pipeline import FacePipeline
    from inference.templates import AlignTemplate


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


# -- the thresholds experiment ---------------------------------------------------------------
THRESHOLD_FARS = (0.01, 0.001)  # the floor's FAR, the default's FAR
GRID_MARGIN = 0.05  # the FAR/FRR grid reaches this far below the floor and above the default
# Masked conditions: (name, enrolled photo's vector kind, masked probe's vector kind).
MASKED_CONDITIONS = (
    (STRATEGY_CUTOUT, KIND_CUTOUT, KIND_CUTOUT),
    (STRATEGY_SYNTHETIC, KIND_RENDERED, KIND_OWN),
)


def separation(sims: np.ndarray, labels: np.ndarray) -> dict:
    """How far apart genuine and impostor scores lie, and the thresholds at the FARs of THRESHOLD_FARS."""
    genuine, impostor = sims[labels], sims[~labels]
    spread = math.sqrt((genuine.var() + impostor.var()) / 2)
    row: dict = {
        "dprime": round(float((genuine.mean() - impostor.mean()) / spread), 4),
        "auc": round(auc(sims, labels), 6),
        "eer": round(equal_error_rate(sims, labels), 5),
        "genuine_mean": round(float(genuine.mean()), 4),
        "impostor_mean": round(float(impostor.mean()), 4),
        "impostor_std": round(float(impostor.std()), 4),
        "n_genuine": int(genuine.size),
        "n_impostor": int(impostor.size),
    }
    for far in THRESHOLD_FARS:
        tar, threshold = tar_at_far(sims, labels, far)
        row[f"tar@{far:g}"] = round(tar, 4)
        row[f"threshold@{far:g}"] = round(float(threshold), 4)
    return row


def proposed_thresholds(sims: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The registry's rule: default where FAR reaches 1e-3 rounded up, floor at 1e-2 rounded down.

    From the exact thresholds (a 0.36000x rounded for display to 0.3600 must still go up to 0.37).
    """
    floor_far, default_far = THRESHOLD_FARS
    # round() first: 0.39 * 100 is 39.00000000000001 in floats, which ceil would take to 0.40.
    default = math.ceil(round(tar_at_far(sims, labels, default_far)[1] * 100, 8)) / 100
    floor = math.floor(round(tar_at_far(sims, labels, floor_far)[1] * 100, 8)) / 100
    return {"default": default, "floor": floor}


def registered_thresholds(spec: EmbedderSpec, *, masked: bool) -> dict[str, float]:
    """The spec's default and floor today, for the unmasked or the masked side."""
    side = "masked" if masked else "unmasked"
    return {
        "default": getattr(spec, f"default_threshold_{side}"),
        "floor": getattr(spec, f"floor_threshold_{side}"),
    }


def far_frr_grid(sims: np.ndarray, labels: np.ndarray, low: float, high: float) -> dict[str, dict]:
    """FAR and FRR (a pair is accepted at score >= threshold) on the 0.01 grid from low to high."""
    genuine, impostor = sims[labels], sims[~labels]
    grid = np.round(np.arange(round(low, 2), high + 0.005, 0.01), 2)
    return {
        f"{t:.2f}": {
            "far": round(float((impostor >= t).mean()), 6),
            "frr": round(float((genuine < t).mean()), 6),
        }
        for t in grid
    }


def applicable_align_modes(template: AlignTemplate, face: DetectedFace) -> list[str]:
    """The alignment modes that can warp a face onto this template ("yunet" needs ArcFace-style
    five points, "eyes"/"mesh" the template's derived mesh positions)."""
    from inference.align import ALIGN_MODES, alignment_matrix

    modes = []
    for mode in ALIGN_MODES:
        try:
            alignment_matrix(face, template, mode=mode)
        except ValueError:
            continue
        modes.append(mode)
    return modes


def threshold_rows(
    p: FacePipeline, images: list[DevImage], modes: list[str], *, progress: bool = True
) -> list[dict]:
    """All-pairs scores per align mode: unmasked, then each masked condition (probe wears the overlay)."""
    from tqdm import tqdm

    masked = [im for im in images if im.masked_face is not None]
    ids, masked_ids = [im.identity for im in images], [im.identity for im in masked]
    jobs = [
        (mode, condition) for mode in modes for condition in ("unmasked", *(c[0] for c in MASKED_CONDITIONS))
    ]
    kinds = {name: (enrolled, probed) for name, enrolled, probed in MASKED_CONDITIONS}
    rows = []
    for mode, condition in tqdm(jobs, file=sys.stderr, disable=not progress, unit="run"):
        p.align_mode = p.masked_align_mode = mode  # full-face crops read the first, masked kinds the second
        if condition == "unmasked":
            g = _vectors(
                p, [[p._kind_crops(im.rgb, _Analysed(im.face), KIND_FULL, copies=0)] for im in images]
            )
            sims, labels = all_pair_scores(g, g, ids)
        else:
            enrolled, probed = kinds[condition]
            g = _vectors(
                p, [[p._kind_crops(im.rgb, _Analysed(im.face), enrolled, copies=0)] for im in masked]
            )
            q = _vectors(
                p,
                [
                    [p._kind_crops(im.masked_rgb, _Analysed(im.masked_face, True), probed, copies=0)]
                    for im in masked
                ],
            )
            sims, labels = all_pair_scores(g, q, masked_ids)
        row = {"align_mode": mode, "probe": condition, **separation(sims, labels)}
        row["proposed"] = proposed_thresholds(sims, labels)
        row["registry"] = registered_thresholds(p.embedder.spec, masked=condition != "unmasked")
        # the grid spans both the proposal and what the registry holds today, to compare them
        pair = (row["proposed"], row["registry"])
        low = min(t["floor"] for t in pair) - GRID_MARGIN
        high = max(t["default"] for t in pair) + GRID_MARGIN
        row["far_frr"] = far_frr_grid(sims, labels, low, high)
        rows.append(row)
        tqdm.write(_table_line(row), file=sys.stderr)
    return rows


def _table_line(row: dict) -> str:
    return (
        f"{row['align_mode']:<10} {row['probe']:<9} d'={row['dprime']:6.3f} auc={row['auc']:.5f} "
        f"eer={row['eer']:.4f} tar@1e-2={row['tar@0.01']:.4f} thr@1e-2={row['threshold@0.01']:.4f} "
        f"tar@1e-3={row['tar@0.001']:.4f} thr@1e-3={row['threshold@0.001']:.4f} "
        f"-> default {row['proposed']['default']:.2f} floor {row['proposed']['floor']:.2f} "
        f"(registry {row['registry']['default']:.2f}/{row['registry']['floor']:.2f})"
    )


def threshold_experiment(
    p: FacePipeline, images: list[DevImage], modes: list[str] | None, *, progress: bool = True
) -> dict:
    """The report of `--experiment thresholds`: rows per mode and condition, and the proposal."""
    served = {"unmasked": p.align_mode, "masked": p.masked_align_mode}  # what the pipeline uses
    modes = modes or applicable_align_modes(p.embedder.spec.template, images[0].face)
    rows = threshold_rows(p, images, modes, progress=progress)
    proposal = {}
    for side, condition in (("unmasked", "unmasked"), ("masked", STRATEGY_CUTOUT)):
        row = next((r for r in rows if r["align_mode"] == served[side] and r["probe"] == condition), None)
        if row is not None:
            proposal[side] = {"align_mode": served[side], "probe": condition, **row["proposed"]}
    p.align_mode, p.masked_align_mode = served["unmasked"], served["masked"]
    return {
        "embedder": p.embedder.spec.name,
        "model_version": p.embedder.spec.version,
        "flip": p.flip,
        "served_align_modes": served,
        "masked_probes_with_face": sum(im.masked_face is not None for im in images),
        # faces the "yunet" rows align on YuNet's points (the others fall back to the mesh's)
        "faces_with_yunet_points": sum(im.face.points5 is not None for im in images),
        "rule": "default: threshold at FAR 1e-3 rounded up to 0.01; floor: at FAR 1e-2 rounded down",
        "proposed": proposal,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED_DATA)
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="a registered embedder")
    parser.add_argument("--experiment", choices=("unmasked", "masked", "both", "thresholds"), default="both")
    parser.add_argument(
        "--align-modes",
        default=None,
        help="thresholds: comma-separated modes (default: all that fit the template)",
    )
    parser.add_argument(
        "--eager",
        action="store_true",
        help="embed with the networks as loaded, without the pipeline's TorchScript copy "
        "(inference.cpu_compile; vectors agree within 1e-4)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
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
    results: dict = {"images": len(images), "identities": len(set(ids))}
    if args.experiment != "thresholds":
        results.update(unmasked=[], masked=[])

    def pipeline(**options) -> FacePipeline:
        return FacePipeline(
            args.embedder,
            device="cpu",
            mask_classifier=_NoMaskClassifier(),
            optimize=not args.eager,
            **options,
        )

    started = time.perf_counter()
    if args.experiment == "thresholds":
        modes = args.align_modes.split(",") if args.align_modes else None
        results.update(threshold_experiment(pipeline(), images, modes, progress=not args.quiet))
        results["seconds"] = round(time.perf_counter() - started, 1)
        print_and_save(results, args.json)
        return 0

    jitters = [int(v) for v in args.jitters.split(",")]
    if args.experiment in ("unmasked", "both"):
        for mode, flip, jitter in itertools.product(("five_point", "mesh", "eyes"), (False, True), jitters):
            if jitter and not flip:
                continue
            p = pipeline(align_mode=mode, flip=flip, jitter=jitter)
            g = _vectors(p, [[p._crops(im.rgb, im.face, VARIANT_FULL)] for im in images])
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
                g = _vectors(p, [[p._crops(im.rgb, im.face, VARIANT_FULL)] for im in keep])
                q = _vectors(p, [[p._crops(im.masked_rgb, im.masked_face, VARIANT_FULL)] for im in keep])
                row = {"strategy": STRATEGY_PLAIN, **score(*all_pair_scores(g, q, kept_ids))}
                results["masked"].append(row)
                print(json.dumps(row), file=sys.stderr)
            for renders in (1, 3):
                p.synthetic_masks_per_photo = renders
                gallery = []
                for im in keep:
                    crops = list(p._enrollment_crops(im.rgb, _Analysed(im.face)))
                    gallery.append([c for variant, c in crops if variant == VARIANT_SYNTHETIC])
                g = _vectors(p, gallery)
                q = _vectors(p, [[p._crops(im.masked_rgb, im.masked_face, VARIANT_SYNTHETIC)] for im in keep])
                row = {"strategy": STRATEGY_SYNTHETIC, "masked_align_mode": mode, "renders": renders}
                row.update(score(*all_pair_scores(g, q, kept_ids)))
                results["masked"].append(row)
                print(json.dumps(row), file=sys.stderr)
            for start_row in rows:
                p.cutout_start_row = start_row
                g = _vectors(
                    p, [[[p._cutout(c) for c in p._crops(im.rgb, im.face, VARIANT_CUTOUT)]] for im in keep]
                )
                q = _vectors(
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


def _vectors(p: FacePipeline, crops_per_image: list[list[list[np.ndarray]]]) -> np.ndarray:
    """(n, k, d): per image, k templates, each the normalised mean over its crops (jitter, renders)."""
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


def _primary(faces: list, shape: tuple[int, ...]):
    """The face the pipeline takes: the most pixels inside the frame."""
    from inference.pipeline import visible_area

    return max(faces, key=lambda f: visible_area(f, shape)) if faces else None


@dataclass
class _Analysed:
    """The bits of a FaceResult that `_enrollment_crops` and `_kind_crops` read."""

    face: object
    masked: bool = False


if __name__ == "__main__":
    raise SystemExit(main())
