"""The reference impostor distributions: which pairs are impostors, copies removed, what is shipped."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.openset import SPACE_UNMASKED, load_references
from inference.variants import VARIANT_CUTOUT, VARIANT_SYNTHETIC
from toolkit.dev.reference_impostors import FOLDERS, collect_photos, impostor_scores


def kinds(rng: np.random.Generator) -> dict[str, np.ndarray]:
    rows = rng.standard_normal((4, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return {kind: rows[i : i + 1] for i, kind in enumerate(("full", "cutout", "own", "rendered"))}


def test_impostor_pairs_skip_the_same_person_and_the_same_photo():
    rng = np.random.default_rng(0)
    paths = ["u1", "u2", "u3", "u4", "m1", "m2"]
    vectors = {p: kinds(rng) for p in paths}
    masked = {p: p.startswith("m") for p in paths}
    keys = {
        "u1": "person:a",
        "u2": "person:a",
        "u3": "group:3",
        "u4": "group:4",
        "m1": "group:5",
        "m2": "group:6",
    }
    scores = impostor_scores(vectors, masked, keys)
    assert scores[SPACE_UNMASKED].size == 6 - 1  # 4 unmasked photos: 6 pairs, one of them the same person
    expected = float(vectors["u3"]["full"][0] @ vectors["u4"]["full"][0])
    assert np.isclose(scores[SPACE_UNMASKED], expected).sum() == 1
    assert scores[VARIANT_CUTOUT].size == 2 * 4  # each masked probe against every unmasked photo
    # The synthetic space: a masked probe as it is ("own") against unmasked photos' rendered masks.
    m1_u1 = float(vectors["m1"]["own"][0] @ vectors["u1"]["rendered"][0])
    m1_m2 = float(vectors["m1"]["own"][0] @ vectors["m2"]["own"][0])
    assert np.isclose(scores[VARIANT_SYNTHETIC], m1_u1).any()
    assert not np.isclose(scores[VARIANT_SYNTHETIC], m1_m2).any()  # masked against masked: left out


def test_copies_are_kept_once_and_named_portraits_are_grouped_by_person(tmp_path: Path):
    rng = np.random.default_rng(1)
    for folder in FOLDERS:
        (tmp_path / folder).mkdir(parents=True)
    face = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / FOLDERS[0] / "0_0_0.jpg"), face)
    cv2.imwrite(str(tmp_path / FOLDERS[0] / "0_0_0 copy 10.jpg"), face)  # a copy: one of the two stays
    cv2.imwrite(str(tmp_path / FOLDERS[1] / "other.jpg"), (rng.random((64, 64, 3)) * 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / FOLDERS[0] / "augmented_image_3.jpg"), face[::-1])  # left out
    for name in ("0_0_anhu_0001.jpg", "0_0_anhu_0002.jpg"):  # one named person
        cv2.imwrite(str(tmp_path / FOLDERS[0] / name), (rng.random((64, 64, 3)) * 255).astype(np.uint8))
    for name in ("img1.jpg", "img2.jpg"):
        cv2.imwrite(str(tmp_path / "portraits" / name), (rng.random((64, 64, 3)) * 255).astype(np.uint8))
    (tmp_path / "portraits" / "identities.txt").write_text("id00 img1.jpg img2.jpg\n")
    paths, keys = collect_photos(tmp_path)
    assert len(paths) == 6 and not any("augmented" in p for p in paths)
    assert sum("0_0_0" in Path(p).name for p in paths) == 1
    named = {Path(p).name: k for p, k in zip(paths, keys, strict=True)}
    assert named["img1.jpg"] == named["img2.jpg"] == "person:id00"
    assert named["0_0_anhu_0001.jpg"] == named["0_0_anhu_0002.jpg"] == "person:anhu"
    assert len(set(keys)) == 4


@pytest.mark.parametrize("space", [SPACE_UNMASKED, VARIANT_CUTOUT, VARIANT_SYNTHETIC])
def test_dlib_ships_a_reference_deep_enough_for_large_galleries(space):
    reference = load_references("dlib_resnet_v1").get(space)
    assert reference is not None, "inference/weights/reference_impostors/dlib_resnet_v1.json lacks " + space
    assert reference.n >= 100_000 and reference.tail is not None
    # 1,000 persons at FPIR 1% need FAR ~1e-5 per comparison: answered, above the impostors' mean.
    estimate = reference.threshold_for_far(1e-5)
    assert estimate.threshold > reference.quantiles[0][1]
    assert reference.threshold_for_far(1e-7).threshold >= estimate.threshold
