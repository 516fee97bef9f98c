"""Face verification accuracy on pairs in the LFW View-2 format, through the whole pipeline.

    python -m toolkit.evaluate --root ../shared/data/lfw/images --pairs ../shared/data/lfw/pairs.txt \
        [--synthetic-mask none|second|both] [--json OUT] [--roc PNG] [--workers N]

The first image of a pair is enrolled (every template the product stores for it, masked photos
allowed so that no pair is dropped for policy reasons) and the second is the probe, scored as a
verification scores it (`match_similarity`: the probe's mask decision picks the templates).
`--synthetic-mask second` first puts a MaskTheFace mask (the overlay templates in
../shared/data/mask-overlays: evaluation data, not the procedural renderer enrollment uses)
on the second image of every pair; `both` on both. A masked probe is scored with each
mask strategy (`synthetic`, `cutout`, and `plain`: the masked face against the full-face
templates); the top-level numbers are those of `--mask-strategy`, all of them are under
"strategies".

Accuracy is the mean over the folds of the accuracy with the threshold chosen on the other
folds; pairs where a face was not found count as errors. Standard output gets the JSON
document (also written to --json), standard error a summary. Per-image results are cached
(--cache-dir, keyed by the file, the settings and the code of the pipeline) so that a rerun
with other settings only redoes what changed; `--workers N` runs N processes, each loading
its own models after the start and using --threads torch threads.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from inference.variants import STRATEGY_CUTOUT
from toolkit.eval_jobs import (
    DEFAULT_CACHE,
    DEFAULT_TEMPLATES,
    STRATEGIES,
    EvalConfig,
    ImageJob,
    Record,
    ResultCache,
    run_jobs,
)
from toolkit.json_output import print_and_save
from toolkit.metrics import kfold_accuracy, verification_report
from toolkit.pairs import Pair, image_path, read_pairs

SYNTHETIC_MASK_CHOICES = ("none", "second", "both")


def select_pairs(pairs: list[Pair], folds: Sequence[int] | None, limit: int | None) -> list[Pair]:
    """Pairs of the chosen folds (1-based), at most `limit` in all, spread evenly over folds and sides."""
    if folds:
        wanted = {f - 1 for f in folds}
        pairs = [p for p in pairs if p.fold in wanted]
    if limit is None:
        return pairs
    fold_ids = sorted({p.fold for p in pairs})
    per_side = max(1, math.ceil(limit / (2 * max(len(fold_ids), 1))))
    kept, counts = [], {}
    for pair in pairs:
        key = (pair.fold, pair.same)
        if counts.get(key, 0) < per_side:
            counts[key] = counts.get(key, 0) + 1
            kept.append(pair)
    return kept


def build_jobs(
    pairs: list[Pair], root: Path, synthetic_mask: str, peer: bool = False
) -> list[tuple[ImageJob, ImageJob]]:
    """(enrolled, probe) image jobs per pair; the peer treats both sides alike (one job per image)."""
    enroll, probe = ("image", "image") if peer else ("enroll", "probe")
    jobs = []
    for pair in pairs:
        first = ImageJob(str(image_path(root, *pair.first)), enroll, synthetic_mask == "both")
        second = ImageJob(str(image_path(root, *pair.second)), probe, synthetic_mask in ("second", "both"))
        jobs.append((first, second))
    return jobs


def pair_score(enrolled: Record, probe: Record, strategy: str) -> float:
    """The verification score of one pair (NaN when either image has no face)."""
    if strategy == "peer":
        if not (enrolled.face and probe.face):
            return float("nan")
        a, b = enrolled.embeddings["peer"]["full"][0], probe.embeddings["peer"]["full"][0]
        return -float(np.linalg.norm(a - b))  # face_recognition's distance, negated: higher = more alike
    from inference.pipeline import FaceResult, match_similarity

    gallery = enrolled.embeddings.get("enroll")
    vectors = probe.embeddings.get(strategy)
    if not gallery or not vectors:
        return float("nan")
    result = FaceResult(refusal=None, embeddings={k: list(v) for k, v in vectors.items()})
    score = match_similarity(result, {k: list(v) for k, v in gallery.items()})
    return float("nan") if score is None else score


def _stage_summary(records: Iterable[Record]) -> dict[str, dict[str, float]]:
    stages: dict[str, list[float]] = {}
    for record in records:
        total = 0.0
        for stage, ms in record.timings_ms.items():
            stages.setdefault(stage, []).append(ms)
            total += ms
        stages.setdefault("total", []).append(total)
    return {
        stage: {"median": round(float(np.median(v)), 2), "mean": round(float(np.mean(v)), 2), "n": len(v)}
        for stage, v in stages.items()
    }


def evaluate(
    pairs: list[Pair],
    root: Path,
    config: EvalConfig,
    *,
    synthetic_mask: str,
    workers: int,
    cache: ResultCache,
    progress: bool = True,
    scores_csv: Path | None = None,
) -> dict:
    pair_jobs = build_jobs(pairs, root, synthetic_mask, peer=config.pipeline == "peer")
    unique = list(dict.fromkeys(job for pair in pair_jobs for job in pair))
    started = time.perf_counter()
    records = run_jobs(unique, config, cache, workers, progress)
    wall = time.perf_counter() - started

    labels = np.array([p.same for p in pairs], dtype=bool)
    folds = np.array([p.fold for p in pairs])
    strategies = ("peer",) if config.pipeline == "peer" else config.strategies
    no_face_first = np.array([not records[a].face for a, _ in pair_jobs])
    no_face_second = np.array([not records[b].face for _, b in pair_jobs])
    probe_masked = np.array([bool(records[b].masked) for _, b in pair_jobs])
    report: dict = {}
    per_strategy, scores_of = {}, {}
    for strategy in strategies:
        scores = np.array([pair_score(records[a], records[b], strategy) for a, b in pair_jobs])
        scores_of[strategy] = scores
        result = verification_report(scores, labels, folds)
        # The product picks the threshold by the probe's mask decision: the same, per fold.
        by_state = kfold_accuracy(scores, labels, folds, groups=probe_masked)
        result["accuracy_mask_state_thresholds"] = by_state["accuracy"]
        masked_scores = scores[probe_masked]
        if strategy != "peer" and probe_masked.any():
            result["masked_probe_pairs_tar_at_far"] = {
                far: float(np.mean(masked_scores[labels[probe_masked]] >= t)) if t is not None else None
                for far, t in result["far_thresholds"].items()
            }
        per_strategy[strategy] = result

    if scores_csv is not None:
        write_pair_scores(scores_csv, pairs, pair_jobs, records, scores_of)
    primary = per_strategy[strategies[0]]
    report.update({k: v for k, v in primary.items() if k != "roc"})
    report["mask_strategy"] = strategies[0]
    report["pairs"] = len(pairs)
    report["folds"] = int(len(set(folds.tolist())))
    report["no_face"] = int((no_face_first | no_face_second).sum())
    report["no_face_rate"] = float((no_face_first | no_face_second).mean()) if len(pairs) else 0.0
    report["no_face_detail"] = {"first": int(no_face_first.sum()), "second": int(no_face_second.sum())}
    # A face on both sides yet no score: the probe's variant has no enrolled template (an
    # enrollment photo called masked stores no full-face template, as in the product).
    unscored = np.isnan(scores_of[strategies[0]]) & ~no_face_first & ~no_face_second
    report["unscored_pairs"] = int(unscored.sum())
    report["masked_pairs"] = int(probe_masked.sum())
    report["enrolled_masked"] = int(sum(bool(records[a].masked) for a, _ in pair_jobs))
    report["synthetic_mask"] = synthetic_mask
    report["overlay_failed"] = int(sum(records[j].overlay == "no_face" for j in unique))
    report["enroll_quality_flagged"] = int(
        len({a for a, _ in pair_jobs if records[a].face and records[a].quality_reasons})
    )
    report["strategies"] = {
        name: {
            key: result[key]
            for key in (
                "accuracy", "accuracy_std", "accuracy_mask_state_thresholds", "auc", "eer", "tar_at_far",
                "threshold", "far_thresholds",
            )
        }
        | ({"masked_probe_pairs_tar_at_far": result["masked_probe_pairs_tar_at_far"]}
           if "masked_probe_pairs_tar_at_far" in result else {})
        for name, result in per_strategy.items()
    }  # fmt: skip
    computed = [records[j] for j in unique]
    roles = sorted({j.role for j in unique})
    report["stage_ms"] = {
        role: _stage_summary(r for j, r in zip(unique, computed, strict=True) if j.role == role)
        for role in roles
    }
    report["images"] = len(unique)
    report["wall_seconds"] = round(wall, 1)
    report["roc"] = {name: result["roc"] for name, result in per_strategy.items()}
    versions = {r.model_version for r in computed if r.model_version}
    report["model_version"] = sorted(versions)[0] if len(versions) == 1 else sorted(versions)
    return report


def write_pair_scores(
    path: Path,
    pairs: list[Pair],
    pair_jobs: list[tuple[ImageJob, ImageJob]],
    records: dict[ImageJob, Record],
    scores_of: dict[str, np.ndarray],
) -> None:
    """One CSV row per pair: its score under each strategy and both images' mask decisions."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        mask_columns = ["enrolled_mask_probability", "probe_mask_probability"]
        writer.writerow(["fold", "same", "enrolled", "probe", *scores_of, *mask_columns])
        for index, (pair, (first, second)) in enumerate(zip(pairs, pair_jobs, strict=True)):
            writer.writerow(
                [
                    pair.fold + 1,
                    int(pair.same),
                    Path(first.path).name,
                    Path(second.path).name,
                    *(f"{scores[index]:.6f}" for scores in scores_of.values()),
                    *(_probability_text(records[job].mask_probability) for job in (first, second)),
                ]
            )


