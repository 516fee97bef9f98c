"""The LFW View-2 pairs format and the development pairs generator."""

from pathlib import Path

import pytest

from toolkit.dev.make_dev_pairs import identity_images
from toolkit.dev.make_dev_pairs import main as make_dev_pairs_main
from toolkit.pairs import PairsFormatError, format_pairs, image_path, parse_pairs, read_pairs

TINY = "2 2\nA\t1\t2\nB 1 3\nA\t1\tB\t2\nC 4 D 1\nE 1 2\nF\t2   3\nE 1 F 1\nG 2\tH 3\n"


def test_parse_folds_sides_and_separators():
    pairs, folds = parse_pairs(TINY)
    assert folds == 2 and len(pairs) == 8
    assert [p.fold for p in pairs] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    assert pairs[0].first == ("A", 1) and pairs[0].second == ("A", 2)
    assert pairs[3].first == ("C", 4) and pairs[3].second == ("D", 1)
    assert pairs[5].first == ("F", 2) and pairs[5].second == ("F", 3)


def test_single_number_header_is_one_fold():
    pairs, folds = parse_pairs("1\nA 1 2\nA 1 B 1\n")
    assert folds == 1 and [p.same for p in pairs] == [True, False]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("x y\nA 1 2\n", "header"),
        ("1 2\nA 1 2\nA 1 B 1\n", "lines"),
        ("1 1\nA 1 B 2\nA 1 B 1\n", "same-person"),
        ("1 1\nA 1 2\nA 1 2\n", "different-person"),
        ("1 1\nA one 2\nA 1 B 1\n", "integers"),
    ],
)
def test_malformed_files_name_the_problem(text, message):
    with pytest.raises(PairsFormatError, match=message):
        parse_pairs(text)


def test_format_round_trip():
    pairs, folds = parse_pairs(TINY)
    again, folds_again = parse_pairs(format_pairs(pairs, folds))
    assert again == pairs and folds_again == folds


def test_image_path_prefers_an_existing_extension(tmp_path: Path):
    (tmp_path / "Ann").mkdir()
    (tmp_path / "Ann" / "Ann_0002.png").write_bytes(b"")
    assert image_path(tmp_path, "Ann", 2).name == "Ann_0002.png"
    assert image_path(tmp_path, "Ann", 1) == tmp_path / "Ann" / "Ann_0001.jpg"


def test_lfw_view2_pairs_file(shared_data: Path, lfw_dir: Path):
    pairs, folds = read_pairs(shared_data / "lfw" / "pairs.txt")
    assert folds == 10 and len(pairs) == 6000
    assert sum(p.same for p in pairs) == 3000
    assert all(sum(1 for p in pairs if p.fold == f) == 600 for f in range(10))
    for pair in pairs[::97]:
        assert image_path(lfw_dir, *pair.first).is_file()
        assert image_path(lfw_dir, *pair.second).is_file()


def test_dev_pairs_leave_out_every_test_identity(shared_data: Path, lfw_dir: Path, tmp_path: Path):
    out = tmp_path / "dev.txt"
    args = ["--root", str(lfw_dir), "--exclude", str(shared_data / "lfw" / "pairs.txt"), "--out", str(out)]
    assert make_dev_pairs_main(args) == 0
    dev, folds = read_pairs(out)
    test, _ = read_pairs(shared_data / "lfw" / "pairs.txt")
    test_names = {name for p in test for name in p.names}
    assert folds == 10 and len(dev) >= 200
    assert not {name for p in dev for name in p.names} & test_names
    assert all(p.first[0] == p.second[0] for p in dev if p.same)
    assert all(p.first[0] != p.second[0] for p in dev if not p.same)
    images = identity_images(lfw_dir)
    assert all(p.first[1] in images[p.first[0]] and p.second[1] in images[p.second[0]] for p in dev)
    # A fixed seed: the same file every time.
    again = tmp_path / "again.txt"
    make_dev_pairs_main(args[:-1] + [str(again)])
    assert again.read_text() == out.read_text()
