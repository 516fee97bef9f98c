"""Mask robustness in training: per-sample Cutout of the mask region and synthetic-mask swaps.

The original system drew its Cutout decision once per batch (every face of a batch cut, or none):
a bug that alternates whole batches between two input distributions. Here each sample decides
for itself, from a generator seeded by (seed, epoch, sample index), so the same sample gets the
same augmentation after a resume and on any number of data-loader workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.mask.occlusion import lower_face_row
from inference.templates import AlignTemplate


@dataclass(frozen=True)
class MaskAugment:
    """How often a training face is shown masked, and how.

    p_synthetic: use one of the face's pre-rendered synthetic masks (random kind, colour, texture);
    p_cutout: otherwise blank the mask region, from below the nose to the chin (the face's own
    rows, or the template's: the runtime's cutout row down), its top moved by up to `row_jitter`
    rows, in the network's mean colour (zeros after normalisation, as the runtime fills it);
    p_flip: mirror the chip.
    """

    p_synthetic: float = 0.35
    p_cutout: float = 0.25
    p_flip: float = 0.5
    row_jitter: int = 4

    def __post_init__(self) -> None:
        for name in ("p_synthetic", "p_cutout", "p_flip"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1]")


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng((seed, epoch, index))


def cutout(chip: np.ndarray, top: int, bottom: int, fill: np.ndarray) -> np.ndarray:
    """A copy with rows [top, bottom) filled with `fill` (RGB)."""
    out = chip.copy()
    out[max(0, top) : bottom] = fill.astype(out.dtype)
    return out


@dataclass(frozen=True)
class Augmented:
    chip: np.ndarray  # H x W x 3 uint8, what the student sees
    clean: np.ndarray  # the same face unmasked (and flipped alike): what the teacher sees
    kind: str  # "clean", "synthetic" or "cutout"


def augment_sample(
    clean: np.ndarray,
    masked: np.ndarray | None,
    *,
    rows: tuple[int, int],
    fill: np.ndarray,
    policy: MaskAugment,
    rng: np.random.Generator,
) -> Augmented:
    """One training view of a face. masked: K x H x W x 3 pre-rendered synthetic masks (or None);
    rows: [top, bottom) of the mask region, from below the nose to the chin."""
    draw = rng.random()
    if masked is not None and len(masked) and draw < policy.p_synthetic:
        chip, kind = masked[rng.integers(len(masked))], "synthetic"
    elif draw < policy.p_synthetic + policy.p_cutout:
        top = rows[0] + int(rng.integers(-policy.row_jitter, policy.row_jitter + 1))
        chip, kind = cutout(clean, top, rows[1], fill), "cutout"
    else:
        chip, kind = clean, "clean"
    if rng.random() < policy.p_flip:
        chip, clean = chip[:, ::-1], clean[:, ::-1]
    return Augmented(np.ascontiguousarray(chip), np.ascontiguousarray(clean), kind)


def template_cut_rows(template: AlignTemplate) -> tuple[int, int]:
    """The mask region on chips aligned to `template`: the runtime's cutout row to the bottom."""
    return lower_face_row(template), template.size[1]