def _probability_text(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def plot_roc(report: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for name, roc in report["roc"].items():
        far, tar = np.array(roc["far"]), np.array(roc["tar"])
        keep = far > 0
        stats = report["strategies"].get(name, report)
        label = (
            f"{name}: acc {100 * stats['accuracy']:.2f}%, AUC {stats['auc']:.4f}, "
            f"TAR@1e-3 {100 * stats['tar_at_far']['0.001']:.1f}%"
        )
        axis.plot(far[keep], tar[keep], label=label)
    axis.set_xscale("log")
    axis.set_xlim(1e-4, 1.0)
    axis.set_ylim(max(0.0, min(0.5, axis.get_ylim()[0])), 1.0)
    axis.set_xlabel("false accept rate")
    axis.set_ylabel("true accept rate")
    axis.set_title(title, fontsize=9)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="lower right", fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def _folds_arg(text: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"folds are comma-separated numbers from 1, got {text!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m toolkit.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="images: ROOT/<name>/<name>_<NNNN>.jpg")
    parser.add_argument("--pairs", type=Path, required=True, help="pairs file in the LFW View-2 format")
    parser.add_argument("--synthetic-mask", choices=SYNTHETIC_MASK_CHOICES, default="none")
    parser.add_argument("--json", type=Path, default=None, help="write the JSON document here too")
    parser.add_argument("--roc", type=Path, default=None, help="ROC plot (PNG); default: beside --json")
    parser.add_argument("--scores", type=Path, default=None, help="per-pair scores (CSV), for error analysis")
    parser.add_argument(
        "--mask-strategy", choices=STRATEGIES, default=STRATEGY_CUTOUT,
        help="strategy of the top-level numbers (all three are computed and reported under "
        "'strategies'); default cutout, the one that won on the development data",
    )  # fmt: skip
    parser.add_argument(
        "--pipeline",
        choices=("faceid", "peer"),
        default="faceid",
        help="peer: the face_recognition library's pipeline (dlib HOG + dlib descriptor)",
    )
    parser.add_argument("--embedder", default="dlib_resnet_v1")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--workers", type=int, default=1, help="processes (each loads its own models)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument(
        "--limit", type=int, default=None, help="at most N pairs, spread over folds and sides"
    )
    parser.add_argument("--folds", type=_folds_arg, default=None, help="only these folds, e.g. 1,2 (from 1)")
    parser.add_argument(
        "--mask-templates",
        type=Path,
        default=DEFAULT_TEMPLATES,
        help="MaskTheFace templates folder (with masks.cfg) for --synthetic-mask",
    )
    parser.add_argument("--overlay-seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    group = parser.add_argument_group("pipeline settings (defaults: the product's)")
    group.add_argument("--align-mode", default=None, choices=("five_point", "eyes", "mesh"))
    group.add_argument("--masked-align-mode", default=None, choices=("five_point", "eyes", "mesh"))
    group.add_argument("--jitter", type=int, default=None, help="perturbed copies averaged per probe vector")
    group.add_argument(
        "--enroll-jitter", type=int, default=None, help="perturbed copies averaged per enrolled template"
    )
    group.add_argument("--no-flip", action="store_true", help="do not average with the mirrored chip")
    group.add_argument("--cutout-start-row", type=int, default=None)
    group.add_argument("--synthetic-masks-per-photo", type=int, default=None)
    group.add_argument("--mask-threshold", type=float, default=None)
    return parser


def pipeline_options(args: argparse.Namespace) -> dict[str, object]:
    """Only the settings given on the command line; the rest are the pipeline's defaults."""
    options: dict[str, object] = {}
    for name in ("align_mode", "masked_align_mode", "jitter", "enroll_jitter", "cutout_start_row",
                 "synthetic_masks_per_photo", "mask_threshold"):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    if args.no_flip:
        options["flip"] = False
    return options


def _effective_settings(config: EvalConfig) -> dict:
    if config.pipeline == "peer":
        from toolkit import peer

        return {
            "pipeline": "face_recognition (dlib HOG, 5-point, dlib descriptor)",
            "upsample": peer.UPSAMPLE,
            "num_jitters": peer.NUM_JITTERS,
            "similarity": "negative euclidean distance",
        }
    import inspect

    from inference.pipeline import FacePipeline

    defaults = {
        name: p.default
        for name, p in inspect.signature(FacePipeline.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
        and name not in ("detector", "mask_classifier", "embedding_model")
    }
    settings = {**defaults, **dict(config.options), "embedder": config.embedder, "similarity": "cosine"}
    if settings.get("masked_align_mode") is None:
        settings["masked_align_mode"] = settings.get("align_mode")
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 1 or args.threads < 1:
        raise SystemExit("--workers and --threads must be at least 1")
    pairs, _ = read_pairs(args.pairs)
    pairs = select_pairs(pairs, args.folds, args.limit)
    if not pairs:
        raise SystemExit("no pairs selected")
    strategies = (args.mask_strategy,) + tuple(s for s in STRATEGIES if s != args.mask_strategy)
    config = EvalConfig(
        pipeline=args.pipeline,
        embedder=args.embedder,
        device=args.device,
        threads=args.threads,
        options=tuple(sorted(pipeline_options(args).items())),
        strategies=strategies,
        templates=str(args.mask_templates),
        overlay_seed=args.overlay_seed,
        cache_dir=None if args.no_cache else str(args.cache_dir),
    )
    if args.synthetic_mask != "none" and args.pipeline == "faceid":
        from toolkit.overlay import load_templates

        load_templates(args.mask_templates)  # fail now, not in every worker
    cache = ResultCache(None if args.no_cache else args.cache_dir, config)
    report = evaluate(
        pairs,
        args.root,
        config,
        synthetic_mask=args.synthetic_mask,
        workers=args.workers,
        cache=cache,
        progress=not args.quiet,
        scores_csv=args.scores,
    )
    report = {
        "command": "python -m toolkit.evaluate " + " ".join(sys.argv[1:] if argv is None else argv),
        "pairs_file": str(args.pairs),
        "root": str(args.root),
        "pipeline": args.pipeline,
        "settings": _effective_settings(config),
        "workers": args.workers,
        "threads_per_worker": args.threads,
        "device": args.device,
        **report,
    }
    roc_path = args.roc or (args.json.with_suffix(".png") if args.json else None)
    if roc_path is not None:
        title = (
            f"{args.pairs.name}: {len(pairs)} pairs, synthetic mask: {args.synthetic_mask}, {args.pipeline}"
        )
        plot_roc(report, roc_path, title)
        report["roc_png"] = str(roc_path)
    print_and_save(report, args.json, default=_json_default)
    _print_summary(report)
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _print_summary(report: dict) -> None:
    lines = [
        f"{report['pairs']} pairs in {report['folds']} folds, synthetic mask: {report['synthetic_mask']}, "
        f"no face: {report['no_face']} pairs, unscored: {report['unscored_pairs']}, "
        f"probes called masked: {report['masked_pairs']}, enrolled photos called masked: "
        f"{report['enrolled_masked']}",
    ]
    for name, stats in report["strategies"].items():
        lines.append(
            f"  {name:9s} accuracy {100 * stats['accuracy']:.2f}% +- {100 * stats['accuracy_std']:.2f}  "
            f"AUC {stats['auc']:.5f}  TAR@FAR=1e-2 {100 * stats['tar_at_far']['0.01']:.2f}%  "
            f"TAR@FAR=1e-3 {100 * stats['tar_at_far']['0.001']:.2f}%  threshold {stats['threshold']:.4f}"
        )
    role = "probe" if "probe" in report["stage_ms"] else "image"
    probe = report["stage_ms"][role]
    lines.append(f"  {role} ms (median): " + ", ".join(f"{k} {v['median']:.1f}" for k, v in probe.items()))
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
