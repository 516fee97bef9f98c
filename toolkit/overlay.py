"""MaskTheFace-style mask overlays, for training and evaluation only.

MaskTheFace (Anwar & Raychowdhury, 2020) warps a photo of a mask (an RGBA template with six
anchor points listed in masks.cfg) onto a face so that the anchors land on the nose bridge,
the cheeks, the jaw and the chin. Here the face points come from the Face Mesh. The product
never calls this at run time: the templates are data, read from a folder given by the caller
(the procedural renderer in `inference.mask.render` is what enrollment uses).
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from inference.detect import DetectedFace

ANCHOR_NAMES = ("mask_a", "mask_b", "mask_c", "mask_d", "mask_e", "mask_f")

# Face points for the six anchors, as in MaskTheFace: a, b, c along the top edge (image-left
# cheek at nose-bridge height, mid nose bridge, image-right cheek) and d, e, f along the bottom
# (image-left jaw, chin, image-right jaw). A pair of indices means their midpoint.
FACE_ANCHORS: tuple[tuple[int, ...], ...] = (
    (234, 93),
    (197, 195),
    (454, 323),
    (172, 136),
    (152,),
    (397, 365),
)
# Templates drawn for a head turned to one side: MaskTheFace picks them by the face's yaw.
YAW_SIDE_THRESHOLD = 0.18


@dataclass(frozen=True)
class MaskTemplate:
    """One RGBA mask photo and where its six anchors are, in template pixels."""

    name: str
    path: Path
    anchors: np.ndarray = field(repr=False)  # 6x2, a..f

    @property
    def view(self) -> str:
        """'front', 'left' or 'right': which way the head in the photo the mask was cut from turned."""
        for side in ("left", "right"):
            if self.name.endswith("_" + side):
                return side
        return "front"

    def rgba(self) -> np.ndarray:
        return _read_rgba(str(self.path))


def load_templates(folder: Path | str) -> list[MaskTemplate]:
    """Templates listed in masks.cfg (in `folder` or its parent) whose PNG exists in `folder`.

    `folder` is the templates directory (or the directory holding both it and masks.cfg).
    Sections without anchors (MaskTheFace's "empty" and "inpaint" modes) are skipped.
    """
    folder = Path(folder)
    if (folder / "templates").is_dir():
        folder = folder / "templates"
    config_path = next((p for p in (folder / "masks.cfg", folder.parent / "masks.cfg") if p.is_file()), None)
    if config_path is None:
        raise FileNotFoundError(f"no masks.cfg in {folder} or {folder.parent}")
    # masks.cfg uses ';' comment lines and 'key: value' pairs, which configparser reads as is.
    parser = configparser.ConfigParser(comment_prefixes=(";", "#"), strict=False)
    parser.read(config_path)
    templates = []
    for name in parser.sections():
        section = parser[name]
        if "template" not in section or not all(key in section for key in ANCHOR_NAMES):
            continue
        # The cfg holds MaskTheFace's repository paths (masks/templates/x.png): keep the file name.
        path = folder / Path(section["template"].strip()).name
        if not path.is_file():
            continue
        anchors = np.array(
            [[float(v) for v in section[key].split(",")] for key in ANCHOR_NAMES], dtype=np.float64
        )
        templates.append(MaskTemplate(name=name, path=path, anchors=anchors))
    if not templates:
        raise FileNotFoundError(f"no usable templates listed in {config_path}")
    return templates


def face_anchor_points(face: DetectedFace) -> np.ndarray:
    """The six face points (image pixels) that the template anchors a..f are mapped to."""
    landmarks = np.asarray(face.landmarks, dtype=np.float64)[:, :2]
    return np.stack([landmarks[list(indices)].mean(axis=0) for indices in FACE_ANCHORS])


def face_yaw_side(face: DetectedFace) -> str:
    """'left' when the nose is near the image's left cheek, 'right' for the other way, else 'front'."""
    landmarks = np.asarray(face.landmarks, dtype=np.float64)[:, :2]
    left, right, nose = landmarks[234], landmarks[454], landmarks[4]
    axis = right - left
    position = float(np.dot(nose - left, axis) / max(float(np.dot(axis, axis)), 1e-6))
    if position < 0.5 - YAW_SIDE_THRESHOLD:
        return "left"
    if position > 0.5 + YAW_SIDE_THRESHOLD:
        return "right"
    return "front"


def choose_template(
    templates: list[MaskTemplate], face: DetectedFace, rng: np.random.Generator
) -> MaskTemplate:
    """A random template among those drawn for the face's view (any, if none matches)."""
    side = face_yaw_side(face)
    matching = [t for t in templates if t.view == side] or templates
    return matching[int(rng.integers(len(matching)))]


def overlay_mask(
    rgb: np.ndarray,
    face: DetectedFace,
    template: MaskTemplate,
    *,
    brightness: float = 1.0,
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """A copy of `rgb` with the template warped onto the face (homography on six anchors) and alpha-blended.

    `brightness` and `tint` scale the mask's colour so training sees masks under varied light.
    """
    image = np.asarray(rgb)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got {image.dtype} {image.shape}")
    dst = face_anchor_points(face)
    rgba = template.rgba()
    src = template.anchors.copy()

    # Shrink big templates close to the size they will have on the face first: warpPerspective
    # samples without low-pass filtering and a 600 px mask squeezed to 60 px would alias.
    template_width = np.linalg.norm(src[2] - src[0])
    face_width = max(np.linalg.norm(dst[2] - dst[0]), 1.0)
    scale = min(1.0, 2.0 * face_width / max(template_width, 1.0))
    if scale < 1.0:
        rgba = cv2.resize(rgba, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        src = src * scale

    homography, _ = cv2.findHomography(src.astype(np.float32), dst.astype(np.float32), 0)
    if homography is None:
        return image.copy()
    height, width = image.shape[:2]
    warped = cv2.warpPerspective(
        rgba,
        homography,
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    ).astype(np.float32)
    alpha = warped[..., 3:4] / 255.0
    color = warped[..., :3] * (brightness * np.asarray(tint, dtype=np.float32))
    out = image.astype(np.float32) * (1.0 - alpha) + color * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def random_overlay(
    rgb: np.ndarray, face: DetectedFace, templates: list[MaskTemplate], rng: np.random.Generator
) -> np.ndarray:
    """A random template for the face's view, with random brightness and tint."""
    template = choose_template(templates, face, rng)
    brightness = float(rng.uniform(0.6, 1.1))
    tint = tuple(float(x) for x in rng.uniform(0.85, 1.15, 3))
    return overlay_mask(rgb, face, template, brightness=brightness, tint=tint)


@lru_cache(maxsize=64)
def _read_rgba(path: str) -> np.ndarray:
    data = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if data is None:
        raise FileNotFoundError(f"cannot read mask template {path}")
    if data.ndim == 2:
        data = cv2.cvtColor(data, cv2.COLOR_GRAY2BGRA)
    elif data.shape[2] == 3:
        data = cv2.cvtColor(data, cv2.COLOR_BGR2BGRA)
    rgba = cv2.cvtColor(data, cv2.COLOR_BGRA2RGBA)
    rgba.setflags(write=False)
    return rgba
