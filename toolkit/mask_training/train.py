"""Train (and measure) the mask classifier on the pipeline's own face chips.

    python -m toolkit.mask_training.train --data ../shared/data/mask-classification \\
        --out inference/weights/mask_classifier_v1.pt \\
        [--epochs N --seed S --lfw ../shared/data/lfw/images --report docs/benchmarks/mask_classifier.json]

Every image goes through the pipeline's detector and aligner; images without a face are skipped
and counted. Near-duplicate photos are kept on one side of a stratified held-out split
(`toolkit.mask_training.data`). Training adds masks to training faces without one (MaskTheFace
overlays from --templates and the product's procedural renderer) as extra positives; the held-out
split never gets any. With --lfw, the false-mask rate on LFW (no masks there) is measured too.
`--eval-only` measures the weights at --out without training. Deterministic for a given --seed.

This reads ../shared at training time only; the product loads the written weights.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from inference.mask.classifier import MaskClassifier
from toolkit.json_output import print_and_save
from toolkit.mask_training.config import DEFAULT_CACHE, TrainConfig
from toolkit.mask_training.data import load_mask_data
from toolkit.mask_training.loop import predict_chips, save_checkpoint, train_model
from toolkit.mask_training.report import draw_histogram, measure
from toolkit.overlay import load_templates


def parse_args(argv: Sequence[str] | None) -> TrainConfig:
    base = TrainConfig
    parser = argparse.ArgumentParser(
        prog="python -m toolkit.mask_training.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="folder with with_mask/ and without_mask/")
    parser.add_argument(
        "--out", type=Path, required=True, help="weights file to write (or read, with --eval-only)"
    )
    parser.add_argument("--epochs", type=int, default=base.epochs)
    parser.add_argument("--seed", type=int, default=base.seed)
    parser.add_argument("--test-fraction", type=float, default=base.test_fraction)
    parser.add_argument(
        "--templates", type=Path, default=None, help="MaskTheFace templates (default: DATA/../mask-overlays)"
    )
    parser.add_argument(
        "--synthetic-fraction",
        type=float,
        default=base.synthetic_fraction,
        help="synthetic positives per epoch, per training negative",
    )
    parser.add_argument(
        "--lfw", type=Path, default=None, help="LFW images folder: measure the false-mask rate there"
    )
    parser.add_argument(
        "--lfw-limit",
        type=int,
        default=base.lfw_limit,
        help="measure a deterministic sample of this many (0: all)",
    )
    parser.add_argument("--threshold", type=float, default=base.threshold)
    parser.add_argument("--report", type=Path, default=None, help="JSON report to write")
    parser.add_argument("--histogram", type=Path, default=None, help="PNG of the probability histograms")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where meshed chips are cached")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--threads", type=int, default=base.threads)
    parser.add_argument(
        "--eval-only", action="store_true", help="measure the weights at --out without training"
    )
    parser.add_argument("--version", default=base.version, help="the version name the checkpoint records")
    parser.add_argument(
        "--low-res", type=float, default=base.low_res, help="how often a training chip is made low resolution"
    )
    parser.add_argument("--lr", type=float, default=base.lr, help="peak learning rate")
    parser.add_argument("--init", type=Path, default=None, help="start from these weights (fine-tune)")
    parser.add_argument("--low-res-min", type=float, default=base.low_res_min, help="smallest shrink factor")
    args = parser.parse_args(argv)
    return TrainConfig(
        data=args.data.resolve(),
        out=args.out,
        epochs=args.epochs,
        seed=args.seed,
        test_fraction=args.test_fraction,
        templates=args.templates,
        synthetic_fraction=args.synthetic_fraction,
        threshold=args.threshold,
        lfw=args.lfw,
        lfw_limit=args.lfw_limit,
        report=args.report,
        histogram=args.histogram,
        cache_dir=None if args.no_cache else args.cache_dir,
        threads=args.threads,
        eval_only=args.eval_only,
        version=args.version,
        lr=args.lr,
        init=args.init,
        low_res=args.low_res,
        low_res_min=args.low_res_min,
    )


def main(argv: Sequence[str] | None = None) -> dict:
    config = parse_args(argv)
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    started = time.perf_counter()
    data = load_mask_data(config)

    history: list[dict] = []
    if not config.eval_only:
        templates = load_templates(config.template_dir) if config.template_dir.exists() else []
        model, history = train_model(config, data.faces, data.train, templates)
        heldout_fp32 = predict_chips(model, data.faces.chips[data.test], config.network.input_size)
        heldout_truth = data.faces.labels[data.test]
        command = " ".join(sys.argv[1:] if argv is None else argv)
        training = {
            "command": f"python -m toolkit.mask_training.train {command}",
            "seed": config.seed,
            "epochs": config.epochs,
            "train_faces": len(data.train),
            "heldout_faces": len(data.test),
            "heldout_accuracy_fp32": round(float(((heldout_fp32 >= 0.5) == heldout_truth).mean()), 5),
            "history": history,
        }
        save_checkpoint(model, config.out, {"training": training}, version=config.version)
    classifier = MaskClassifier.from_weights(config.out, device="cpu")

    report, histogram_series = measure(config, classifier, data)
    # What the checkpoint says about its own training run (command, seed, per-epoch history).
    report["training"] = dict(classifier.metadata.get("training", {}))
    if history:
        report["training"]["seconds_this_run"] = round(time.perf_counter() - started, 1)
    if config.histogram is not None:
        draw_histogram(config.histogram, histogram_series, config.threshold)
    print_and_save(report, config.report)
    return report


if __name__ == "__main__":
    main()
