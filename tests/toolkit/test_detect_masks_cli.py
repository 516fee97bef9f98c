"""`python -m toolkit.detect_masks`: one JSON line per image, on real masked and unmasked photos."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT
from tests.inference.test_mask_classifier import HELD_OUT_WITH_MASK, HELD_OUT_WITHOUT_MASK

# Each test starts the tool in a fresh interpreter (seconds each: it loads the detector and classifier).
pytestmark = pytest.mark.slow

KEYS = {"path", "face", "masked", "mask_probability"}


def _run(*args: str) -> tuple[list[dict], subprocess.CompletedProcess]:
    process = subprocess.run(
        [sys.executable, "-m", "toolkit.detect_masks", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [json.loads(line) for line in process.stdout.splitlines() if line.strip()]
    return lines, process


@pytest.fixture(scope="module")
def folder(tmp_path_factory, shared_data: Path) -> Path:
    mask_data_dir = shared_data / "mask-classification"
    root = tmp_path_factory.mktemp("detect-masks")
    shutil.copy(mask_data_dir / "with_mask" / HELD_OUT_WITH_MASK[0], root / "masked.jpg")
    nested = root / "nested" / "deeper"
    nested.mkdir(parents=True)
    shutil.copy(mask_data_dir / "without_mask" / HELD_OUT_WITHOUT_MASK[0], nested / "bare.jpg")
    # A flat grey picture: readable, but no face in it.
    Image.fromarray(np.full((120, 160, 3), 128, dtype=np.uint8)).save(root / "empty.png")
    (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "notes.txt").write_text("not an image extension: skipped when walking folders")
    return root


def test_one_json_line_per_image_found_recursively(folder: Path):
    lines, process = _run(str(folder))
    assert process.returncode == 0, process.stderr
    by_name = {Path(line["path"]).name: line for line in lines}
    assert set(by_name) == {"masked.jpg", "bare.jpg", "empty.png", "broken.jpg"}
    for line in lines:
        assert KEYS <= set(line)

    masked, bare = by_name["masked.jpg"], by_name["bare.jpg"]
    assert masked["face"] is True and masked["masked"] is True and masked["mask_probability"] >= 0.5
    assert bare["face"] is True and bare["masked"] is False and bare["mask_probability"] < 0.5

    empty = by_name["empty.png"]
    assert empty["face"] is False and empty["masked"] is None and empty["mask_probability"] is None
    assert "error" not in empty


def test_unreadable_files_give_an_error_line_instead_of_a_crash(folder: Path):
    missing = folder / "does-not-exist.jpg"
    lines, process = _run(str(folder / "broken.jpg"), str(folder / "notes.txt"), str(missing))
    assert process.returncode == 0, process.stderr
    assert [Path(line["path"]).name for line in lines] == ["broken.jpg", "notes.txt", "does-not-exist.jpg"]
    for line in lines:
        assert line["error"] and line["masked"] is None and line["mask_probability"] is None
    assert lines[0]["reason"] == "not_an_image"


def test_threshold_option_moves_the_decision(folder: Path):
    target = str(folder / "nested" / "deeper" / "bare.jpg")
    [default], _ = _run(target)
    probability = default["mask_probability"]
    [strict], _ = _run(target, "--threshold", "1.0")
    [lenient], _ = _run(target, "--threshold", f"{max(0.0, probability - 1e-4):.6f}")
    assert strict["masked"] is False
    assert lenient["masked"] is True


def test_threshold_outside_zero_to_one_is_refused(folder: Path):
    _, process = _run(str(folder), "--threshold", "1.5")
    assert process.returncode == 2
    assert "threshold" in process.stderr
