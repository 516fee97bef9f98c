"""The mask classifier's training configuration: one base config, overridden from the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inference.mask.network import NetworkConfig
from inference.variants import DEFAULT_MASK_THRESHOLD

VERSION = "mask_classifier_v2"
CLASSES = ("without_mask", "with_mask")  # label 0, label 1
DEFAULT_CACHE = Path("/tmp/faceid-mask-cache")


@dataclass(frozen=True)
class TrainConfig:
    data: Path  # folder with with_mask/ and without_mask/
    out: Path  # weights file to write (or read, with eval_only)
    epochs: int = 15
    seed: int = 0
    test_fraction: float = 0.2
    templates: Path | None = None  # MaskTheFace templates; None: DATA/../mask-overlays
    synthetic_fraction: float = 0.5  # synthetic positives per epoch, per training negative
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    threshold: float = DEFAULT_MASK_THRESHOLD
    lfw: Path | None = None  # LFW images: measure the false-mask rate there
    lfw_limit: int = 0  # a deterministic sample of this many LFW images (0: all)
    report: Path | None = None
    histogram: Path | None = None
    cache_dir: Path | None = DEFAULT_CACHE  # where meshed chips are cached (None: no cache)
    threads: int = 2
    eval_only: bool = False
    network: NetworkConfig = field(default_factory=NetworkConfig)
    version: str = VERSION  # written into the checkpoint
    # Small, blurred faces (what the YuNet scan adds): how often a training chip is shrunk and
    # re-enlarged, and the smallest factor (v1: 0.25 and 0.25).
    low_res: float = 0.25
    low_res_min: float = 0.25
    init: Path | None = None  # start from these weights (a checkpoint of the same network) instead of scratch

    @property
    def template_dir(self) -> Path:
        return self.templates or self.data.parent / "mask-overlays"
