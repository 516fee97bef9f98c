"""The training configuration: one dataclass, one base config file, short override files.

A config file is a Python module defining `config`; an override starts from the base:

    from dataclasses import replace
    from toolkit.training.configs.base import config as base
    config = replace(base, backbone="iresnet50", margin="arcface", m2=0.5)

and the command line overrides single fields (`--set lr=0.01 --set epochs=3`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    # --- network ---
    backbone: str = "iresnet50"  # toolkit.training.backbones.available_backbones()
    weights: str | None = None  # start from these weights (None: the registry's, or random)
    freeze_fraction: float = 0.0  # the first share of parameter tensors (input side) kept frozen
    # --- data ---
    data: str = ""  # a face pack (.npz, toolkit.training.data.prepare), a RecordIO folder or image folder
    data_kind: str = "pack"  # pack | recordio | folder
    unlabelled: str = ""  # face packs (comma-separated) of faces without identity: distillation only
    val_fraction: float = 0.1  # identities held out for verification during training
    split_seed: int = 0
    val_pairs: int = 1000  # genuine and impostor pairs each, drawn once from held-out identities
    select_on: str = "tar"  # the best checkpoint: tar (all-pairs TAR at FAR 1e-3) | accuracy
    # --- head ---
    margin: str = "cosface"  # cosface | arcface | combined
    s: float = 64.0
    m1: float = 1.0
    m2: float = 0.5
    m3: float = 0.35
    sample_rate: float = 1.0  # partial FC: the share of class centres scored per step
    label_smoothing: float = 0.0
    init_centres: bool = False  # start the centres at the frozen teacher's mean embeddings
    # --- mask robustness ---
    p_synthetic: float = 0.0
    p_cutout: float = 0.0
    p_flip: float = 0.5
    row_jitter: int = 4
    distill_weight: float = 0.0  # masked student vs clean teacher
    anchor_weight: float = 0.0  # clean student vs clean teacher: keeps unmasked accuracy
    unlabelled_share: float = 1.0  # faces of single-image identities: distillation only
    # --- optimisation ---
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    head_lr: float | None = None  # None: lr
    lr_by_weight_scale: bool = False  # each tensor's lr is lr x mean |w| (fine-tuning a pretrained net)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128  # per process
    epochs: int = 20
    max_steps: int = 0  # stop after this many steps (0: epochs decide)
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | poly
    grad_clip: float = 5.0
    amp: bool = True  # mixed precision on CUDA (ignored on the CPU)
    # --- bookkeeping ---
    out: str = "runs/train"
    checkpoint_every: int = 500
    validate_every: int = 500
    seed: int = 0
    num_workers: int = 0
    threads: int = 0  # torch CPU threads (0: torch's default)

    def __post_init__(self) -> None:
        if self.data_kind not in ("pack", "recordio", "folder"):
            raise ValueError("data_kind must be pack, recordio or folder")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError("optimizer must be sgd or adamw")
        if self.select_on not in ("tar", "accuracy"):
            raise ValueError("select_on must be tar or accuracy")
        if self.schedule not in ("cosine", "poly"):
            raise ValueError("schedule must be cosine or poly")
        if not 0 <= self.freeze_fraction < 1:
            raise ValueError("freeze_fraction must lie in [0, 1)")
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """The `config` of a config file (None: the base), with KEY=VALUE overrides applied."""
    if path is None:
        config = TrainConfig()
    else:
        path = Path(path)
        spec = importlib.util.spec_from_file_location(f"_train_config_{path.stem}", path)
        if spec is None or spec.loader is None or not path.is_file():
            raise FileNotFoundError(f"no config file at {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = getattr(module, "config", None)
        if not isinstance(config, TrainConfig):
            raise ValueError(f"{path} must define `config = TrainConfig(...)`")
    return apply_overrides(config, overrides)


def apply_overrides(config: TrainConfig, overrides: list[str] | tuple[str, ...]) -> TrainConfig:
    types = {f.name: f.type for f in fields(TrainConfig)}
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or key not in types:
            raise ValueError(f"override {item!r}: expected KEY=VALUE with KEY one of {sorted(types)}")
        changes[key] = _parse(text, str(types[key]))
    return dataclasses.replace(config, **changes)


def _parse(text: str, kind: str) -> Any:
    if text.lower() in ("none", "null") and "None" in kind:
        return None
    if kind.startswith("bool"):
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{text!r} is not a boolean")
        return text.lower() in ("true", "1", "yes")
    if kind.startswith("int"):
        return int(text)
    if kind.startswith("float"):
        return float(text)
    return text
