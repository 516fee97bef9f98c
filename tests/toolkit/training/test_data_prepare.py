"""The face pack: real photos through the product's detector and aligner, masks rendered, rows marked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from toolkit.training.data.pack import MASK_KINDS, PackFormatError, load_pack
from toolkit.training.data.prepare import main, mask_rows


def test_mask_rows_run_from_the_base_of_the_nose_to_the_chin_inside_the_chip():
    points = np.zeros((478, 2), dtype=np.float32)
    points[[2, 98, 327], 1] = (80.2, 78.0, 79.0)
    points[152, 1] = 120.4
    assert mask_rows(points, 128) == (81, 121)
    points[152, 1] = 140.0  # chin below the chip
    assert mask_rows(points, 128) == (81, 128)


def test_a_file_that_is_not_a_pack_is_refused(tmp_path: Path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(PackFormatError, match="missing"):
        load_pack(tmp_path / "other.npz")
    with pytest.raises(PackFormatError, match="not found"):
        load_pack(tmp_path / "absent.npz")


def test_an_unknown_template_is_a_clear_error(tmp_path: Path):
    with pytest.raises(SystemExit, match="unknown template 'NOPE_99'"):
        main(["--root", str(tmp_path), "--template", "NOPE_99", "--out", str(tmp_path / "p.npz")])


@pytest.mark.slow
def test_prepare_packs_aligned_and_masked_chips_and_skips_a_photo_without_a_face(
    lfw_dir: Path, tmp_path: Path
):
    root = tmp_path / "faces"
    for name, numbers in (("Aaron_Peirsol", (1, 2)), ("Aaron_Patterson", (1,))):
        (root / name).mkdir(parents=True)
        for number in numbers:
            shutil.copy(lfw_dir / name / f"{name}_{number:04d}.jpg", root / name)
    (root / "Nobody").mkdir()
    import cv2

    cv2.imwrite(str(root / "Nobody" / "Nobody_0001.jpg"), np.full((120, 120, 3), 128, dtype=np.uint8))
    out = tmp_path / "pack.npz"
    argv = ["--root", str(root), "--set", "folder", "--embedder", "intel_0095", "--synthetic-masks", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    pack = load_pack(out)
    assert pack.meta["listed"] == 4 and pack.meta["no_face"] == 1
    assert pack.meta["skipped"] == [{"path": "Nobody/Nobody_0001.jpg", "reason": "no_face"}]
    assert (pack.meta["template"], pack.meta["align_mode"], pack.meta["masked_align_mode"]) == (
        "intel_128",
        "five_point",
        "mesh",
    )
    assert pack.chips.shape == (3, 128, 128, 3) and pack.chips.dtype == np.uint8
    assert pack.masked.shape == (3, 2, 128, 128, 3)
    assert pack.landmarks.shape == pack.masked_landmarks.shape == (3, 478, 2)
    assert pack.names.tolist() == ["Aaron_Patterson", "Aaron_Peirsol"]
    assert pack.labels.tolist() == [0, 1, 1] and pack.numbers.tolist() == [1, 1, 2]
    assert pack.single.tolist() == [True, False, False]
    assert pack.identities.tolist() == ["Aaron_Patterson", "Aaron_Peirsol", "Aaron_Peirsol"]
    assert len(pack.subset([2])) == 1 and pack.subset([2]).numbers.tolist() == [2]
    assert all(MASK_KINDS[k] != "overlay" for k in pack.mask_kind.ravel())
    # The eyes land on the template's eye points; the mask rows sit below them, in the lower face.
    eyes = pack.landmarks[:, [468, 473]]  # iris centres
    assert np.all(np.abs(eyes[:, :, 1] - 0.46 * 128) < 8)
    for top, bottom in np.r_[pack.mask_rows, pack.masked_mask_rows]:
        assert 70 < top < bottom <= 128
    # The masked renders change the lower face and leave the eyes.
    clean, masked = pack.chips.astype(int), pack.masked[:, 0].astype(int)
    lower = np.abs(clean[:, 100:] - masked[:, 100:]).mean()
    upper = np.abs(clean[:, 45:65] - masked[:, 45:65]).mean()
    assert lower > 20 > upper
    summary = json.loads(json.dumps(pack.meta))
    assert summary["command"].startswith("python -m toolkit.training.data.prepare")
