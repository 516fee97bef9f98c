"""Learning-rate schedules: linear warm-up, then cosine or polynomial decay to zero."""

from __future__ import annotations

import math


def lr_factor(step: int, *, total: int, warmup: int, kind: str = "cosine", power: float = 2.0) -> float:
    """The multiplier of the base learning rate at `step` (0-based) of `total`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "poly":
        return (1.0 - progress) ** power
    raise ValueError(f"unknown schedule {kind!r}")
