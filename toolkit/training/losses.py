"""Margin heads on cosine logits (arcface_torch's losses): CosFace, ArcFace and the combined form.

The target logit cos(theta) becomes cos(m1 * theta + m2) - m3, every logit is scaled by s:
CosFace is (1, 0, m3), ArcFace (1, m2, 0). The functions take the logits of the classes a step
scores (all of them, or partial FC's sample) and the position of each row's class among them,
-1 where the class is not among them (another rank's shard under model parallelism).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class CombinedMargin:
    s: float = 64.0
    m1: float = 1.0
    m2: float = 0.0
    m3: float = 0.35

    def __post_init__(self) -> None:
        if self.s <= 0 or self.m1 < 1.0 or self.m2 < 0 or self.m3 < 0:
            raise ValueError(f"invalid margin {self}: s > 0, m1 >= 1, m2 >= 0, m3 >= 0")

    def __call__(self, cosine: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scaled logits with the margin applied at each row's target (target == -1: none)."""
        rows = torch.nonzero(target >= 0, as_tuple=True)[0]
        logits = cosine.clone()
        if rows.numel():
            cols = target[rows]
            cos_t = cosine[rows, cols]
            if self.m1 != 1.0 or self.m2 != 0.0:
                theta = torch.acos(cos_t.clamp(-1 + 1e-7, 1 - 1e-7))
                angle = self.m1 * theta + self.m2
                # Past pi, cos(angle) would grow again and reward a worse angle: arcface's
                # usual fallback keeps the target logit decreasing in theta there.
                fallback = cos_t - math.sin(math.pi - self.m2) * self.m2 - self.m3
                margin = torch.where(angle < math.pi, torch.cos(angle) - self.m3, fallback)
            else:
                margin = cos_t - self.m3
            logits[rows, cols] = margin.to(logits.dtype)
        return logits * self.s


def cosface(s: float = 64.0, m: float = 0.35) -> CombinedMargin:
    return CombinedMargin(s=s, m1=1.0, m2=0.0, m3=m)


def arcface(s: float = 64.0, m: float = 0.5) -> CombinedMargin:
    return CombinedMargin(s=s, m1=1.0, m2=m, m3=0.0)


MARGINS = {"cosface": cosface, "arcface": arcface}


def margin_from_config(kind: str, s: float, m1: float, m2: float, m3: float) -> CombinedMargin:
    """'cosface' / 'arcface' with their margin (m3 / m2), or 'combined' with all three."""
    if kind == "cosface":
        return cosface(s, m3)
    if kind == "arcface":
        return arcface(s, m2)
    if kind == "combined":
        return CombinedMargin(s, m1, m2, m3)
    raise ValueError(f"unknown margin {kind!r}: cosface, arcface or combined")


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - cosine between the student's and the frozen teacher's embeddings, averaged: pulls the
    student's masked-face embedding onto the teacher's clean-face one, without identity labels."""
    return (1.0 - F.cosine_similarity(student, teacher.detach(), dim=1)).mean()
