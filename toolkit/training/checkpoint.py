"""Checkpoints written atomically (a killed run never leaves half a file) and read back."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    # Optimiser and RNG states are plain tensors and containers; the config a dict.
    return torch.load(path, map_location="cpu", weights_only=True)
