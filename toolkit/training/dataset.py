"""What the training loop consumes: aligned faces in memory, their augmented views, and a batch
sampler that shards over ranks and resumes mid-epoch at the exact batch.

Two kinds of source: faces in memory (`FaceArrays`, from face packs: clean chips, pre-rendered
synthetic masks, the mask rows of each face) and image datasets read as they go (`StreamSource`:
RecordIO or image folders of aligned crops, where only Cutout at the template's rows applies).
Labels are 0..C-1, or -1 for faces with no class (distillation only).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from toolkit.training.augment import MaskAugment, augment_sample, sample_rng

KINDS = ("clean", "synthetic", "cutout")


@dataclass
class FaceArrays:
    clean: np.ndarray  # N x H x W x 3 uint8, aligned to the backbone's template
    masked: np.ndarray | None  # N x K x H x W x 3 uint8 synthetic masks, or None
    labels: np.ndarray  # N int64 class ids 0..C-1, -1 where the face has no class
    cut_rows: np.ndarray  # N x 2 int: [top, bottom) rows of the mask region on each chip

    def __post_init__(self) -> None:
        n = len(self.clean)
        if self.clean.ndim != 4 or self.clean.dtype != np.uint8:
            raise ValueError(
                f"clean chips must be N x H x W x 3 uint8, got {self.clean.dtype} {self.clean.shape}"
            )
        if (
            len(self.labels) != n
            or len(self.cut_rows) != n
            or (self.masked is not None and len(self.masked) != n)
        ):
            raise ValueError("chips, masks, labels and cut rows differ in length")

    def __len__(self) -> int:
        return len(self.clean)

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if (self.labels >= 0).any() else 0

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray | None, int, tuple[int, int]]:
        masked = None if self.masked is None else self.masked[index]
        top, bottom = self.cut_rows[index]
        return self.clean[index], masked, int(self.labels[index]), (int(top), int(bottom))

    def subset(self, index: np.ndarray) -> FaceArrays:
        return FaceArrays(
            self.clean[index],
            None if self.masked is None else self.masked[index],
            self.labels[index],
            self.cut_rows[index],
        )


def concatenate(parts: list[FaceArrays]) -> FaceArrays:
    masked = [p.masked for p in parts]
    if any(m is None for m in masked) or len({m.shape[1:] for m in masked}) != 1:
        masked = None
    return FaceArrays(
        np.concatenate([p.clean for p in parts]),
        None if masked is None else np.concatenate(masked),
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.cut_rows for p in parts]),
    )


class StreamSource:
    """Aligned face crops read on demand from an (image, label) dataset, resized to the template."""

    def __init__(
        self,
        dataset: Dataset,
        indices: np.ndarray,
        labels: np.ndarray,
        size: tuple[int, int],
        cut: tuple[int, int],
    ) -> None:
        self.dataset, self.indices, self.labels = dataset, indices, labels
        self.size, self.cut = size, cut

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, index: int) -> np.ndarray:
        import cv2

        image, _ = self.dataset[int(self.indices[index])]
        if image.shape[1::-1] != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        return image

    def sample(self, index: int) -> tuple[np.ndarray, None, int, tuple[int, int]]:
        return self.image(index), None, int(self.labels[index]), self.cut


class TrainingSet(Dataset):
    """Per-sample augmented views: (student chip, teacher's clean chip, label, kind index)."""

    def __init__(
        self, faces: FaceArrays | StreamSource, policy: MaskAugment, fill: np.ndarray, seed: int
    ) -> None:
        self.faces = faces
        self.policy = policy
        self.fill = np.asarray(fill, dtype=np.float64)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        clean, masked, label, rows = self.faces.sample(index)
        view = augment_sample(
            clean,
            masked,
            rows=rows,
            fill=self.fill,
            policy=self.policy,
            rng=sample_rng(self.seed, self.epoch, index),
        )
        return (
            torch.from_numpy(view.chip),
            torch.from_numpy(view.clean),
            label,
            KINDS.index(view.kind),
        )


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches of one rank: a seeded permutation per epoch, cut into world_size x batch_size
    blocks (the last partial block dropped), each rank taking its slice; `start_batch` skips the
    batches an interrupted run already trained on."""

    def __init__(self, size: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if size < batch_size * world_size:
            raise ValueError(f"{size} faces cannot fill one batch of {batch_size} on {world_size} processes")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return self.size // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.size)
        block = self.batch_size * self.world_size
        for batch in range(self.start_batch, len(self)):
            start = batch * block + self.rank * self.batch_size
            yield order[start : start + self.batch_size].tolist()


@dataclass
class VerificationPairs:
    """Held-out pairs for validation during training (identities never trained on)."""

    first: np.ndarray  # P x H x W x 3 uint8
    second: np.ndarray  # P x H x W x 3 uint8
    second_masked: np.ndarray  # the second face with a synthetic mask
    same: np.ndarray  # P bool
    # Each side's identity: with them, validation also scores every (first, second) combination of
    # two different people as an impostor pair, enough pairs to see FAR 1e-3 (validation.py).
    first_identity: np.ndarray | None = None  # P int
    second_identity: np.ndarray | None = None  # P int
