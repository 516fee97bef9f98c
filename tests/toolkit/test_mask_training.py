"""toolkit.mask_training: the data split, the duplicate groups and a short training run on real photos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.inference.test_mask_classifier import HELD_OUT_WITH_MASK, HELD_OUT_WITHOUT_MASK
from toolkit.mask_training.config import CLASSES, TrainConfig
from toolkit.mask_training.data import duplicate_groups, list_images, stratified_group_split

PHOTOS_PER_CLASS = 8


def test_the_split_keeps_copies_on_one_side_and_holds_out_each_class():
    labels = np.repeat([0, 1], 50)
    groups = np.arange(100) // 2  # every photo has one copy
    train, test = stratified_group_split(labels, groups, 0.2, seed=0)
    assert not set(groups[train]) & set(groups[test])
    assert sorted(np.r_[train, test].tolist()) == list(range(100))
    for label in (0, 1):
        assert (labels[test] == label).sum() == 10
    again = stratified_group_split(labels, groups, 0.2, seed=0)
    assert np.array_equal(again[1], test)  # the seed fixes the split


def test_a_copy_of_a_photo_joins_its_group(shared_data: Path, tmp_path: Path):
    import cv2

    photos = list_images(shared_data / "mask-classification" / "without_mask")[:2]
    image = cv2.imread(str(photos[0]))
    cv2.imwrite(str(tmp_path / "copy.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 70])  # re-encoded
    groups = duplicate_groups([str(photos[0]), str(tmp_path / "copy.jpg"), str(photos[1])])
    assert groups[0] == groups[1] != groups[2]


@pytest.mark.slow
def test_the_seed_0_split_of_the_mask_data_holds_out_the_photos_the_classifier_was_measured_on(
    shared_data: Path,
):
    data = shared_data / "mask-classification"
    paths, labels = [], []
    for label, name in enumerate(CLASSES):
        files = list_images(data / name)
        paths += files
        labels += [label] * len(files)
    groups = duplicate_groups([str(p) for p in paths])
    base = TrainConfig(data=data, out=Path("unused.pt"))
    _, test = stratified_group_split(np.array(labels), groups, base.test_fraction, base.seed)
    held_out = {str(paths[i].relative_to(data)) for i in test}
    report = json.loads((REPO_ROOT / "docs" / "benchmarks" / "mask_classifier.json").read_text())
    assert len(np.unique(groups)) == report["split"]["distinct_photos"]
    assert {f"with_mask/{name}" for name in HELD_OUT_WITH_MASK} <= held_out
    assert {f"without_mask/{name}" for name in HELD_OUT_WITHOUT_MASK} <= held_out
    assert {error["path"] for error in report["heldout"]["errors"]} <= held_out


@pytest.fixture(scope="module")
def small_mask_data(shared_data: Path, tmp_path_factory) -> Path:
    """A few real photos of each class, and a copy of one of them."""
    root = tmp_path_factory.mktemp("mask-data")
    for name in CLASSES:
        (root / name).mkdir()
        for photo in list_images(shared_data / "mask-classification" / name)[:PHOTOS_PER_CLASS]:
            shutil.copy(photo, root / name / photo.name)
    first = sorted((root / "with_mask").iterdir())[0]
    shutil.copy(first, root / "with_mask" / f"copy of {first.name}")
    return root


@pytest.mark.slow
def test_one_short_epoch_on_real_photos_writes_weights_the_runtime_loads(
    small_mask_data: Path, shared_data: Path, tmp_path: Path
):
    from inference.mask.classifier import MaskClassifier
    from toolkit.mask_training.train import main

    def train(out: Path) -> dict:
        return main(
            [
                "--data", str(small_mask_data), "--out", str(out), "--epochs", "1", "--threads", "1",
                "--templates", str(shared_data / "mask-overlays"), "--cache-dir", str(tmp_path / "cache"),
                "--report", str(out.with_suffix(".json")), "--histogram", str(out.with_suffix(".png")),
            ]
        )  # fmt: skip

    report = train(tmp_path / "first.pt")
    split = report["split"]
    assert split["distinct_photos"] == 2 * PHOTOS_PER_CLASS  # the copy joined its photo's group
    assert split["train_faces"] + split["heldout_faces"] <= 2 * PHOTOS_PER_CLASS + 1
    assert split["heldout_faces"] >= 2
    [epoch] = report["training"]["history"]
    assert epoch["synthetic"] > 0 and np.isfinite(epoch["loss"])
    assert report["training"]["command"].startswith("python -m toolkit.mask_training.train --data")
    assert json.loads((tmp_path / "first.json").read_text()) == json.loads(json.dumps(report))
    assert (tmp_path / "first.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    classifier = MaskClassifier.from_weights(tmp_path / "first.pt", device="cpu")
    assert classifier.version == "mask_classifier_v2"  # the default --version
    assert sum(report["heldout"]["confusion"].values()) == split["heldout_faces"]

    # The same seed trains the same weights (the meshed chips now come from the cache).
    train(tmp_path / "second.pt")
    second = MaskClassifier.from_weights(tmp_path / "second.pt", device="cpu")
    for name, tensor in classifier.model.state_dict().items():
        assert np.array_equal(tensor.numpy(), second.model.state_dict()[name].numpy()), name


def test_fine_tuning_options_reach_the_training_config(tmp_path: Path):
    from toolkit.mask_training.train import parse_args

    base = parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "w.pt")])
    assert base.init is None and base.version == "mask_classifier_v2"
    # The defaults keep v1's augmentation (same draws for the same seed).
    assert (base.low_res, base.low_res_min, base.lr) == (0.25, 0.25, 3e-3)
    tuned = parse_args(
        [
            "--data", str(tmp_path), "--out", str(tmp_path / "w.pt"), "--init", "v1.pt", "--lr", "1e-3",
            "--low-res", "0.4", "--low-res-min", "0.15", "--version", "mask_classifier_v9",
        ]
    )  # fmt: skip
    assert tuned.init == Path("v1.pt") and tuned.lr == 1e-3 and tuned.version == "mask_classifier_v9"
    assert (tuned.low_res, tuned.low_res_min) == (0.4, 0.15)


def test_augmentation_defaults_are_v1s(tmp_path: Path):
    from toolkit.mask_training.augment import augment

    chip = np.random.default_rng(3).integers(0, 255, (150, 150, 3), dtype=np.uint8)
    a = augment(chip, np.random.default_rng(7))
    b = augment(chip, np.random.default_rng(7), low_res=0.25, low_res_min=0.25)
    assert np.array_equal(a, b)
