"""The training loop of the mask classifier, prediction on chips, and the checkpoint it writes."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from inference.align import DLIB_150
from inference.mask.classifier import CHECKPOINT_FORMAT, preprocess
from inference.mask.network import MaskNet
from toolkit.mask_training.augment import augment, synthetic_pool
from toolkit.mask_training.config import VERSION, TrainConfig
from toolkit.mask_training.data import FaceSet


def predict_chips(model: MaskNet, chips: np.ndarray, size: int, batch_size: int = 128) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(chips), batch_size):
            out.append(torch.sigmoid(model(preprocess(chips[start : start + batch_size], size))).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def train_model(
    config: TrainConfig, faces: FaceSet, train_idx: np.ndarray, templates: list
) -> tuple[MaskNet, list[dict]]:
    """Train on the faces at train_idx plus synthetic positives; (model, per-epoch history).

    From scratch, or from the weights at config.init (fine-tuning: the same schedule, usually a
    lower config.lr and fewer epochs).

    AdamW, one warm-up epoch then cosine decay, the last epoch's weights kept. Deterministic for
    config.seed: numpy Generators and `torch.manual_seed` drive every random choice.
    """
    epochs, seed, batch_size, lr = config.epochs, config.seed, config.batch_size, config.lr
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = MaskNet(config.network)
    if config.init is not None:
        checkpoint = torch.load(config.init, map_location="cpu", weights_only=True)
        if checkpoint.get("format") != CHECKPOINT_FORMAT or checkpoint["config"] != model.config.to_dict():
            raise SystemExit(f"{config.init} is not a mask classifier checkpoint of this network")
        model.load_state_dict({k: v.float() for k, v in checkpoint["state_dict"].items()})
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)
    negatives = train_idx[faces.labels[train_idx] == 0]
    n_synthetic = int(round(config.synthetic_fraction * len(negatives)))
    steps_per_epoch = math.ceil((len(train_idx) + n_synthetic) / batch_size)
    total_steps = epochs * steps_per_epoch
    warmup = steps_per_epoch

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    pool = synthetic_pool(faces, negatives, templates, rng)

    history = []
    step = 0
    for epoch in range(epochs):
        started = time.perf_counter()
        synthetic = [pool[i] for i in rng.choice(len(pool), size=min(n_synthetic, len(pool)), replace=False)]
        chips = [faces.chips[i] for i in train_idx] + synthetic
        targets = np.concatenate([faces.labels[train_idx], np.ones(len(synthetic), dtype=np.int64)])
        order = rng.permutation(len(chips))
        model.train()
        losses, correct = [], 0
        bar = tqdm(
            range(0, len(order), batch_size),
            desc=f"epoch {epoch + 1}/{epochs}",
            unit="batch",
            file=sys.stderr,
        )
        for start in bar:
            batch_ids = order[start : start + batch_size]
            batch = preprocess(
                [
                    augment(chips[i], rng, low_res=config.low_res, low_res_min=config.low_res_min)
                    for i in batch_ids
                ],
                config.network.input_size,
            )
            target = torch.from_numpy(targets[batch_ids]).float()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            logits = model(batch)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(loss.item())
            correct += int(((logits > 0).float() == target).sum())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        history.append(
            {
                "epoch": epoch + 1,
                "loss": round(float(np.mean(losses)), 5),
                "train_accuracy": round(correct / len(order), 5),
                "synthetic": len(synthetic),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        print(json.dumps(history[-1]), file=sys.stderr)
    model.eval()
    return model, history


def save_checkpoint(model: MaskNet, path: Path, extra: dict, version: str = VERSION) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "version": version,
        "config": model.config.to_dict(),
        # float16 halves the file; the loader computes in float32 (accuracy unchanged, checked in the report).
        "state_dict": {
            k: v.detach().half() if v.is_floating_point() else v for k, v in model.state_dict().items()
        },
        "input": {"template": DLIB_150.name, "chip_size": 150, "network_size": model.config.input_size},
        **extra,
    }
    torch.save(checkpoint, path)
