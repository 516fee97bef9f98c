import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inference.decode import ImageDecodeError, decode_image, load_image


@pytest.fixture(scope="module")
def portrait(portraits_dir: Path) -> Image.Image:
    with Image.open(portraits_dir / "img12.jpg") as image:
        return image.convert("RGB")


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_jpeg_decodes_to_rgb_uint8(portrait):
    rgb = decode_image(_encode(portrait, "JPEG", quality=95))
    assert rgb.dtype == np.uint8
    assert rgb.shape == (portrait.height, portrait.width, 3)
    assert _mean_abs_diff(rgb, np.asarray(portrait)) < 3


def test_exif_orientation_is_applied(portrait, tmp_path):
    # Stored rotated a quarter turn counter-clockwise, tagged "rotate 90 clockwise to display" (6).
    stored = portrait.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, format="JPEG", quality=95, exif=exif.tobytes())

    rgb = load_image(path)

    assert rgb.shape == (portrait.height, portrait.width, 3)
    assert _mean_abs_diff(rgb, np.asarray(portrait)) < 3


def test_grayscale_becomes_three_equal_channels(portrait):
    rgb = decode_image(_encode(portrait.convert("L"), "JPEG"))
    assert rgb.shape == (portrait.height, portrait.width, 3)
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])


def test_cmyk_jpeg_comes_back_as_rgb(portrait):
    rgb = decode_image(_encode(portrait.convert("CMYK"), "JPEG", quality=95))
    assert rgb.shape == (portrait.height, portrait.width, 3)
    assert _mean_abs_diff(rgb, np.asarray(portrait)) < 4


def test_sixteen_bit_grey_png_is_scaled_not_clipped(portrait):
    grey8 = np.asarray(portrait.convert("L"))
    grey16 = Image.fromarray(grey8.astype(np.uint16) * 257)
    assert grey16.mode.startswith("I;16")
    rgb = decode_image(_encode(grey16, "PNG"))
    assert np.abs(rgb[..., 0].astype(int) - grey8).max() <= 1


def test_sixteen_bit_colour_png_is_reduced_to_eight_bits(portrait):
    rgb8 = np.asarray(portrait)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    assert ok
    rgb = decode_image(png.tobytes())
    assert np.abs(rgb.astype(int) - rgb8).max() <= 1


def test_transparent_pixels_become_white(portrait):
    rgba = portrait.convert("RGBA")
    alpha = np.full((portrait.height, portrait.width), 255, np.uint8)
    alpha[:, : portrait.width // 2] = 0
    rgba.putalpha(Image.fromarray(alpha))

    rgb = decode_image(_encode(rgba, "PNG"))

    assert (rgb[:, : portrait.width // 2] == 255).all()
    assert np.array_equal(rgb[:, portrait.width // 2 :], np.asarray(portrait)[:, portrait.width // 2 :])


def test_palette_gif_decodes(portrait):
    # GIF is not an upload format (issue 10: decode_image refuses it by default); where it is
    # configured (formats), a palette image decodes like any other.
    gif = _encode(portrait.convert("P", palette=Image.Palette.ADAPTIVE), "GIF")
    rgb = decode_image(gif, formats=["JPEG", "PNG", "WEBP", "GIF"])
    assert rgb.shape == (portrait.height, portrait.width, 3)
    assert _mean_abs_diff(rgb, np.asarray(portrait)) < 12


def test_truncated_jpeg_is_refused(portrait):
    data = _encode(portrait, "JPEG")
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data[: len(data) // 2])
    assert caught.value.reason == "truncated"


def test_truncated_png_is_refused(portrait):
    data = _encode(portrait, "PNG")
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data[: len(data) // 2])
    assert caught.value.reason == "truncated"


def test_random_bytes_are_not_an_image():
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data)
    assert caught.value.reason == "not_an_image"


def test_empty_data_is_refused():
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(b"")
    assert caught.value.reason == "empty"
    assert isinstance(caught.value, ValueError)


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header is rewritten to declare width x height pixels."""
    data = bytearray(_encode(Image.new("L", (8, 8), 128), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize("width,height", [(8000, 6000), (100_000, 100_000)])
def test_decompression_bomb_is_refused_from_the_header(width, height):
    data = _png_declaring(width, height)
    assert len(data) < 200
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data)
    assert caught.value.reason == "too_many_pixels"


def test_pixel_limit_is_the_callers(portrait):
    data = _encode(portrait, "JPEG")
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data, max_pixels=portrait.width * portrait.height - 1)
    assert caught.value.reason == "too_many_pixels"
    assert decode_image(data, max_pixels=portrait.width * portrait.height).shape[:2] == (
        portrait.height,
        portrait.width,
    )
