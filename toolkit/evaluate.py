"""Face verification accuracy on pairs in the LFW View-2 format, through the whole pipeline.

    python -m toolkit.evaluate --root ../shared/data/lfw/images --pairs ../shared/data/lfw/pairs.txt \
        [--synthetic-mask none|first|second|both|all] [--json OUT] [--roc PNG] [--workers N]

The first image of a pair is enrolled (the templates the product stores for it, masked photos
allowed so that no pair is dropped for policy reasons) and the second is the probe, scored as a
verification scores it (inference.comparison: full face against full face when neither side is
masked, mask-aware on both sides when either is, both when a mask decision is unsure, the
stricter deciding with the model's default thresholds). `--synthetic-mask second` first puts a
MaskTheFace mask (the overlay templates in ../shared/data/mask-overlays: evaluation data, not
the procedural renderer enrollment uses) on the second image of every pair; `first` on the
first, `both` on both; `all` reports the four modes in one run (`modes` in the JSON; a --json
path holding `{mode}` also gets one file per mode, each like a single-mode run). Every image
(and its masked version) is detected and embedded once, all kinds of vector at once, whatever
the modes and strategies. Each pair is scored with each mask strategy (`synthetic`, `cutout`,
and `plain`: full-face vectors in both spaces); the top-level numbers are those of
`--mask-strategy`, all of them are under "strategies". Pairs lost to detection (`no_face`) are
counted apart from `unscored_pairs` (a face on both sides and still no score: none by design).

Accuracy is the mean over the folds of the accuracy with the threshold chosen on the other
folds; pairs where a face was not found count as errors. Standard output gets the JSON
document (also written to --json), standard error a summary. Per-image results are cached
(--cache-dir, keyed by the file, the settings and the code of the pipeline) so that a rerun
with other settings only redoes what changed; `--workers N` runs N processes, each loading
its own models after the start and using --threads torch threads.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from inference.comparison import Decision, EnrolledPhoto, ProbeSide, Thresholds, decide
from inference.embedders import DEFAULT_EMBEDDER
from inference.variants import SPACE_MASKED, STRATEGY_CUTOUT
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

SYNTHETIC_MASK_CHOICES = ("none", "first", "second", "both")
ALL_MODES = "all"
# Which side of a pair wears the MaskTheFace overlay: (first, second).
OVERLAY_SIDES = {
    "none": (False, False),
    "first": (True, False),
    "second": (False, True),
    "both": (True, True),
}


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
    pairs: list[Pair], root: Path, synthetic_mask: str, peer: bool = False, probe_role: str = "enroll"
) -> list[tuple[ImageJob, ImageJob]]:
    """(enrolled, probe) image jobs per pair. An image gives the same vectors on either side (role
    "enroll") unless the probes' jitter differs from the enrollment's (`probe_role="probe"`); the
    peer treats both sides alike (role "image")."""
    enroll, probe = ("image", "image") if peer else ("enroll", probe_role)
    first_masked, second_masked = OVERLAY_SIDES[synthetic_mask]
    jobs = []
    for pair in pairs:
        first = ImageJob(str(image_path(root, *pair.first)), enroll, first_masked)
        second = ImageJob(str(image_path(root, *pair.second)), probe, second_masked)
        jobs.append((first, second))
    return jobs


def pair_decision(enrolled: Record, probe: Record, strategy: str, thresholds: Thresholds) -> Decision | None:
    """The product's decision on one pair (None when either image has no face, or no comparison
    could be made: `unscored`). The probe carries what the verify flow would ask the worker for."""
    from inference.pipeline import enrollment_kinds, probe_kinds

    enrolled_kinds, probe_vectors = enrolled.embeddings.get("kinds"), probe.embeddings.get("kinds")
    if not enrolled_kinds or not probe_vectors:
        return None
    # A run limited by --strategies computed only its kinds: the others' templates are absent.
    templates = {
        variant: enrolled_kinds[kind]
        for variant, kind in enrollment_kinds(masked=bool(enrolled.masked)).items()
        if kind in enrolled_kinds
    }
    photo = EnrolledPhoto(key=0, templates=templates, unsure=bool(enrolled.mask_unsure))
    masked, unsure = bool(probe.masked), bool(probe.mask_unsure)
    # The verify flow asks for the mask-aware vector when the person has a photo met only (or also)
    # in the mask-aware space.
    kinds = probe_kinds(strategy, masked=masked, unsure=unsure, mask_aware=not photo.has_full or photo.unsure)
    side = ProbeSide(
        vectors={variant: probe_vectors[kind] for variant, kind in kinds.items()},
        masked=masked,
        unsure=unsure,
    )
    return decide(side, [photo], strategy=strategy, thresholds=thresholds)


def pair_score(enrolled: Record, probe: Record, strategy: str, thresholds: Thresholds | None = None) -> float:
    """The verification score of one pair (NaN when either image has no face or it is unscored)."""
    if strategy == "peer":
        if not (enrolled.face and probe.face):
            return float("nan")
        a, b = enrolled.embeddings["peer"]["full"][0], probe.embeddings["peer"]["full"][0]
        return -float(np.linalg.norm(a - b))  # face_recognition's distance, negated: higher = more alike
    decision = pair_decision(enrolled, probe, strategy, thresholds or _DEFAULT_THRESHOLDS)
    return float("nan") if decision is None else decision.similarity


# Only the stricter choice inside the unsure band reads thresholds; the accuracy is k-fold.
_DEFAULT_THRESHOLDS = Thresholds(unmasked=0.94, masked=0.96)


def decision_thresholds(config: EvalConfig) -> Thresholds:
    """The model's default thresholds (the registry's), which a new organization starts from."""
    if config.pipeline == "peer":
        return _DEFAULT_THRESHOLDS
    from inference.embedders import embedder_spec

    spec = embedder_spec(config.embedder)
    return Thresholds(unmasked=spec.default_threshold_unmasked, masked=spec.default_threshold_masked)


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
    """The report of one mode (`synthetic_mask` in SYNTHETIC_MASK_CHOICES)."""
    return evaluate_modes(
        pairs,
        root,
        config,
        modes=(synthetic_mask,),
        workers=workers,
        cache=cache,
        progress=progress,
        scores_csv=scores_csv,
    )[synthetic_mask]


def evaluate_modes(
    pairs: list[Pair],
    root: Path,
    config: EvalConfig,
    *,
    modes: Sequence[str],
    workers: int,
    cache: ResultCache,
    progress: bool = True,
    scores_csv: Path | None = None,
) -> dict[str, dict]:
    """One report per mode, from one pass over the images: each image, plain or overlaid, is
    detected and embedded once whatever the modes (`scores_csv` gets a `{mode}` part with several)."""
    peer = config.pipeline == "peer"
    options = dict(config.options)
    probe_role = "probe" if options.get("jitter", 0) != options.get("enroll_jitter", 0) else "enroll"
    jobs_of = {mode: build_jobs(pairs, root, mode, peer=peer, probe_role=probe_role) for mode in modes}
    unique = list(dict.fromkeys(job for jobs in jobs_of.values() for pair in jobs for job in pair))
    started = time.perf_counter()
    records = run_jobs(unique, config, cache, workers, progress)
    wall = time.perf_counter() - started
    thresholds = decision_thresholds(config)
    reports = {}
    for mode in modes:
        csv_path = scores_csv
        if scores_csv is not None and len(modes) > 1:
            csv_path = scores_csv.with_name(f"{scores_csv.stem}_{mode}{scores_csv.suffix}")
        report = _mode_report(pairs, jobs_of[mode], records, config, thresholds, mode, csv_path)
        report["wall_seconds"] = round(wall, 1)
        reports[mode] = report
    return reports


def _mode_report(
    pairs: list[Pair],
    pair_jobs: list[tuple[ImageJob, ImageJob]],
    records: dict[ImageJob, Record],
    config: EvalConfig,
    thresholds: Thresholds,
    synthetic_mask: str,
    scores_csv: Path | None,
) -> dict:
    unique = list(dict.fromkeys(job for pair in pair_jobs for job in pair))
    labels = np.array([p.same for p in pairs], dtype=bool)
    folds = np.array([p.fold for p in pairs])
    strategies = ("peer",) if config.pipeline == "peer" else config.strategies
    no_face_first = np.array([not records[a].face for a, _ in pair_jobs])
    no_face_second = np.array([not records[b].face for _, b in pair_jobs])
    no_face = no_face_first | no_face_second
    probe_masked = np.array([bool(records[b].masked) for _, b in pair_jobs])
    report: dict = {}
    per_strategy, scores_of, spaces_of = {}, {}, {}
    for strategy in strategies:
        if strategy == "peer":
            scores = np.array([pair_score(records[a], records[b], strategy) for a, b in pair_jobs])
            masked_space = probe_masked
            unsure = np.zeros(len(pairs), dtype=bool)
        else:
            decisions = [pair_decision(records[a], records[b], strategy, thresholds) for a, b in pair_jobs]
            scores = np.array([np.nan if d is None else d.similarity for d in decisions])
            masked_space = np.array([d is not None and d.space == SPACE_MASKED for d in decisions])
            unsure = np.array([d is not None and len(d.comparisons) > 1 for d in decisions])
        scores_of[strategy], spaces_of[strategy] = scores, masked_space
        result = verification_report(scores, labels, folds)
        # The product picks the threshold by the comparison space (masked whenever either side
        # is): the same here, one threshold per space, chosen per fold on the other folds.
        by_state = kfold_accuracy(scores, labels, folds, groups=masked_space)
        result["accuracy_mask_state_thresholds"] = by_state["accuracy"]
        masked_scores = scores[masked_space]
        if strategy != "peer" and masked_space.any():
            result["masked_probe_pairs_tar_at_far"] = {
                far: float(np.mean(masked_scores[labels[masked_space]] >= t)) if t is not None else None
                for far, t in result["far_thresholds"].items()
            }
        result["unscored_pairs"] = int((np.isnan(scores) & ~no_face).sum())
        result["masked_space_pairs"] = int(masked_space.sum())
        result["unsure_pairs"] = int(unsure.sum())
        per_strategy[strategy] = result

    if scores_csv is not None:
        write_pair_scores(scores_csv, pairs, pair_jobs, records, scores_of)
    primary = per_strategy[strategies[0]]
    report.update({k: v for k, v in primary.items() if k != "roc"})
    report["mask_strategy"] = strategies[0]
    report["pairs"] = len(pairs)
    report["folds"] = int(len(set(folds.tolist())))
    # Pairs lost to detection (no face on a side): errors in the accuracy, reported apart.
    report["no_face"] = int(no_face.sum())
    report["no_face_rate"] = float(no_face.mean()) if len(pairs) else 0.0
    report["no_face_detail"] = {"first": int(no_face_first.sum()), "second": int(no_face_second.sum())}
    # A face on both sides yet no score: with mask-aware matching on both sides, none for mask
    # reasons (the plain baseline alone cannot compare an enrolled masked photo).
    report["unscored_pairs"] = primary["unscored_pairs"]
    report["masked_pairs"] = int(probe_masked.sum())
    report["enrolled_masked"] = int(sum(bool(records[a].masked) for a, _ in pair_jobs))
    report["decision_thresholds"] = {"unmasked": thresholds.unmasked, "masked": thresholds.masked}
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
                "threshold", "far_thresholds", "unscored_pairs", "masked_space_pairs", "unsure_pairs",
            )
        }
        | ({"masked_probe_pairs_tar_at_far": result["masked_probe_pairs_tar_at_far"]}
           if "masked_probe_pairs_tar_at_far" in result else {})
        for name, result in per_strategy.items()
    }  # fmt: skip
    # Stage timings by the side an image is on. The faceid pipeline's are the evaluation's (every
    # kind of vector of an image at once), not the product's probe, which embeds one or two.
    if config.pipeline == "peer":
        sides = {"image": [job for pair in pair_jobs for job in pair]}
    else:
        sides = {"enroll": [a for a, _ in pair_jobs], "probe": [b for _, b in pair_jobs]}
    report["stage_ms"] = {
        name: _stage_summary(records[j] for j in dict.fromkeys(jobs)) for name, jobs in sides.items()
    }
    report["images"] = len(unique)
    report["roc"] = {name: result["roc"] for name, result in per_strategy.items()}
    versions = {records[j].model_version for j in unique if records[j].model_version}
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
    parser.add_argument(
        "--synthetic-mask",
        choices=(*SYNTHETIC_MASK_CHOICES, ALL_MODES),
        default="none",
        help="which side of each pair wears a MaskTheFace mask; all: the four modes in one run",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write the JSON document here too; with --synthetic-mask all, a path holding {mode} "
        "gets one file (and ROC plot) per mode",
    )
    parser.add_argument("--roc", type=Path, default=None, help="ROC plot (PNG); default: beside --json")
    parser.add_argument("--scores", type=Path, default=None, help="per-pair scores (CSV), for error analysis")
    parser.add_argument(
        "--mask-strategy", choices=STRATEGIES, default=STRATEGY_CUTOUT,
        help="strategy of the top-level numbers (all three are computed and reported under "
        "'strategies'); default cutout, the one that won on the development data",
    )  # fmt: skip
    parser.add_argument(
        "--strategies",
        type=lambda text: tuple(name for name in text.split(",") if name),
        default=None,
        help="score only these strategies besides --mask-strategy (comma-separated): only the "
        "vectors they need are computed (cutout and plain skip the synthetic renders)",
    )
    parser.add_argument(
        "--pipeline",
        choices=("faceid", "peer"),
        default="faceid",
        help="peer: the face_recognition library's pipeline (dlib HOG + dlib descriptor)",
    )
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="default: the registry default")
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
    from inference.align import ALIGN_MODES

    group.add_argument(
        "--align-mode", default=None, choices=ALIGN_MODES, help="full-face crops; default: the embedder's own"
    )
    group.add_argument("--masked-align-mode", default=None, choices=ALIGN_MODES)
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
    if settings.get("align_mode") is None:  # the embedder's own (spec.input.align_mode)
        from inference.embedders import embedder_spec

        settings["align_mode"] = getattr(embedder_spec(config.embedder).input, "align_mode", "five_point")
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
    others = STRATEGIES if args.strategies is None else args.strategies
    strategies = (args.mask_strategy,) + tuple(s for s in others if s != args.mask_strategy)
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
    modes = SYNTHETIC_MASK_CHOICES if args.synthetic_mask == ALL_MODES else (args.synthetic_mask,)
    reports = evaluate_modes(
        pairs,
        args.root,
        config,
        modes=modes,
        workers=args.workers,
        cache=cache,
        progress=not args.quiet,
        scores_csv=args.scores,
    )
    header = {
        "command": "python -m toolkit.evaluate " + " ".join(sys.argv[1:] if argv is None else argv),
        "pairs_file": str(args.pairs),
        "root": str(args.root),
        "pipeline": args.pipeline,
        "settings": _effective_settings(config),
        "workers": args.workers,
        "threads_per_worker": args.threads,
        "device": args.device,
    }
    per_mode_files = args.json is not None and "{mode}" in str(args.json)
    for mode, report in reports.items():
        report = {**header, **report}
        json_path = Path(str(args.json).replace("{mode}", mode)) if per_mode_files else None
        if len(modes) == 1:
            json_path = args.json
        roc_path = args.roc if len(modes) == 1 else None
        roc_path = roc_path or (json_path.with_suffix(".png") if json_path else None)
        if roc_path is not None:
            title = f"{args.pairs.name}: {len(pairs)} pairs, synthetic mask: {mode}, {args.pipeline}"
            plot_roc(report, roc_path, title)
            report["roc_png"] = str(roc_path)
        reports[mode] = report
        if len(modes) > 1 and json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
        _print_summary(report)
    if len(modes) == 1:
        document = reports[modes[0]]
    else:
        modes_doc = {mode: {k: v for k, v in r.items() if k not in header} for mode, r in reports.items()}
        document = {**header, "synthetic_mask": ALL_MODES, "modes": modes_doc}
    print_and_save(document, None if per_mode_files else args.json, default=_json_default)
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
