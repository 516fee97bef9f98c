"""Choose a fusion model's member statistics and weights on development data, never on LFW View-2.

Development data (as toolkit/dev/tune_dev.py): the LFW identities that no line of View-2's
pairs.txt names, plus ../shared/data/portraits, every image against every other (thousands of
impostor pairs, so FAR 1e-3 is resolved); the development pairs (docs/benchmarks/dev_pairs.txt)
are scored as a check. Each image goes through the fusion embedder once (canvas crop, every
member's network) and each member's cosine is read from its segment of the vector, so the
statistics are those of the member as the fusion runs it.

Two members: weight w for the first, 1 - w for the second, w on a grid over [0, 1]. Folds are
groups of identities (deterministic): a pair is held out in fold k when its enrolled identity is
in group k, and the training pairs of fold k name no identity of group k. For each w and fold,
the members' impostor mean and standard deviation come from the training pairs, the fused score
of the held-out pairs is sum_i w_i (cos_i - mu_i) / sigma_i, and the accuracy threshold is chosen
on the training pairs. w is the grid point with the best pooled held-out TAR at FAR 1e-3
(ties: held-out accuracy, then nearest 0.5). The shipped statistics are those of all development
impostor pairs. Unmasked pairs decide; the masked (cutout, MaskTheFace overlay on the probe) curve
is reported beside, at the shares the unmasked choice gives.

    python -m toolkit.dev.fuse_weights --members sface,intel_0095 \
        --weights-out inference/weights/fusion_sface_intel.json \
        --json docs/benchmarks/fusion_weights_dev.json
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from inference.embedders.fusion_weights import FusionWeights, MemberCalibration
from inference.variants import VARIANT_CUTOUT, VARIANT_FULL
from toolkit.dev.tune_dev import dev_images
from toolkit.eval_jobs import DEFAULT_CACHE, DEFAULT_TEMPLATES, CachingDetector, detector_fingerprint
from toolkit.json_output import print_and_save
from toolkit.metrics import best_threshold, tar_at_far
from toolkit.overlay import load_templates, random_overlay
from toolkit.pairs import image_path, read_pairs
from toolkit.paths import BENCHMARKS, SHARED_DATA

FARS = (1e-3, 1e-2)


def identity_folds(ids: list[str], folds: int, seed: int = 0) -> dict[str, int]:
    """Identity -> fold, identities shuffled with a fixed seed and dealt round-robin."""
    unique = sorted(set(ids))
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[index]: position % folds for position, index in enumerate(order)}


def all_pairs(ids: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ordered pair (i enrolled, j probe), i != j: index arrays and same-identity labels."""
    n = len(ids)
    first, second = np.nonzero(~np.eye(n, dtype=bool))
    labels = np.array([ids[a] == ids[b] for a, b in zip(first, second, strict=True)])
    return first, second, labels


