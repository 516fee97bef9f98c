import numpy as np
import pytest

from inference.mask.occlusion import DLIB_MEAN_RGB, blank_lower_face, scaled_start_row


def _chip(size: int = 150) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_rows_from_76_down_take_dlibs_mean_colour_and_rows_above_are_kept():
    chip = _chip()
    out = blank_lower_face(chip)
    assert np.array_equal(out[:76], chip[:76])
    assert (out[76:] == np.round(DLIB_MEAN_RGB).astype(np.uint8)).all()


def test_zero_fill_blanks_to_black_from_the_requested_row():
    chip = _chip()
    out = blank_lower_face(chip, start_row=60, fill="zero")
    assert np.array_equal(out[:60], chip[:60])
    assert not out[60:].any()


def test_a_colour_tuple_is_used_as_given():
    out = blank_lower_face(_chip(), fill=(10, 20, 30))
    assert (out[76:] == (10, 20, 30)).all()


def test_start_row_scales_with_the_chip_size():
    assert scaled_start_row(150) == 76
    assert scaled_start_row(112) == 57
    chip = _chip(112)
    out = blank_lower_face(chip)
    assert np.array_equal(out[:57], chip[:57])
    assert (out[57:] == np.round(DLIB_MEAN_RGB).astype(np.uint8)).all()


def test_float_chips_keep_their_dtype_and_exact_mean():
    chip = _chip().astype(np.float32)
    out = blank_lower_face(chip)
    assert out.dtype == np.float32
    assert np.allclose(out[100, 5], DLIB_MEAN_RGB, atol=1e-4)


def test_the_input_chip_is_not_modified():
    chip = _chip()
    before = chip.copy()
    blank_lower_face(chip)
    assert np.array_equal(chip, before)


@pytest.mark.parametrize("fill", ["grey", (1, 2)])
def test_unknown_fills_are_refused(fill):
    with pytest.raises(ValueError):
        blank_lower_face(_chip(), fill=fill)


def test_a_start_row_outside_the_chip_is_refused():
    with pytest.raises(ValueError):
        blank_lower_face(_chip(), start_row=200)
