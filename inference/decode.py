"""Untrusted bytes to an HxWx3 uint8 RGB array, refusing what should not be decoded."""

from __future__ import annotations

import io
import zlib
from os import PathLike
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000

# A truncated upload must fail loudly rather than be silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageDecodeError(ValueError):
    """Why bytes could not become an image; `reason` is a stable machine code for API responses."""

    REASONS = ("empty", "not_an_image", "truncated", "too_many_pixels", "unsupported")

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to HxWx3 uint8 RGB with EXIF orientation applied."""
    if not data:
        raise ImageDecodeError("empty", "the image is empty")
    try:
        # Image.open parses the header only; pixels are decoded by load() below.
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        # Pillow's own global guard (twice its MAX_IMAGE_PIXELS) fires at open for absurd sizes.
        raise ImageDecodeError("too_many_pixels", f"the image declares too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not_an_image", "the data is not an image in a known format") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError("not_an_image", f"the image header cannot be read: {exc}") from exc

    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError("not_an_image", "the image has no pixels")
    if width * height > max_pixels:
        raise ImageDecodeError(
            "too_many_pixels", f"the image has {width}x{height} pixels, more than the limit of {max_pixels}"
        )

    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("too_many_pixels", str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as exc:
        # Pillow reports truncation as OSError ("image file is truncated", "broken data stream").
        raise ImageDecodeError("truncated", f"the image data is incomplete or corrupt: {exc}") from exc

    try:
        image = ImageOps.exif_transpose(image)
    except Exception:
        # A malformed EXIF block must not lose an otherwise good photo.
        pass
    return _to_rgb_array(image)


def load_image(path: str | PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a file and decode it like an upload."""
    return decode_image(Path(path).read_bytes(), max_pixels=max_pixels)


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit greyscale: Pillow's convert("RGB") clips at 255 instead of scaling.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(values * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        peak = 1.0 if values.max(initial=0) <= 1.0 else 255.0
        grey = np.clip(values * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Transparent areas become white, as a browser would show them, not black.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    try:
        rgb = image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageDecodeError("unsupported", f"images in mode {mode} are not supported") from exc
    array = np.asarray(rgb, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageDecodeError("unsupported", f"images in mode {mode} are not supported")
    return np.ascontiguousarray(array)
