"""The LFW mask-tuning set never holds an identity of View-2 folds 6-10 or of the development pairs."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.pairs import parse_pairs
from toolkit.training.data.lfw import (
    DEFAULT_DEV_PAIRS,
    HeldOutLeakError,
    LfwProtocol,
    check_held_out,
    load_protocol,
    mask_tuning_identities,
    training_images,
)


def tiny_protocol() -> LfwProtocol:
    # Ten folds of one same and one different pair. "Both" is named in fold 2 and fold 7: it
    # must go (View-2 promises disjoint folds; the builder does not rely on it).
    lines = ["10 1"]
    for fold in range(1, 11):
        lines.append(f"Same{fold} 1 2")
        other = "Both" if fold in (2, 7) else f"Other{fold}"
        lines.append(f"Diff{fold} 1 {other} 1")
    pairs, _ = parse_pairs("\n".join(lines) + "\n")
    dev, _ = parse_pairs("1 1\nDev 1 2\nDev 1 Unnamed2 1\n")
    return LfwProtocol(tuple(pairs), tuple(dev))


def test_folds_one_to_five_and_unnamed_identities_train_the_rest_is_held_out():
    protocol = tiny_protocol()
    images = {name: [1, 2] for name in protocol.named | {"Dev", "Unnamed", "Unnamed2"}}
    images["Empty"] = []
    chosen = mask_tuning_identities(images, protocol)
    expected = {f"{kind}{fold}" for kind in ("Same", "Diff") for fold in range(1, 6)}
    expected |= {f"Other{fold}" for fold in (1, 3, 4, 5)} | {"Unnamed"}
    assert set(chosen) == expected
    assert list(chosen) == sorted(chosen)
    assert not set(chosen) & protocol.held_out
    assert {"Both", "Dev", "Unnamed2", "Same6", "Other10"} <= protocol.held_out


def test_a_leaked_identity_is_refused_by_name():
    protocol = tiny_protocol()
    check_held_out(["Same1", "Unnamed"], protocol)
    with pytest.raises(HeldOutLeakError, match=r"Same8 \(folds 6-10\)"):
        check_held_out(["Same1", "Same8"], protocol)
    with pytest.raises(HeldOutLeakError, match=r"Dev \(the development pairs\)"):
        check_held_out(["Dev"], protocol)


def test_the_real_lfw_training_set_excludes_folds_6_to_10_and_the_development_pairs(
    shared_data: Path, lfw_dir: Path
):
    pairs, dev_pairs = shared_data / "lfw" / "pairs.txt", DEFAULT_DEV_PAIRS  # docs/benchmarks/dev_pairs.txt
    protocol = load_protocol(pairs, dev_pairs)
    images = training_images(lfw_dir, pairs, dev_pairs)
    names = {image.name for image in images}
    assert names and not names & protocol.test_fold_names and not names & protocol.dev_names
    assert names <= protocol.train_fold_names | (names - protocol.named)
    assert len(protocol.dev_names) > 0 and len(protocol.test_fold_names) > 1000
    assert all(image.path.is_file() for image in images[:50])
    assert images == sorted(images, key=lambda image: (image.name, image.number))