def fused(scores: np.ndarray, weights: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """sum_i w_i (cos_i - mu_i) / sigma_i; scores: pairs x members."""
    return ((scores - mu) / sigma) @ weights


def impostor_stats(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    impostors = scores[~labels]
    return impostors.mean(axis=0), impostors.std(axis=0, ddof=1)


def cross_validate(
    scores: np.ndarray,
    labels: np.ndarray,
    enrolled_fold: np.ndarray,
    probe_fold: np.ndarray,
    grid: np.ndarray,
    stats_scores: np.ndarray | None = None,
    stats_labels: np.ndarray | None = None,
    stats_folds: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[dict]:
    """Held-out TAR@FAR and accuracy of the fused score for each w on the grid.

    The statistics come from the training part of `stats_*` (default: the scored pairs themselves):
    the masked curve is scored with the unmasked statistics, as the product's one vector is.
    """
    if stats_scores is None:
        stats_scores, stats_labels, stats_folds = scores, labels, (enrolled_fold, probe_fold)
    folds = sorted(set(enrolled_fold.tolist()))
    rows = []
    for w in grid:
        weights = np.array([w, 1.0 - w])
        held_scores, held_labels, accuracies = [], [], []
        for k in folds:
            test = enrolled_fold == k
            train = (enrolled_fold != k) & (probe_fold != k)
            stats_train = (stats_folds[0] != k) & (stats_folds[1] != k)
            mu, sigma = impostor_stats(stats_scores[stats_train], stats_labels[stats_train])
            threshold, _ = best_threshold(fused(scores[train], weights, mu, sigma), labels[train])
            test_scores = fused(scores[test], weights, mu, sigma)
            accuracies.append(float(((test_scores > threshold) == labels[test]).mean()))
            held_scores.append(test_scores)
            held_labels.append(labels[test])
        pooled, pooled_labels = np.concatenate(held_scores), np.concatenate(held_labels)
        row = {"w": round(float(w), 4), "accuracy": round(float(np.mean(accuracies)), 5)}
        for far in FARS:
            row[f"tar@{far:g}"] = round(tar_at_far(pooled, pooled_labels, far)[0], 5)
        rows.append(row)
    return rows


def choose(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: (r["tar@0.001"], r["accuracy"], -abs(r["w"] - 0.5)))


def operating_points(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Threshold and TAR where FAR reaches each target, plus accuracy at the best threshold."""
    out = {}
    for far in FARS:
        tar, threshold = tar_at_far(scores, labels, far)
        out[f"{far:g}"] = {"threshold": round(float(threshold), 5), "tar": round(float(tar), 5)}
    threshold, accuracy = best_threshold(scores, labels)
    out["best_accuracy"] = {"threshold": round(float(threshold), 5), "accuracy": round(float(accuracy), 5)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fusion", default="fusion_sface_intel")
    parser.add_argument("--members", default="sface,intel_0095")
    parser.add_argument("--shared", type=Path, default=SHARED_DATA)
    parser.add_argument("--dev-pairs", type=Path, default=BENCHMARKS / "dev_pairs.txt")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--grid-step", type=float, default=0.05)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights-out", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--speed",
        type=int,
        default=0,
        help="instead: time N faces, batch 1, flip on, fusion beside each member",
    )
    args = parser.parse_args(argv)
    if args.speed:
        return speed(args, argv)

    import cv2
    import torch

    from inference.align import align_face
    from inference.decode import load_image
    from inference.detect import get_face_detector
    from inference.embedders import create_embedder
    from inference.embedders.fusion import build_fusion
    from inference.pipeline import FacePipeline, visible_area
    from toolkit.dev.tune_dev import _NoMaskClassifier

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    started = time.perf_counter()
    names = args.members.split(",")
    if len(names) != 2:
        parser.error("the weight grid is for two members")
    members = [create_embedder(name, device="cpu") for name in names]
    spec = _fusion_spec(args.fusion, members)
    _ensure_derived_positions(spec.template)
    equal = [1.0 / len(members)] * len(members)
    fusion = build_fusion(spec, members, equal)
    # Eager networks: the frozen copy of intel_0095 runs ~10x slower on this CPU at present
    # (coord note 23:21), and frozen and eager vectors agree within 1e-4.
    pipeline = FacePipeline(
        embedding_model=fusion,
        mask_classifier=_NoMaskClassifier(),
        device="cpu",
        align_mode=spec.input.align_mode,
        optimize=False,
    )

    detector = CachingDetector(get_face_detector(), DEFAULT_CACHE / "detect", detector_fingerprint())
    overlays = load_templates(DEFAULT_TEMPLATES)

    def primary(rgb: np.ndarray):
        faces = detector.detect(rgb)
        return max(faces, key=lambda f: visible_area(f, rgb.shape)) if faces else None

    def prepare(path: Path) -> dict | None:
        """The canvas crops of one image: full face, cutout, and cutout under a MaskTheFace overlay."""
        rgb = load_image(path)
        face = primary(rgb)
        if face is None:
            print(f"no face: {path}", file=sys.stderr)
            return None
        rng = np.random.default_rng([0, zlib.crc32(path.name.encode())])
        masked_rgb = random_overlay(rgb, face, overlays, rng)
        masked_face = primary(masked_rgb)
        source = (masked_rgb, masked_face) if masked_face is not None else (rgb, face)
        return {
            "full": pipeline._crops(rgb, face, VARIANT_FULL)[0],
            "cut": pipeline._cutout(pipeline._crops(rgb, face, VARIANT_CUTOUT)[0]),
            "cut_masked": pipeline._cutout(pipeline._crops(*source, VARIANT_CUTOUT)[0]),
            "masked_ok": masked_face is not None,
            # The warp check: each member on its own direct alignment (same landmark fit).
            "direct": [align_face(rgb, face, m.spec.template, mode=spec.input.align_mode) for m in members],
        }

    # -- every image once: the all-vs-all development set and the development pairs ---------
    dev = [(Path(path), identity) for path, identity in dev_images(args.shared, args.limit)]
    pairs, _ = read_pairs(args.dev_pairs)
    lfw = args.shared / "lfw" / "images"
    pair_paths = [(image_path(lfw, *pair.first), image_path(lfw, *pair.second), pair.same) for pair in pairs]
    prepared: dict[Path, dict | None] = {}
    for path in [p for p, _ in dev] + [p for a, b, _ in pair_paths for p in (a, b)]:
        if path not in prepared:
            prepared[path] = prepare(path)
    order = [path for path, found in prepared.items() if found is not None]
    row = {path: index for index, path in enumerate(order)}
    vectors = {
        kind: fusion.member_vectors(pipeline.embedder.embed([prepared[p][kind] for p in order], flip=True))
        for kind in ("full", "cut", "cut_masked")
    }
    print(f"{len(order)} images embedded", file=sys.stderr)

    kept = [(path, identity) for path, identity in dev if prepared[path] is not None]
    items = [identity for _, identity in kept]
    rows = np.array([row[path] for path, _ in kept])
    masked_ok = [prepared[path]["masked_ok"] for path, _ in kept]
    print(f"{len(items)} development images, {len(set(items))} identities", file=sys.stderr)
    unmasked = [v[rows] @ v[rows].T for v in vectors["full"]]
    masked = [g[rows] @ q[rows].T for g, q in zip(vectors["cut"], vectors["cut_masked"], strict=True)]
    agreement = {}
    for index, member in enumerate(members):
        direct = member.embed([prepared[path]["direct"][index] for path, _ in kept], flip=True)
        cosines = (direct * vectors["full"][index][rows]).sum(axis=1)
        agreement[member.spec.name] = {
            "mean": round(float(cosines.mean()), 5),
            "min": round(float(cosines.min()), 5),
            "p05": round(float(np.quantile(cosines, 0.05)), 5),
        }

    first, second, labels = all_pairs(items)
    keep_masked = np.array(masked_ok)[second]
    fold_of = identity_folds(items, args.folds)
    enrolled_fold = np.array([fold_of[items[i]] for i in first])
    probe_fold = np.array([fold_of[items[j]] for j in second])
    s_unmasked = np.stack([m[first, second] for m in unmasked], axis=1)
    s_masked = np.stack([m[first, second] for m in masked], axis=1)[keep_masked]

    grid = np.round(np.arange(0.0, 1.0 + 1e-9, args.grid_step), 6)
    curve_unmasked = cross_validate(s_unmasked, labels, enrolled_fold, probe_fold, grid)
    curve_masked = cross_validate(
        s_masked,
        labels[keep_masked],
        enrolled_fold[keep_masked],
        probe_fold[keep_masked],
        grid,
        stats_scores=s_unmasked,
        stats_labels=labels,
        stats_folds=(enrolled_fold, probe_fold),
    )
    chosen = choose(curve_unmasked)
    best_masked = choose(curve_masked)
    w = chosen["w"]
    mu, sigma = impostor_stats(s_unmasked, labels)
    calibration = FusionWeights(
        tuple(
            MemberCalibration(m.spec.name, m.spec.version, round(float(a), 6), round(float(b), 6), weight)
            for m, a, b, weight in zip(members, mu, sigma, (w, round(1.0 - w, 6)), strict=True)
        )
    )
    shares = np.array(calibration.scales())
    # The fusion cosine sum a_i cos_i on every development pair, for the registry's thresholds.
    thresholds = {
        "unmasked_all_pairs": operating_points(s_unmasked @ shares, labels),
        "masked_cutout_all_pairs": operating_points(s_masked @ shares, labels[keep_masked]),
        "members_unmasked_all_pairs": {
            m.spec.name: operating_points(s_unmasked[:, i], labels) for i, m in enumerate(members)
        },
        "members_masked_cutout_all_pairs": {
            m.spec.name: operating_points(s_masked[:, i], labels[keep_masked]) for i, m in enumerate(members)
        },
    }
    thresholds.update(_dev_pairs_check(pair_paths, row, vectors, shares))

    selection = {
        "command": "python -m toolkit.dev.fuse_weights "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": "LFW identities absent from View-2 pairs.txt + portraits, all ordered pairs",
        "images": len(items),
        "identities": len(set(items)),
        "folds": args.folds,
        "criterion": "pooled held-out TAR at FAR 1e-3 (ties: accuracy, then nearest w = 0.5)",
        "chosen_w": w,
        "chosen_cv": chosen,
        "masked_best_w": best_masked["w"],
        "masked_cv_at_chosen_w": next(r for r in curve_masked if r["w"] == w),
        "masked_cv_at_best_w": best_masked,
    }
    calibration = FusionWeights(calibration.members, selection)
    report = {
        **selection,
        "members": [m.spec.name for m in members],
        "member_versions": [m.spec.version for m in members],
        "canvas": spec.template.name,
        "align_mode": spec.input.align_mode,
        "masked_align_mode": pipeline.masked_align_mode,
        "pairs": {
            "unmasked": int(labels.size),
            "unmasked_genuine": int(labels.sum()),
            "masked": int(keep_masked.sum()),
            "masked_genuine": int(labels[keep_masked].sum()),
        },
        "impostor_mean": [round(float(v), 6) for v in mu],
        "impostor_std": [round(float(v), 6) for v in sigma],
        "shares": [round(float(v), 6) for v in shares],
        "canvas_vs_direct_alignment_cosine": agreement,
        "cv_unmasked": curve_unmasked,
        "cv_masked_cutout": curve_masked,
        "operating_points": thresholds,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.weights_out is not None:
        import json

        args.weights_out.write_text(json.dumps(calibration.to_json(), indent=2) + "\n")
        print(f"wrote {args.weights_out}", file=sys.stderr)
    print_and_save(report, args.json)
    return 0


def _dev_pairs_check(pair_paths: list, row: dict, vectors: dict, shares: np.ndarray) -> dict:
    """The development pairs file: fusion operating points (unmasked; MaskTheFace second, cutout).

    `vectors` are per kind the members' unit vectors; the fusion cosine is recombined with the
    chosen shares (the embedding ran with provisional ones).
    """
    usable = [(row[a], row[b], same) for a, b, same in pair_paths if a in row and b in row]
    first = np.array([a for a, _, _ in usable])
    second = np.array([b for _, b, _ in usable])
    labels = np.array([same for _, _, same in usable])

    def cosine(gallery: list[np.ndarray], probe: list[np.ndarray]) -> np.ndarray:
        return sum(
            a * (g[first] * q[second]).sum(axis=1) for a, g, q in zip(shares, gallery, probe, strict=True)
        )

    return {
        "dev_pairs_unmasked": {
            "pairs": int(labels.size),
            **operating_points(cosine(vectors["full"], vectors["full"]), labels),
        },
        "dev_pairs_masked_second_cutout": {
            "pairs": int(labels.size),
            **operating_points(cosine(vectors["cut"], vectors["cut_masked"]), labels),
        },
    }


def speed(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Embed time per face at batch 1 with the flip, fusion and members alike, as the pipeline runs them.

    Each model is the pipeline's (frozen on the CPU) copy; the models take turns face by face, so
    a busy machine slows them alike. Alignment is left out: the fusion aligns once to the canvas,
    as a member aligns once to its own template.
    """
    import os

    import torch

    from inference.align import align_face
    from inference.decode import load_image
    from inference.detect import get_face_detector
    from inference.embedders import create_embedder
    from inference.pipeline import FacePipeline
    from toolkit.dev.tune_dev import _NoMaskClassifier

    torch.set_num_threads(args.threads)
    detector = get_face_detector()
    models = {name: create_embedder(name, device="cpu") for name in [args.fusion, *args.members.split(",")]}
    # As the pipeline runs them (its frozen TorchScript copy on the CPU) and the eager network:
    # the pipeline keeps a frozen copy whenever its output matches, whatever its speed.
    runners = {}
    for name, model in models.items():
        runners[f"{name} (pipeline)"] = (
            name,
            FacePipeline(
                embedding_model=model, mask_classifier=_NoMaskClassifier(), detector=detector
            ).embedder,
        )
        runners[f"{name} (eager)"] = (name, model)
    crops: dict[str, list[np.ndarray]] = {name: [] for name in models}
    for path, _ in dev_images(args.shared, None):
        rgb = load_image(path)
        face = detector.largest(rgb)
        if face is None:
            continue
        for name, model in models.items():
            crops[name].append(align_face(rgb, face, model.spec.template))
        if len(crops[args.fusion]) == args.speed:
            break
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {label: [] for label in runners}
    warmup = 3
    for index in range(-warmup, len(crops[args.fusion])):
        for label, (name, model) in runners.items():
            crop = crops[name][max(index, 0)]
            started = time.perf_counter()
            model.embed([crop], flip=True, batch_size=1)
            if index >= 0:
                times[label].append((time.perf_counter() - started) * 1000.0)
    report = {
        "command": "python -m toolkit.dev.fuse_weights "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "what": (
            "embed time per face, batch 1, flip on (2 forwards), CPU; pipeline: after its frozen_copy; "
            "eager: as create_embedder builds it (for the fusion: each member already in its fastest form)"
        ),
        "faces": len(crops[args.fusion]),
        "threads": args.threads,
        "torch": torch.__version__,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "ms_per_face": {
            name: {
                "median": round(float(np.median(t)), 2),
                "mean": round(float(np.mean(t)), 2),
                "p95": round(float(np.quantile(t, 0.95)), 2),
            }
            for name, t in times.items()
        },
    }
    for kind in ("pipeline", "eager"):
        members_total = sum(report["ms_per_face"][f"{n} ({kind})"]["median"] for n in args.members.split(","))
        fusion_time = report["ms_per_face"][f"{args.fusion} ({kind})"]["median"]
        report[f"fusion_over_members_sum_{kind}"] = round(fusion_time / members_total, 3)
    print_and_save(report, args.json)
    return 0


def _ensure_derived_positions(canvas) -> None:
    """The masked variants' mesh fit needs the canvas's mesh positions (inference.align).

    The canvas is ARCFACE_112 scaled in pixel-area coordinates, so its positions are arcface_112's
    mapped the same way; used here only until align.py lists the canvas itself.
    """
    from inference.align import ARCFACE_112, DERIVED_POSITIONS

    if canvas.name in DERIVED_POSITIONS:
        return
    k = canvas.size[0] / ARCFACE_112.size[0]
    DERIVED_POSITIONS[canvas.name] = {
        index: ((x + 0.5) * k - 0.5, (y + 0.5) * k - 0.5)
        for index, (x, y) in DERIVED_POSITIONS[ARCFACE_112.name].items()
    }


def _fusion_spec(name: str, members: list):
    """The registered fusion spec when there is one; otherwise a provisional one on the canvas."""
    from dataclasses import replace

    from inference.embedders import (
        EmbedderSpec,
        InputConfig,
        UnknownEmbedderError,
        WeightsSource,
        embedder_spec,
    )
    from inference.templates import FUSION_CANVAS_144

    dim = sum(m.spec.dim for m in members)
    try:
        return replace(embedder_spec(name), dim=dim)
    except UnknownEmbedderError:
        return EmbedderSpec(
            name=name,
            version=f"{name}-provisional",
            dim=dim,
            input=InputConfig(FUSION_CANVAS_144, mean=(0.0,) * 3, scale=(1.0,) * 3),
            default_threshold_unmasked=1.0,
            default_threshold_masked=1.0,
            floor_threshold_unmasked=1.0,
            floor_threshold_masked=1.0,
            weights=WeightsSource(file=f"{name}.json"),
            licence="-",
            factory="inference.embedders.fusion:create",
        )


if __name__ == "__main__":
    raise SystemExit(main())
