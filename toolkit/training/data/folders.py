"""Image folders: one sub-folder per identity (labelled), or any tree of face photos (unlabelled).

Listings are sorted (identity names, then file names), so the same tree always gives the same
labels and order on every machine. Images decode like uploads do (`inference.decode.load_image`:
EXIF orientation applied, RGB uint8); a file that cannot be decoded raises ImageDecodeError
with its path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from inference.decode import ImageDecodeError, load_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path | str, *, recursive: bool = True) -> list[Path]:
    """Image files under folder, sorted by their path relative to it."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} not found")
    files = root.rglob("*") if recursive else root.iterdir()
    return sorted((p for p in files if is_image(p)), key=lambda p: p.relative_to(root).as_posix())


def list_identities(root: Path | str, *, min_images: int = 1) -> tuple[list[str], list[tuple[Path, int]]]:
    """(identity names, (path, label) samples): label = position of the sub-folder's name in sorted order.

    Images directly in each identity's folder count (not deeper); identities with fewer than
    `min_images` images are left out and do not take a label.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"image folder {base} not found")
    names: list[str] = []
    samples: list[tuple[Path, int]] = []
    for folder in sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.name):
        images = sorted((p for p in folder.iterdir() if is_image(p)), key=lambda p: p.name)
        if len(images) < max(1, min_images):
            continue
        label = len(names)
        names.append(folder.name)
        samples.extend((path, label) for path in images)
    return names, samples


def read_rgb(path: Path | str) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB; ImageDecodeError naming the file when it cannot be read."""
    try:
        return load_image(path)
    except ImageDecodeError as exc:
        raise ImageDecodeError(exc.reason, f"{path}: {exc.message}") from None


class ImageFolderDataset(Dataset):
    """(RGB uint8 image, int label) per image of ROOT/<identity>/<image>; `transform` maps the image."""

    def __init__(
        self,
        root: Path | str,
        *,
        min_images: int = 1,
        transform: Callable[[np.ndarray], object] | None = None,
    ) -> None:
        self.root = Path(root)
        self.names, self.samples = list_identities(self.root, min_images=min_images)
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[object, int]:
        path, label = self.samples[index]
        image = read_rgb(path)
        return (self.transform(image) if self.transform is not None else image), label


class UnlabelledFaceFolder(Dataset):
    """RGB uint8 images from every image file under root (any depth), e.g. for distillation."""

    def __init__(self, root: Path | str, *, transform: Callable[[np.ndarray], object] | None = None) -> None:
        self.root = Path(root)
        self.paths = list_images(self.root)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> object:
        image = read_rgb(self.paths[index])
        return self.transform(image) if self.transform is not None else image
