"""Training throughput: images per second of a backbone with partial FC on synthetic data, and of
the shipped mask-tune step (intel_0095 student, frozen teacher, distillation); JSON for
docs/benchmarks/.

    python -m toolkit.training.throughput --json docs/benchmarks/train_throughput_cpu.json
    python -m toolkit.training.throughput --device cuda --batch-size 128 \
        --json docs/benchmarks/train_throughput_gpu.json

Synthetic data: what is measured is the network, the head and the optimiser, not decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from toolkit.training.augment import MaskAugment
from toolkit.training.backbones import create_backbone, frozen_teacher
from toolkit.training.config import TrainConfig
from toolkit.training.dataset import FaceArrays, TrainingSet
from toolkit.training.distributed import Context
from toolkit.training.loop import Trainer
from toolkit.training.losses import cosface
from toolkit.training.partial_fc import PartialFC


def measure(
    backbone_name: str,
    *,
    device: torch.device,
    batch_size: int,
    steps: int,
    warmup: int,
    classes: int,
    sample_rate: float,
    amp: bool,
    mask_tune: bool,
) -> dict:
    backbone = create_backbone(backbone_name)
    width, height = backbone.input.template.size
    n = batch_size * (steps + warmup)
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    masked = rng.integers(0, 256, (n, 1, height, width, 3), dtype=np.uint8) if mask_tune else None
    faces = FaceArrays(chips, masked, rng.integers(0, classes, n), np.tile([height * 2 // 3, height], (n, 1)))
    config = TrainConfig(
        backbone=backbone_name,
        batch_size=batch_size,
        max_steps=steps + warmup,
        amp=amp,
        sample_rate=sample_rate,
        p_synthetic=0.4 if mask_tune else 0.0,
        p_cutout=0.2,
        distill_weight=5.0 if mask_tune else 0.0,
        anchor_weight=5.0 if mask_tune else 0.0,
        lr=0.01,
        checkpoint_every=10**9,
        validate_every=10**9,
        out=tempfile.mkdtemp(prefix="throughput-"),
    )
    head = PartialFC(cosface(), backbone.dim, classes, sample_rate=sample_rate)
    policy = MaskAugment(config.p_synthetic, config.p_cutout, config.p_flip)
    trainer = Trainer(
        config,
        Context(0, 1, 0, device),
        backbone,
        head,
        TrainingSet(faces, policy, np.zeros(3), 0),
        None,
        teacher=frozen_teacher(backbone) if mask_tune else None,
    )
    loader = torch.utils.data.DataLoader(trainer.train_set, batch_sampler=trainer.sampler)
    timings = []
    for index, batch in enumerate(tqdm(loader, total=steps + warmup, desc=backbone_name, file=sys.stderr)):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        trainer.train_step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index >= warmup:
            timings.append(time.perf_counter() - started)
    seconds = float(np.median(timings))
    return {
        "backbone": backbone_name,
        "mask_tune": mask_tune,
        "batch_size": batch_size,
        "classes": classes,
        "sample_rate": sample_rate,
        "amp": amp and device.type == "cuda",
        "steps_timed": len(timings),
        "median_step_s": round(seconds, 4),
        "images_per_s": round(batch_size / seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--classes", type=int, default=93_431, help="MS1MV3's identities")
    parser.add_argument("--sample-rate", type=float, default=0.2)
    parser.add_argument("--backbone", default="iresnet50")
    parser.add_argument("--no-amp", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    common = {"device": device, "steps": args.steps, "warmup": args.warmup, "amp": not args.no_amp}
    batch = args.batch_size
    results = [
        measure(args.backbone, batch_size=batch, classes=args.classes, sample_rate=args.sample_rate,
                mask_tune=False, **common),
        measure("intel_0095", batch_size=batch, classes=1890, sample_rate=1.0, mask_tune=True, **common),
    ]  # fmt: skip
    report = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "torch": torch.__version__,
        "command": "python -m toolkit.training.throughput "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "results": results,
    }
    for row in results:
        print(f"{row['backbone']:<12} mask_tune={row['mask_tune']!s:<5} batch {row['batch_size']:>4}: "
              f"{row['images_per_s']:>8.1f} images/s")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
