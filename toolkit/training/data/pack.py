"""The face pack: aligned chips, synthetic-mask chips and landmarks of a face set in one .npz.

Written by `toolkit.training.data.prepare`; N images with a face, C identities, K masked
renders per image, chips H x W (the template's size), 478 mesh points:

    chips             (N, H, W, 3) uint8    the clean face, aligned like the product aligns it
                                            (the model's template and align mode)
    masked            (N, K, H, W, 3) uint8 the same photo with K synthetic masks, aligned with
                                            the masked align mode (the product's for masked faces)
    mask_kind         (N, K) int8           index into meta["mask_kinds"] (surgical, cloth, n95, overlay)
    landmarks         (N, 478, 2) float32   mesh points (x, y) in `chips` pixels
    masked_landmarks  (N, 478, 2) float32   the same points in `masked` pixels
    mask_rows         (N, 2) int16          [top, bottom) rows of `chips` from below the nose to
                                            the chin: the region a mask covers (per-sample Cutout)
    masked_mask_rows  (N, 2) int16          the same rows in `masked` chips
    labels            (N,) int64            identity, 0..C-1, index into `names`
    names             (C,) str              identity names, sorted
    numbers           (N,) int32            LFW image number (<name>_<NNNN>), -1 when not LFW-named
    paths             (N,) str              image path relative to the root
    single            (N,) bool             the identity has only this image in the pack: usable
                                            for distillation (no label needed), not for a margin head
    meta              () str                JSON: template, sizes, align modes, seed, counts, the
                                            images skipped and why, the command

Images are RGB. `load_pack` gives the arrays back as a FacePack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MASK_KINDS = ("surgical", "cloth", "n95", "overlay")
ARRAYS = (
    "chips",
    "masked",
    "mask_kind",
    "landmarks",
    "masked_landmarks",
    "mask_rows",
    "masked_mask_rows",
    "labels",
    "names",
    "numbers",
    "paths",
    "single",
)


class PackFormatError(ValueError):
    """The file is not a face pack this code can read; the message says what is wrong."""


@dataclass
class FacePack:
    chips: np.ndarray
    masked: np.ndarray
    mask_kind: np.ndarray
    landmarks: np.ndarray
    masked_landmarks: np.ndarray
    mask_rows: np.ndarray
    masked_mask_rows: np.ndarray
    labels: np.ndarray
    names: np.ndarray
    numbers: np.ndarray
    paths: np.ndarray
    single: np.ndarray
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def identities(self) -> np.ndarray:
        """Each image's identity name (for splits.split_samples and splits.verification_pairs)."""
        return self.names[self.labels]

    @property
    def template(self) -> str:
        return str(self.meta["template"])

    @property
    def synthetic_masks(self) -> int:
        return int(self.masked.shape[1])

    def subset(self, indices: np.ndarray | list[int]) -> FacePack:
        """The rows at `indices` (labels and names unchanged, so labels stay comparable)."""
        rows = np.asarray(indices)
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ARRAYS:
            if name != "names":
                values[name] = values[name][rows]
        return FacePack(**values)


def save_pack(path: Path | str, pack: FacePack, *, compress: bool = False) -> None:
    """Write atomically (a temporary file renamed), so an interrupted run leaves no half pack."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: getattr(pack, name) for name in ARRAYS}
    meta = dict(pack.meta, format_version=FORMAT_VERSION)
    temporary = target.with_name(target.name + ".tmp.npz")
    (np.savez_compressed if compress else np.savez)(temporary, meta=np.array(json.dumps(meta)), **arrays)
    temporary.replace(target)


def load_pack(path: Path | str) -> FacePack:
    """The pack's arrays (see the module docstring) and its meta dict."""
    source = Path(path)
    if not source.is_file():
        raise PackFormatError(f"face pack {source} not found")
    try:
        with np.load(source, allow_pickle=False) as data:
            missing = [name for name in (*ARRAYS, "meta") if name not in data.files]
            if missing:
                raise PackFormatError(f"{source}: not a face pack, missing {', '.join(missing)}")
            arrays = {name: data[name] for name in ARRAYS}
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError) as exc:
        if isinstance(exc, PackFormatError):
            raise
        raise PackFormatError(f"{source}: cannot be read as a face pack ({exc})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise PackFormatError(
            f"{source}: pack format {meta.get('format_version')}, this code reads {FORMAT_VERSION}"
        )
    return FacePack(**arrays, meta=meta)
