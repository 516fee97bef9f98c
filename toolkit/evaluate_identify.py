"""Open-set identification (1:N) accuracy through the whole pipeline: the NIST FRVT 1:N measures.

    python -m toolkit.evaluate_identify --root DIR --gallery-size N|all --json OUT
        [--embedder NAME] [--png OUT] [--seed S] [--max-nonmated K] [--workers W]

DIR holds one folder per identity (LFW style: DIR/<name>/<photos>). Of the identities with at
least two photos, N are chosen with a fixed seed (a seeded permutation, so the gallery of 100
is part of the gallery of 1,000); each is enrolled with one photo (its first by name), as the
product enrolls (every template variant). Searches:
- mated: every other photo of an enrolled identity;
- non-mated: every photo of an identity that is not enrolled (at most --max-nonmated, a seeded
  sample, when given).
Every photo is embedded once with every vector either side could need (`FacePipeline.embed_kinds`,
through toolkit.eval_jobs); the enrolled templates are the ones enrollment stores
(`enrollment_kinds`), the probe's the ones identify asks for (`probe_kinds`, the default mask
strategy), and each (probe, person) pair is scored by the product's rule (inference.comparison:
the space follows both sides' mask decisions; `Gallery` applies it to every person at once).
Reported (FRVT 1:N): FNIR at FPIR = 1% and 0.1% (FNIR with
R = 1: the mate must be the first candidate and at or above the threshold; FPIR measured from
the non-mated searches' top scores, so no independence between comparisons is assumed), the
rank-1 hit rate, the DET curve (JSON and PNG), and, where the model ships a reference impostor
distribution, what the product's own identify threshold for this gallery size gives.

Every image's result is cached on disk (toolkit.eval_jobs: --cache-dir, keyed by file, settings
and the pipeline's code), so runs at N = 100, 1,000 and all identities share one embedding pass.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.comparison import Thresholds
from inference.embedders import DEFAULT_EMBEDDER, embedder_spec
from inference.openset import (
    det_curve,
    fnir_at,
    fnir_at_fpir,
    fpir_at,
    load_references,
    open_set_threshold,
    rank1_hit_rate,
    space_for,
)
from inference.variants import STRATEGY_CUTOUT, VARIANT_FULL, mask_aware_variant
from inference.vector_kinds import enrollment_kinds, probe_kinds
from toolkit.eval_jobs import DEFAULT_CACHE, EvalConfig, ImageJob, Record, ResultCache, run_jobs
from toolkit.json_output import print_and_save
from toolkit.mask_training.data import IMAGE_EXTENSIONS

FPIR_TARGETS = (0.01, 0.001)
DEFAULT_SEED = 9


@dataclass(frozen=True)
class Protocol:
    """Who is enrolled with which photo, and which photos search."""

    gallery: tuple[tuple[str, str], ...]  # (identity, enrolled photo path)
    mated: tuple[tuple[str, str], ...]  # (identity, probe photo path)
    nonmated: tuple[str, ...]  # probe photo paths of identities not enrolled
    eligible: int  # identities with at least two photos


def identity_photos(root: Path) -> dict[str, list[str]]:
    """Photo paths per identity folder, sorted by name (folders without photos left out)."""
    photos = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(
            str(f) for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
        )
        if files:
            photos[folder.name] = files
    return photos


def build_protocol(
    photos: dict[str, list[str]],
    gallery_size: int | None,
    *,
    seed: int = DEFAULT_SEED,
    max_nonmated: int | None = None,
) -> Protocol:
    """Enroll `gallery_size` (None: all) of the identities with two or more photos; see the module doc."""
    eligible = sorted(name for name, files in photos.items() if len(files) >= 2)
    if gallery_size is not None and not 1 <= gallery_size <= len(eligible):
        raise ValueError(
            f"--gallery-size must be between 1 and {len(eligible)} (identities with two or more photos)"
        )
    order = np.random.default_rng(seed).permutation(len(eligible))
    chosen = [eligible[i] for i in order[: gallery_size or len(eligible)]]
    enrolled = set(chosen)
    gallery = tuple((name, photos[name][0]) for name in chosen)
    mated = tuple((name, path) for name in chosen for path in photos[name][1:])
    nonmated = [path for name, files in sorted(photos.items()) if name not in enrolled for path in files]
    if max_nonmated is not None and len(nonmated) > max_nonmated:
        keep = np.sort(np.random.default_rng(seed + 1).choice(len(nonmated), max_nonmated, replace=False))
        nonmated = [nonmated[i] for i in keep]
    return Protocol(gallery, mated, tuple(nonmated), len(eligible))


class Gallery:
    """Enrolled templates as matrices (rows: persons), scored by the product's rule for each pair.

    inference.comparison decides a probe against a photo: in the full-face space when neither side
    is masked, in the mask-aware space (the strategy's variant) when either is, in both when a mask
    decision is unsure (the comparison with the smaller margin over its threshold decides). The
    score of a pair is the deciding comparison's similarity, as `toolkit.evaluate.pair_score`
    gives it; here for every enrolled person at once.
    """

    def __init__(
        self, names: Sequence[str], records: Sequence[Record], strategy: str, thresholds: Thresholds
    ) -> None:
        self.names = list(names)
        self.strategy = strategy
        self.thresholds = thresholds
        self.variant = mask_aware_variant(strategy)
        dims = {v.shape[1] for r in records for v in r.embeddings.get("kinds", {}).values()}
        dim = dims.pop() if dims else 1
        count = len(records)
        self.full = np.zeros((count, dim), np.float32)
        self.masked = np.zeros((count, dim), np.float32)
        self.present = np.zeros(count, bool)
        self.has_full = np.zeros(count, bool)
        self.unsure = np.zeros(count, bool)
        for index, record in enumerate(records):
            kinds = record.embeddings.get("kinds")
            if not kinds:
                continue
            templates = enrollment_kinds(masked=bool(record.masked))  # one photo: one template per variant
            self.present[index] = True
            self.unsure[index] = bool(record.mask_unsure)
            self.masked[index] = kinds[templates[self.variant]][0]
            if VARIANT_FULL in templates:
                self.has_full[index] = True
                self.full[index] = kinds[templates[VARIANT_FULL]][0]

    def scores(self, probe: Record) -> np.ndarray:
        """Each person's score against this probe (-inf where nothing compares)."""
        kinds = probe.embeddings.get("kinds")
        best = np.full(len(self.names), -np.inf)
        if not kinds:
            return best
        masked, unsure = bool(probe.masked), bool(probe.mask_unsure)
        wanted = probe_kinds(self.strategy, masked=masked, unsure=unsure, mask_aware=True)
        nan = np.full(len(self.names), np.nan)
        full = self.full @ kinds[wanted[VARIANT_FULL]][0] if VARIANT_FULL in wanted else nan
        mask_aware = self.masked @ kinds[wanted[self.variant]][0] if self.variant in wanted else nan
        both = self.has_full & (unsure | self.unsure)
        in_masked = ~self.has_full | (~both & masked)
        score = np.where(in_masked, mask_aware, full)
        stricter_full = (full - self.thresholds.unmasked) <= (mask_aware - self.thresholds.masked)
        score = np.where(both, np.where(stricter_full, full, mask_aware), score)
        return np.where(self.present & np.isfinite(score), score, -np.inf)


def search_results(
    protocol: Protocol, records: dict[ImageJob, Record], strategy: str, thresholds: Thresholds
) -> dict[str, np.ndarray]:
    """Mate scores, whether the mate ranked first, and non-mated top scores (NaN: no face)."""
    enrolled = [records[ImageJob(path, "enroll", False)] for _, path in protocol.gallery]
    gallery = Gallery([name for name, _ in protocol.gallery], enrolled, strategy, thresholds)
    row = {name: index for index, name in enumerate(gallery.names)}
    mate_scores, mate_rank1, mate_masked = [], [], []
    for name, path in protocol.mated:
        record = records[ImageJob(path, "probe", False)]
        scores = gallery.scores(record)
        mate = scores[row[name]]
        mate_scores.append(mate if np.isfinite(mate) else np.nan)
        # Rank 1: no other enrolled person scores higher (a tie goes to the mate, as a stable sort would).
        mate_rank1.append(bool(np.isfinite(mate) and mate >= scores.max()))
        mate_masked.append(bool(record.masked))
    top, top_masked = [], []
    for path in protocol.nonmated:
        record = records[ImageJob(path, "probe", False)]
        best = float(gallery.scores(record).max()) if len(gallery.names) else -np.inf
        top.append(best if np.isfinite(best) else np.nan)
        top_masked.append(bool(record.masked))
    return {
        "mate_scores": np.array(mate_scores, dtype=np.float64),
        "mate_rank1": np.array(mate_rank1, dtype=bool),
        "mate_masked": np.array(mate_masked, dtype=bool),
        "nonmated_top": np.array(top, dtype=np.float64),
        "nonmated_masked": np.array(top_masked, dtype=bool),
        "enrolled_without_face": ~gallery.present,
    }


def identification_report(results: dict[str, np.ndarray], gallery_size: int) -> dict:
    mates, rank1, top = results["mate_scores"], results["mate_rank1"], results["nonmated_top"]
    points = {f"{fpir:g}": fnir_at_fpir(mates, rank1, top, fpir) for fpir in FPIR_TARGETS}
    return {
        "gallery_size": gallery_size,
        "fnir_at_fpir": {key: round(point["fnir"], 6) for key, point in points.items()},
        "operating_points": {
            key: {
                "threshold": None if not np.isfinite(p["threshold"]) else round(float(p["threshold"]), 6),
                "fnir": round(p["fnir"], 6),
                "fpir_measured": round(p["fpir_measured"], 6),
                "measurable": p["measurable"],
            }
            for key, p in points.items()
        },
        "rank1_hit_rate": round(rank1_hit_rate(rank1), 6),
        "det": det_curve(mates, rank1, top),
    }


def product_thresholds(
    embedder: str, results: dict[str, np.ndarray], gallery_size: int, verify_threshold: float | None
) -> dict:
    """What the product's identify threshold for this gallery (unmasked probes) gives here."""
    references = load_references(embedder)
    reference = references.get(space_for(masked=False, variant=None))
    if reference is None:
        return {"available": False, "why": f"no reference impostor distribution for {embedder}"}
    unmasked_mates = ~results["mate_masked"]
    unmasked_top = ~results["nonmated_masked"]
    out = {"available": True, "space": "unmasked", "reference_comparisons": reference.n, "targets": {}}
    for fpir in FPIR_TARGETS:
        chosen = open_set_threshold(
            reference, target_fpir=fpir, gallery_size=gallery_size, verify_threshold=verify_threshold or -1.0
        )
        out["targets"][f"{fpir:g}"] = {
            "threshold": chosen.threshold,
            "basis": chosen.basis,
            "far_per_comparison": chosen.far_per_comparison,
            "fpir_measured": round(fpir_at(results["nonmated_top"][unmasked_top], chosen.threshold), 6),
            "fnir_measured": round(
                fnir_at(
                    results["mate_scores"][unmasked_mates],
                    results["mate_rank1"][unmasked_mates],
                    chosen.threshold,
                ),
                6,
            ),
        }
    return out


def plot_det(report: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    # A rate of zero has no place on log axes: drawn at half of one search (the floor of each rate).
    fpir_floor = 0.5 / max(report["probes"]["nonmated"], 1)
    fnir_floor = 0.5 / max(report["probes"]["mated"], 1)
    fpirs = [max(p["fpir"], fpir_floor) for p in report["det"]] or [fpir_floor]
    fnirs = [max(p["fnir"], fnir_floor) for p in report["det"]] or [fnir_floor]
    axis.plot(fpirs, fnirs, label=f"N = {report['gallery_size']}")
    for key, point in report["operating_points"].items():
        x, y = max(point["fpir_measured"], fpir_floor), max(point["fnir"], fnir_floor)
        axis.scatter([x], [y], s=14)
        axis.annotate(f"FPIR {key}: FNIR {100 * point['fnir']:.1f}%", (x, y), fontsize=7)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("FPIR (false-positive identification rate per non-mated search; 0 at half a search)")
    axis.set_ylabel("FNIR (false-negative identification rate, rank 1; 0 at half a search)")
    axis.set_title(title, fontsize=9)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def _gallery_size_arg(text: str) -> int | None:
    if text == "all":
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("--gallery-size must be a positive number or 'all'")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, required=True, help="one folder of photos per identity")
    parser.add_argument("--gallery-size", type=_gallery_size_arg, required=True, help="N, or 'all'")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--png", type=Path, default=None, help="DET plot (default: the JSON path, .png)")
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--max-nonmated", type=int, default=None, help="a seeded sample of non-mated searches"
    )
    parser.add_argument("--verify-threshold", type=float, default=None,
                        help="the 1:1 threshold the product's identify threshold may not go below "
                        "(default: the model's default unmasked threshold)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 1 or args.threads < 1:
        raise SystemExit("--workers and --threads must be at least 1")
    if not args.root.is_dir():
        raise SystemExit(f"--root {args.root} is not a folder")
    started = time.perf_counter()
    load_before = list(os.getloadavg())
    try:
        protocol = build_protocol(
            identity_photos(args.root), args.gallery_size, seed=args.seed, max_nonmated=args.max_nonmated
        )
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if not protocol.nonmated or not protocol.mated:
        raise SystemExit("need both mated searches (identities with 2+ photos) and non-mated ones")
    strategy = STRATEGY_CUTOUT
    config = EvalConfig(
        embedder=args.embedder,
        device=args.device,
        threads=args.threads,
        # The product's strategy and the plain baseline need only full-face and cutout vectors
        # (toolkit.evaluate --strategies cutout,plain shares these cached vectors).
        strategies=("cutout", "plain"),
        cache_dir=None if args.no_cache else str(args.cache_dir),
    )
    cache = ResultCache(None if args.no_cache else args.cache_dir, config)
    # Enrolled photos and probes are embedded alike ("kinds": every vector either side could need);
    # the roles differ only in their jitter, which is off by default.
    jobs = [ImageJob(path, "enroll", False) for _, path in protocol.gallery]
    jobs += [ImageJob(path, "probe", False) for _, path in protocol.mated]
    jobs += [ImageJob(path, "probe", False) for path in protocol.nonmated]
    records = run_jobs(list(dict.fromkeys(jobs)), config, cache, args.workers, progress=not args.quiet)
    spec = embedder_spec(args.embedder)
    # The 1:1 thresholds a new organization starts from: they pick the stricter comparison of an
    # unsure mask decision, and the product's identify threshold never goes below them.
    thresholds = Thresholds(unmasked=spec.default_threshold_unmasked, masked=spec.default_threshold_masked)
    if args.verify_threshold is not None:
        thresholds = Thresholds(unmasked=args.verify_threshold, masked=thresholds.masked)
    results = search_results(protocol, records, strategy, thresholds)
    gallery_size = len(protocol.gallery)
    report = identification_report(results, gallery_size)
    verify_threshold = thresholds.unmasked
    versions = sorted({r.model_version for r in records.values() if r.model_version})
    document = {
        "command": "python -m toolkit.evaluate_identify " + " ".join(sys.argv[1:] if argv is None else argv),
        "root": str(args.root),
        "embedder": args.embedder,
        "model_version": versions,
        "mask_strategy": strategy,
        "seed": args.seed,
        "gallery_size": gallery_size,
        "identities_with_two_or_more_photos": protocol.eligible,
        "probes": {
            "mated": len(protocol.mated),
            "nonmated": len(protocol.nonmated),
            "mated_without_face": int(np.isnan(results["mate_scores"]).sum()),
            "nonmated_without_face": int(np.isnan(results["nonmated_top"]).sum()),
            "mated_masked": int(results["mate_masked"].sum()),
            "nonmated_masked": int(results["nonmated_masked"].sum()),
            "enrolled_without_face": int(results["enrolled_without_face"].sum()),
        },
        "measures": "NIST FRVT 1:N: FNIR(N, R=1, T) of mated searches (a mate not found, or without a face, "
        "is a miss); FPIR(N, T) from the non-mated searches' top scores; rank-1 hit rate with T = 0",
        **report,
        "product_threshold": product_thresholds(args.embedder, results, gallery_size, verify_threshold),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_start": load_before,
            "load_average_end": list(os.getloadavg()),
            "workers": args.workers,
            "threads_per_worker": args.threads,
            "device": args.device,
            "seconds": round(time.perf_counter() - started, 1),
        },
    }
    png = args.png or args.json.with_suffix(".png")
    plot_det(
        document,
        png,
        f"{args.embedder}: N = {gallery_size}, {len(protocol.mated)} mated / "
        f"{len(protocol.nonmated)} non-mated searches ({args.root.name})",
    )
    document["det_png"] = str(png)
    print_and_save(document, args.json)
    fnir = document["fnir_at_fpir"]
    print(
        f"N={gallery_size}: FNIR {100 * fnir['0.01']:.2f}% at FPIR 1%, "
        f"{100 * fnir['0.001']:.2f}% at FPIR 0.1%, "
        f"rank-1 {100 * document['rank1_hit_rate']:.2f}%",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
