"""The training loop: margin softmax on partial FC, mask distillation, AMP, clipping, the
schedule, checkpoints with exact resume, and validation that picks the best checkpoint.

One Trainer per process; under torchrun the backbone is wrapped in DistributedDataParallel and
the head shards its class centres (toolkit.training.partial_fc).
"""

from __future__ import annotations

import csv
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from toolkit.training.backbones import Backbone
from toolkit.training.checkpoint import load_checkpoint, save_checkpoint
from toolkit.training.config import TrainConfig
from toolkit.training.dataset import KINDS, ResumableBatchSampler, TrainingSet, VerificationPairs
from toolkit.training.distributed import Context, barrier
from toolkit.training.losses import distillation_loss
from toolkit.training.partial_fc import PartialFC
from toolkit.training.schedule import lr_factor
from toolkit.training.validation import embed, validate

CLEAN = KINDS.index("clean")


def parameter_groups(config: TrainConfig, backbone: nn.Module, head: nn.Module) -> list[dict]:
    """Optimiser groups: the trainable backbone tensors (each its own lr when lr_by_weight_scale:
    lr x mean |w|, so a pretrained net's small tensors move as little, relatively, as its large
    ones), then the head's centres."""
    tensors = [p for p in backbone.parameters() if p.requires_grad]
    frozen = int(len(tensors) * config.freeze_fraction)
    for parameter in tensors[:frozen]:
        parameter.requires_grad_(False)
    groups = []
    if config.lr_by_weight_scale:
        for parameter in tensors[frozen:]:
            scale = float(parameter.detach().abs().mean()) or 1e-3
            groups.append({"params": [parameter], "lr": config.lr * scale})
    elif tensors[frozen:]:
        groups.append({"params": tensors[frozen:], "lr": config.lr})
    groups.append({"params": list(head.parameters()), "lr": config.head_lr or config.lr})
    for group in groups:
        group["base_lr"] = group["lr"]
    return groups


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        context: Context,
        backbone: Backbone,
        head: PartialFC,
        train_set: TrainingSet,
        val_pairs: VerificationPairs | None,
        *,
        teacher: Backbone | None = None,
    ) -> None:
        self.config, self.context = config, context
        self.device = context.device
        self.backbone = backbone
        self.backbone.module.to(self.device)
        self.teacher = teacher
        if teacher is not None:
            teacher.module.to(self.device)
        self.head = head.to(self.device)
        self.train_set, self.val_pairs = train_set, val_pairs
        self.sampler = ResumableBatchSampler(
            len(train_set),
            config.batch_size,
            seed=config.seed,
            rank=context.rank,
            world_size=context.world_size,
        )
        groups = parameter_groups(config, backbone.module, head)
        if config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                groups, momentum=config.momentum, weight_decay=config.weight_decay
            )
        else:
            self.optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        self.model: nn.Module = backbone.module
        if context.world_size > 1:
            self.model = DistributedDataParallel(
                backbone.module, device_ids=[context.local_rank] if self.device.type == "cuda" else None
            )
        self.amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.steps_per_epoch = len(self.sampler)
        epochs_steps = config.epochs * self.steps_per_epoch
        self.total_steps = min(config.max_steps, epochs_steps) if config.max_steps else epochs_steps
        self.step = 0
        self.best_score = -math.inf
        self.out = Path(config.out)

    # --- one step -----------------------------------------------------------------------------------

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()

    def _set_lr(self) -> float:
        factor = lr_factor(
            self.step, total=self.total_steps, warmup=self.config.warmup_steps, kind=self.config.schedule
        )
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        return factor * self.config.lr

    def train_step(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        chips, clean, labels, kinds = (t.to(self.device, non_blocking=True) for t in batch)
        lr = self._set_lr()
        with self._autocast():
            embeddings = self.model(self.backbone.preprocess(chips))
            loss_ce = self.head(embeddings.float(), labels)
            loss = loss_ce
            loss_distill = loss_anchor = torch.zeros((), device=self.device)
            if self.teacher is not None and (self.config.distill_weight or self.config.anchor_weight):
                with torch.no_grad():
                    target = self.teacher.module(self.teacher.preprocess(clean)).float()
                masked = kinds != CLEAN
                if masked.any() and self.config.distill_weight:
                    loss_distill = distillation_loss(embeddings[masked].float(), target[masked])
                if (~masked).any() and self.config.anchor_weight:
                    loss_anchor = distillation_loss(embeddings[~masked].float(), target[~masked])
                loss = (
                    loss + self.config.distill_weight * loss_distill + self.config.anchor_weight * loss_anchor
                )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if self.config.grad_clip:
            nn.utils.clip_grad_norm_(self.backbone.module.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return {
            "loss": float(loss.detach()),
            "ce": float(loss_ce.detach()),
            "distill": float(loss_distill.detach()),
            "anchor": float(loss_anchor.detach()),
            "lr": lr,
        }

    # --- state ----------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "best_score": self.best_score,
            "backbone": self.backbone.module.state_dict(),
            "backbone_name": self.backbone.name,
            "head": self.head.state_dict(),
            "head_extra": self.head.extra_state(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "config": self.config.to_dict(),
            "rank": self.context.rank,
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.best_score = state["best_score"]
        self.backbone.module.load_state_dict(state["backbone"])
        self.head.load_state_dict(state["head"])
        self.head.load_extra_state(state["head_extra"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])

    def _checkpoint_path(self, name: str) -> Path:
        # The head is sharded: each rank keeps its own file; rank 0's also holds the backbone.
        suffix = "" if self.context.world_size == 1 else f".rank{self.context.rank}"
        return self.out / f"{name}{suffix}.pt"

    def save(self, name: str, extra: dict | None = None) -> Path:
        path = self._checkpoint_path(name)
        save_checkpoint(path, {**self.state_dict(), **(extra or {})})
        return path

    def resume(self, name_or_path: str | Path = "last") -> None:
        path = Path(name_or_path)
        if not path.suffix:
            path = self._checkpoint_path(str(name_or_path))
        self.load_state_dict(load_checkpoint(path))

    # --- the run --------------------------------------------------------------------------------------

    def _log(self, name: str, row: dict) -> None:
        if not self.context.is_main:
            return
        path = self.out / name
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def validate_and_keep_best(self) -> dict[str, float] | None:
        if self.val_pairs is None or not self.context.is_main:
            barrier()
            return None
        metrics = validate(self.backbone, self.val_pairs, self.device, self.config.select_on)
        self._log("validation.csv", {"step": self.step, **{k: round(v, 6) for k, v in metrics.items()}})
        if metrics["score"] > self.best_score:
            self.best_score = metrics["score"]
            self.save("best", {"validation": metrics})
        barrier()
        return metrics

    def run(self) -> dict[str, float] | None:
        """Train until total_steps (continuing from self.step after a resume); the last
        validation's metrics (None when there are no held-out pairs)."""
        self.out.mkdir(parents=True, exist_ok=True)
        loader_kwargs = {"num_workers": self.config.num_workers, "pin_memory": self.device.type == "cuda"}
        progress = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc="train",
            unit="step",
            disable=not self.context.is_main,
            file=sys.stderr,
        )
        metrics = None
        if self.step == 0:
            metrics = self.validate_and_keep_best()
        while self.step < self.total_steps:
            epoch, start_batch = divmod(self.step, self.steps_per_epoch)
            self.train_set.set_epoch(epoch)
            self.sampler.set_epoch(epoch, start_batch)
            started = time.perf_counter()
            for batch in DataLoader(self.train_set, batch_sampler=self.sampler, **loader_kwargs):
                values = self.train_step(batch)
                rate = len(batch[0]) * self.context.world_size / (time.perf_counter() - started)
                started = time.perf_counter()
                self._log(
                    "metrics.csv",
                    {
                        "step": self.step,
                        "epoch": epoch,
                        **{k: round(v, 6) for k, v in values.items()},
                        "images_per_s": round(rate, 1),
                    },
                )
                progress.update(1)
                progress.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{values['lr']:.2g}")
                last = self.step >= self.total_steps
                if last or self.step % self.config.validate_every == 0:
                    metrics = self.validate_and_keep_best()
                if last or self.step % self.config.checkpoint_every == 0:
                    self.save("last")
                if last:
                    break
        progress.close()
        return metrics


def class_centres(
    teacher: Backbone, chips: np.ndarray, labels: np.ndarray, num_classes: int, device: torch.device
) -> torch.Tensor:
    """Each class's mean teacher embedding (normalised): a head that starts where the backbone is."""
    labelled = np.nonzero(labels >= 0)[0]
    vectors = torch.from_numpy(embed(teacher, chips[labelled], device))
    centres = torch.zeros(num_classes, vectors.shape[1])
    centres.index_add_(0, torch.from_numpy(labels[labelled]).long(), vectors)
    return torch.nn.functional.normalize(centres, dim=1)
