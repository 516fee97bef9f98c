"""Issue 10, item 7: the decoder accepts a list of formats, and a call's images share a pixel budget.

* Pillow would open every format it knows (TIFF, PSD, ICO, ...): uploads are JPEG, PNG or WebP
  (settings.IMAGE_FORMATS); others are refused as ``unsupported_format`` without being parsed.
* One call of 16 frames of 40 MP each would decode 640 MP: the images past MAX_TASK_PIXELS are
  refused as ``too_many_pixels`` from their header, before any of their pixels are decoded.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from inference import decode
from inference.decode import ImageDecodeError, decode_image, decode_images, image_pixels


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def face() -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_upload_formats_decode(face, fmt):
    assert decode_image(_encode(face, fmt, **({"lossless": True} if fmt == "WEBP" else {}))).shape == (
        60,
        80,
        3,
    )


@pytest.mark.parametrize(
    "fmt,name", [("TIFF", "TIFF"), ("GIF", "GIF"), ("BMP", "BMP"), ("ICO", "ICO"), ("PPM", "PPM")]
)
def test_other_formats_are_unsupported_format(face, fmt, name):
    data = _encode(face.convert("P") if fmt == "GIF" else face, fmt)
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data)
    assert caught.value.reason == "unsupported_format" and name in caught.value.message


def test_refused_formats_are_not_parsed(face, monkeypatch):
    # The TIFF plugin's header parser must not even run for an upload.
    from PIL import TiffImagePlugin

    def fail(*args, **kwargs):
        raise AssertionError("the TIFF parser ran")

    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "_open", fail)
    with pytest.raises(ImageDecodeError):
        decode_image(_encode(face, "TIFF"))


def test_a_wider_list_can_be_configured(face):
    data = _encode(face, "TIFF")
    assert decode_image(data, formats=["JPEG", "TIFF"]).shape == (60, 80, 3)
    assert decode_image(data, formats=None).shape == (60, 80, 3)


def test_local_files_keep_every_format(face, tmp_path):
    path = tmp_path / "face.tif"
    face.save(path, format="TIFF")
    assert decode.load_image(path).shape == (60, 80, 3)


def test_garbage_is_still_not_an_image():
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(b"certainly not an image" * 10)
    assert caught.value.reason == "not_an_image"


def _big_png(width: int, height: int) -> bytes:
    return _encode(Image.new("L", (width, height), 128), "PNG")


def test_image_pixels_reads_the_header_only():
    assert image_pixels(_big_png(3000, 2000)) == 6_000_000


def test_pixel_budget_refuses_the_images_past_it_before_decoding(monkeypatch):
    images = [_big_png(2000, 1500) for _ in range(4)]  # 3 MP each
    decoded_sizes = []
    original = decode.decode_image

    def counting(data, **kwargs):
        array = original(data, **kwargs)
        decoded_sizes.append(array.shape[0] * array.shape[1])
        return array

    monkeypatch.setattr(decode, "decode_image", counting)
    results = decode_images(images, max_total_pixels=7_000_000)
    assert [isinstance(r, np.ndarray) for r in results] == [True, True, False, False]
    assert all(r.reason == "too_many_pixels" for r in results[2:])
    assert decoded_sizes == [3_000_000, 3_000_000]  # the refused ones were never decoded


def test_a_small_image_after_a_refused_one_still_fits():
    results = decode_images([_big_png(2000, 2000), _big_png(100, 100)], max_total_pixels=1_000_000)
    assert isinstance(results[0], ImageDecodeError) and results[0].reason == "too_many_pixels"
    assert isinstance(results[1], np.ndarray)


def test_undecodable_images_do_not_stop_the_others():
    results = decode_images([b"", _big_png(10, 10)], max_total_pixels=1_000)
    assert isinstance(results[0], ImageDecodeError) and results[0].reason == "empty"
    assert results[1].shape == (10, 10, 3)
