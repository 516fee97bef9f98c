"""Train or fine-tune a face embedder: one process, or one per GPU under torchrun.

    python -m toolkit.training.train --config toolkit/training/configs/lfw_mask_tune.py
    torchrun --nproc_per_node 8 -m toolkit.training.train --config toolkit/training/configs/ms1mv3_r50.py
    python -m toolkit.training.train --config ... --resume        # from OUT/last.pt, exactly

Writes into the config's `out` folder: metrics.csv (every step), validation.csv (held-out
verification, unmasked and masked), last.pt (every checkpoint_every steps), best.pt (the best
validation score: by default the all-pairs TAR at FAR 1e-3, `select_on`), config.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from toolkit.training.augment import MaskAugment
from toolkit.training.backbones import create_backbone, frozen_teacher
from toolkit.training.config import TrainConfig, load_config
from toolkit.training.dataset import FaceArrays, TrainingSet
from toolkit.training.distributed import Context, init_distributed, shutdown
from toolkit.training.loop import Trainer, class_centres
from toolkit.training.losses import margin_from_config
from toolkit.training.partial_fc import PartialFC
from toolkit.training.sources import load_training_data


def network_fill(mean: tuple[float, float, float], bgr: bool) -> np.ndarray:
    """The Cutout colour: the network's input mean in RGB (zeros after normalisation)."""
    return np.array(mean[::-1] if bgr else mean, dtype=np.float64)


def build_trainer(config: TrainConfig, context: Context) -> Trainer:
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    backbone = create_backbone(config.backbone, weights=config.weights)
    data = load_training_data(config, backbone)
    needs_teacher = config.distill_weight > 0 or config.anchor_weight > 0 or config.init_centres
    teacher = frozen_teacher(backbone) if needs_teacher else None
    head = PartialFC(
        margin_from_config(config.margin, config.s, config.m1, config.m2, config.m3),
        backbone.dim,
        data.num_classes,
        sample_rate=config.sample_rate,
        label_smoothing=config.label_smoothing,
        seed=config.seed,
    )
    if config.init_centres:
        if not isinstance(data.train, FaceArrays):
            raise SystemExit("init_centres needs faces in memory (a face pack)")
        head.init_centres(
            class_centres(teacher, data.train.clean, data.train.labels, data.num_classes, context.device)
        )
    policy = MaskAugment(config.p_synthetic, config.p_cutout, config.p_flip, config.row_jitter)
    fill = network_fill(backbone.input.mean, backbone.input.channel_order == "bgr")
    train_set = TrainingSet(data.train, policy, fill, config.seed)
    if context.is_main:
        print(
            f"{len(train_set)} training faces, {data.num_classes} classes; validation: "
            f"{0 if data.validation is None else len(data.validation.same)} pairs of "
            f"{data.identities} held-out identities",
            file=sys.stderr,
        )
    return Trainer(config, context, backbone, head, train_set, data.validation, teacher=teacher)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=None, help="a config file (default: the base config)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--resume", nargs="?", const="last", default=None, help="checkpoint (default OUT/last.pt)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    context = init_distributed(args.device)
    try:
        trainer = build_trainer(config, context)
        if args.resume:
            trainer.resume(args.resume)
        if context.is_main:
            Path(config.out).mkdir(parents=True, exist_ok=True)
            (Path(config.out) / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        metrics = trainer.run()
        if context.is_main:
            print(
                json.dumps(
                    {"step": trainer.step, "best_score": trainer.best_score, "last": metrics}, indent=2
                )
            )
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
