"""Identity-level splits and held-out verification pairs; image folders listed deterministically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from toolkit.training.data.folders import ImageFolderDataset, UnlabelledFaceFolder, list_identities
from toolkit.training.data.splits import (
    dense_labels,
    split_identities,
    split_samples,
    verification_pairs,
)

NAMES = [f"person_{i:04d}" for i in range(2000)]


def test_the_identity_split_is_deterministic_disjoint_and_complete():
    split = split_identities(NAMES, 0.1, seed=3)
    assert split == split_identities(list(reversed(NAMES)), 0.1, seed=3)
    assert not set(split.train) & set(split.validation)
    assert sorted(split.train + split.validation) == NAMES
    assert 150 <= len(split.validation) <= 250  # about 10%
    assert split_identities(NAMES, 0.1, seed=4).validation != split.validation


def test_adding_identities_moves_no_existing_one():
    before = split_identities(NAMES[:1000], 0.2, seed=0)
    after = split_identities(NAMES, 0.2, seed=0)
    assert set(before.validation) == set(after.validation) & set(NAMES[:1000])
    assert set(before.train) == set(after.train) & set(NAMES[:1000])


def test_samples_follow_their_identity():
    identities = [name for name in NAMES[:300] for _ in range(3)]
    train, validation = split_samples(identities, 0.25, seed=1)
    assert not {identities[i] for i in train} & {identities[i] for i in validation}
    assert sorted(np.r_[train, validation].tolist()) == list(range(len(identities)))
    labels, names = dense_labels([identities[i] for i in train])
    assert labels.max() == len(names) - 1 and names == sorted(names)


def test_verification_pairs_are_seeded_and_true_to_identity():
    split = split_identities(NAMES[:400], 0.25, seed=0)
    identities = [name for name in split.validation for _ in range(4)]
    pairs = verification_pairs(identities, genuine=100, seed=7)
    assert pairs.shape == (200, 3)
    np.testing.assert_array_equal(pairs, verification_pairs(identities, genuine=100, seed=7))
    assert not np.array_equal(pairs, verification_pairs(identities, genuine=100, seed=8))
    for i, j, same in pairs:
        assert i != j and (identities[i] == identities[j]) == bool(same)
    impostors = {(i, j) for i, j, same in pairs if not same}
    assert len(impostors) == 100  # no pair twice
    assert {identities[i] for i, _, _ in pairs} <= set(split.validation)


def test_pairs_cap_each_identity_and_refuse_impossible_requests():
    identities = ["a"] * 20 + ["b"] * 2
    pairs = verification_pairs(identities, max_genuine_per_identity=5, seed=0)
    assert int(pairs[:, 2].sum()) == 6  # 5 of a's 190 pairs, b's only pair
    with pytest.raises(ValueError, match="at least two identities"):
        verification_pairs(["a", "a"], seed=0)
    with pytest.raises(ValueError, match="only 1 exist"):
        verification_pairs(["a", "b"], genuine=0, impostor=2, seed=0)


def test_image_folders_are_listed_sorted_and_labelled_by_name(tmp_path: Path):
    import cv2

    image = np.full((8, 8, 3), 200, dtype=np.uint8)
    for relative in ("zed/b.jpg", "zed/a.png", "amy/x.jpg", "empty/notes.txt", "amy/deeper/y.jpg"):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".txt":
            path.write_text("not an image")
        else:
            cv2.imwrite(str(path), image)
    names, samples = list_identities(tmp_path)
    assert names == ["amy", "zed"]
    assert [(p.relative_to(tmp_path).as_posix(), label) for p, label in samples] == [
        ("amy/x.jpg", 0),
        ("zed/a.png", 1),
        ("zed/b.jpg", 1),
    ]
    assert list_identities(tmp_path, min_images=2)[0] == ["zed"]
    dataset = ImageFolderDataset(tmp_path)
    rgb, label = dataset[2]
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8 and label == 1
    unlabelled = UnlabelledFaceFolder(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in unlabelled.paths] == [
        "amy/deeper/y.jpg",
        "amy/x.jpg",
        "zed/a.png",
        "zed/b.jpg",
    ]
    assert unlabelled[0].shape == (8, 8, 3)
