"""The mask data: photos listed and labelled, meshed and aligned (cached), near-duplicates grouped, split.

Every image goes through the pipeline's detector and aligner (`get_face_detector().largest`,
`align_face(..., DLIB_150)`); images without a face are skipped and counted. Near-duplicate photos
(the data set holds copies) are kept on one side of a stratified held-out split, so the held-out
accuracy is not inflated by copies of training photos.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inference import align, detect, yunet
from inference.align import DLIB_150, align_face
from inference.decode import ImageDecodeError, load_image
from inference.detect import get_face_detector
from toolkit.mask_training.config import CLASSES, TrainConfig

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Two photos whose 64-bit difference hashes differ in at most this many bits count as copies.
DUPLICATE_BITS = 4


@dataclass
class FaceSet:
    """Images run through detector and aligner: one row per image."""

    paths: list[str]
    labels: np.ndarray  # int64, 0 without mask, 1 with mask (or -1 where unknown)
    found: np.ndarray  # bool: a face was found
    chips: np.ndarray  # (N, 150, 150, 3) uint8, zeros where no face
    landmarks: np.ndarray  # (N, 478, 3) float32, zeros where no face
    sizes: np.ndarray  # (N, 2) image width and height, 0 where unreadable
    errors: list[str]  # "" or why the image could not be read


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _cache_key(paths: Sequence[Path]) -> str:
    digest = hashlib.sha1()
    # The chips depend on the files and on the detector and aligner code: any change re-runs the mesh.
    for module in (detect, align, yunet):
        digest.update(inspect.getsource(module).encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def extract_faces(
    paths: Sequence[Path], labels: Sequence[int], *, cache_dir: Path | None, desc: str
) -> FaceSet:
    """Detect, mesh and align every image (cached under cache_dir by content of files and code)."""
    cache_file = cache_dir / f"{desc}-{_cache_key(paths)}.npz" if cache_dir else None
    if cache_file is not None and cache_file.is_file():
        data = np.load(cache_file, allow_pickle=False)
        return FaceSet(
            paths=[str(p) for p in paths],
            labels=np.asarray(labels, dtype=np.int64),
            found=data["found"],
            chips=data["chips"],
            landmarks=data["landmarks"],
            sizes=data["sizes"],
            errors=[str(e) for e in data["errors"]],
        )
    detector = get_face_detector()
    count = len(paths)
    found = np.zeros(count, dtype=bool)
    chips = np.zeros((count, 150, 150, 3), dtype=np.uint8)
    landmarks = np.zeros((count, detect.NUM_LANDMARKS, 3), dtype=np.float32)
    sizes = np.zeros((count, 2), dtype=np.int32)
    errors = [""] * count
    for index, path in enumerate(tqdm(paths, desc=f"mesh {desc}", unit="img", file=sys.stderr)):
        try:
            rgb = load_image(path)
        except (ImageDecodeError, OSError) as exc:
            errors[index] = str(exc)
            continue
        sizes[index] = rgb.shape[1], rgb.shape[0]
        face = detector.largest(rgb)
        if face is None:
            continue
        found[index] = True
        landmarks[index] = face.landmarks
        chips[index] = align_face(rgb, face, DLIB_150)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, found=found, chips=chips, landmarks=landmarks, sizes=sizes, errors=np.array(errors))
        tmp.replace(cache_file)
    return FaceSet(
        [str(p) for p in paths], np.asarray(labels, dtype=np.int64), found, chips, landmarks, sizes, errors
    )


def difference_hash(path: str) -> np.uint64:
    gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if gray is None:
        return np.uint64(0)
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2))


def duplicate_groups(paths: Sequence[str], max_bits: int = DUPLICATE_BITS) -> np.ndarray:
    """A group id per image; near-identical images (copies, re-encodes) share one."""
    hashes = np.array([difference_hash(p) for p in paths], dtype=np.uint64)
    parent = np.arange(len(paths))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    as_bytes = hashes.view(np.uint8).reshape(-1, 8)
    for i in range(len(paths)):
        distance = np.unpackbits(as_bytes[i + 1 :] ^ as_bytes[i], axis=1).sum(axis=1)
        for j in np.nonzero(distance <= max_bits)[0] + i + 1:
            a, b = root(i), root(int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    return np.array([root(i) for i in range(len(paths))])


def stratified_group_split(
    labels: np.ndarray, groups: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): about test_fraction of each class held out, whole groups at a time."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.nonzero(labels == label)[0]
        class_groups = np.unique(groups[members])
        rng.shuffle(class_groups)
        target = test_fraction * len(members)
        taken = 0
        for group in class_groups:
            if taken >= target:
                break
            in_group = members[groups[members] == group]
            test[in_group] = True
            taken += len(in_group)
    return np.nonzero(~test)[0], np.nonzero(test)[0]


@dataclass
class MaskData:
    """The labelled faces, their near-duplicate groups and the split (indices of faces found)."""

    faces: FaceSet
    groups: np.ndarray
    train: np.ndarray
    test: np.ndarray


def load_mask_data(config: TrainConfig) -> MaskData:
    """Every photo of DATA/without_mask and DATA/with_mask, meshed, grouped and split by the seed."""
    paths, labels = [], []
    for label, name in enumerate(CLASSES):
        files = list_images(config.data / name)
        if not files:
            raise SystemExit(f"no images in {config.data / name}")
        paths += files
        labels += [label] * len(files)
    faces = extract_faces(paths, labels, cache_dir=config.cache_dir, desc="mask-data")
    groups = duplicate_groups(faces.paths)
    train_all, test_all = stratified_group_split(faces.labels, groups, config.test_fraction, config.seed)
    train_idx = train_all[faces.found[train_all]]
    test_idx = test_all[faces.found[test_all]]
    print(
        f"{len(paths)} images, {int(faces.found.sum())} with a face, "
        f"{len(np.unique(groups))} distinct photos; train {len(train_idx)}, held out {len(test_idx)}",
        file=sys.stderr,
    )
    return MaskData(faces, groups, train_idx, test_idx)
