"""Untrusted bytes to an HxWx3 uint8 RGB array, refusing what should not be decoded."""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000
# What cameras, browsers and phones send. Every other format Pillow knows (TIFF, GIF, PSD, ICO, ...)
# is a parser more exposed to hostile bytes for no benefit: refused as unsupported_format.
UPLOAD_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP")

# Leading bytes of formats Pillow can read but uploads may not use: to say "unsupported_format"
# instead of "not_an_image" without running the parsers the allow-list keeps out.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"icns", "ICNS"),
    (b"DDS ", "DDS"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG2000"),
    (b"\xff\x4f\xff\x51", "JPEG2000"),
    (b"qoif", "QOI"),
)

# A truncated upload must fail loudly rather than be silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageDecodeError(ValueError):
    """Why bytes could not become an image; `reason` is a stable machine code for API responses."""

    REASONS = ("empty", "not_an_image", "truncated", "too_many_pixels", "unsupported", "unsupported_format")

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _open(data: bytes, formats: Sequence[str] | None) -> Image.Image:
    """Pillow's image with its header parsed (no pixels decoded yet), or ImageDecodeError."""
    if not data:
        raise ImageDecodeError("empty", "the image is empty")
    allowed = [name.upper() for name in formats] if formats is not None else None
    try:
        # Image.open parses the header only; pixels are decoded by load().
        return Image.open(io.BytesIO(data), formats=allowed)
    except Image.DecompressionBombError as exc:
        # Pillow's own global guard (twice its MAX_IMAGE_PIXELS) fires at open for absurd sizes.
        raise ImageDecodeError("too_many_pixels", f"the image declares too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        known = sniff_format(data)
        if allowed is not None and known is not None and known not in allowed:
            raise ImageDecodeError(
                "unsupported_format", f"{known} images are not accepted (accepted: {', '.join(allowed)})"
            ) from exc
        raise ImageDecodeError("not_an_image", "the data is not an image in a known format") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError("not_an_image", f"the image header cannot be read: {exc}") from exc


def sniff_format(data: bytes) -> str | None:
    """The format named by the data's leading bytes (WebP and a few others), without parsing it."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"avif"):
        return "HEIF"
    if data[:1] == b"P" and data[1:2] in b"123456" and data[2:3] in (b" ", b"\t", b"\n", b"\r"):
        return "PPM"
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    return None


def image_pixels(data: bytes, *, formats: Sequence[str] | None = UPLOAD_FORMATS) -> int:
    """Width x height declared by the image's header, without decoding it (ImageDecodeError if none)."""
    with _open(data, formats) as image:
        width, height = image.size
    return max(width, 0) * max(height, 0)


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: Sequence[str] | None = UPLOAD_FORMATS,
) -> np.ndarray:
    """Decode image bytes to HxWx3 uint8 RGB with EXIF orientation applied.

    ``formats``: the Pillow formats accepted (others: ``unsupported_format``); None accepts any.
    """
    image = _open(data, formats)
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


def decode_images(
    blobs: Sequence[bytes],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_total_pixels: int | None = None,
    formats: Sequence[str] | None = UPLOAD_FORMATS,
) -> list[np.ndarray | ImageDecodeError]:
    """Decode the images of one call, in order: each an array, or the ImageDecodeError refusing it.

    ``max_total_pixels`` bounds the pixels decoded for the whole call: an image whose header would
    take the total past it is refused (``too_many_pixels``) before any of its pixels are decoded,
    so one call of many large images cannot take many times MAX_IMAGE_PIXELS of memory.
    """
    decoded: list[np.ndarray | ImageDecodeError] = []
    budget = max_total_pixels
    for data in blobs:
        try:
            if budget is not None:
                pixels = image_pixels(data, formats=formats)
                if pixels > budget:
                    raise ImageDecodeError(
                        "too_many_pixels",
                        f"the image has {pixels} pixels, more than the {budget} left of this call's "
                        f"budget of {max_total_pixels}",
                    )
            decoded.append(decode_image(data, max_pixels=max_pixels, formats=formats))
            if budget is not None:
                budget -= pixels
        except ImageDecodeError as exc:
            decoded.append(exc)
    return decoded


def load_image(
    path: str | PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: Sequence[str] | None = None,
) -> np.ndarray:
    """Read a local file and decode it like an upload; any format Pillow reads (datasets, tools)."""
    return decode_image(Path(path).read_bytes(), max_pixels=max_pixels, formats=formats)


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
