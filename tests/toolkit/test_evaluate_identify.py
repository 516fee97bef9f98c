"""`python -m toolkit.evaluate_identify`: the 1:N protocol, its scoring, and the CLI on a few LFW
identities (real models, in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.comparison import Thresholds
from toolkit.eval_jobs import Record
from toolkit.evaluate_identify import Gallery, build_protocol, identity_photos

REPO_ROOT = Path(__file__).resolve().parents[2]


def photos_of(counts: dict[str, int]) -> dict[str, list[str]]:
    return {name: [f"/d/{name}/{name}_{i:04d}.jpg" for i in range(1, n + 1)] for name, n in counts.items()}


def test_the_protocol_enrolls_one_photo_per_identity_and_probes_with_the_rest():
    photos = photos_of({"a": 3, "b": 2, "c": 2, "d": 1, "e": 4})
    protocol = build_protocol(photos, 2, seed=3)
    enrolled = {name for name, _ in protocol.gallery}
    assert len(enrolled) == 2 and enrolled <= {"a", "b", "c", "e"} and protocol.eligible == 4
    assert all(path == photos[name][0] for name, path in protocol.gallery)
    assert {(n, p) for n, p in protocol.mated} == {(n, p) for n in enrolled for p in photos[n][1:]}
    not_enrolled = set(photos) - enrolled
    assert set(protocol.nonmated) == {p for n in not_enrolled for p in photos[n]}
    assert "d" in not_enrolled  # one photo: never enrolled, always a non-mated search


def test_galleries_of_one_seed_are_nested_so_one_embedding_pass_serves_every_size():
    photos = photos_of({f"id{i:03d}": 2 + i % 3 for i in range(60)})
    small, large = build_protocol(photos, 10), build_protocol(photos, 40)
    assert set(small.gallery) <= set(large.gallery)
    everyone = build_protocol(photos, None)
    assert len(everyone.gallery) == 60 and everyone.nonmated == ()
    assert build_protocol(photos, 10, seed=1).gallery != small.gallery
    sampled = build_protocol(photos, 10, max_nonmated=7)
    assert len(sampled.nonmated) == 7 and set(sampled.nonmated) <= set(small.nonmated)


@pytest.mark.parametrize("size", [0, 62])
def test_a_gallery_larger_than_the_identities_with_two_photos_is_refused(size):
    with pytest.raises(ValueError, match="gallery-size"):
        build_protocol(photos_of({f"id{i}": 2 for i in range(61)} | {"x": 1}), size)


def unit_rows(rng: np.random.Generator, count: int, dim: int = 8) -> np.ndarray:
    rows = rng.standard_normal((count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def kinds_record(rng: np.random.Generator, *, masked: bool = False, unsure: bool = False) -> Record:
    vectors = unit_rows(rng, 4)
    kinds = {kind: vectors[i : i + 1] for i, kind in enumerate(("full", "cutout", "own", "rendered"))}
    return Record(face=True, masked=masked, mask_unsure=unsure, embeddings={"kinds": kinds})


def test_gallery_scores_pairs_in_the_space_the_product_would():
    rng = np.random.default_rng(0)
    thresholds = Thresholds(unmasked=0.9, masked=0.95)
    plain, masked_photo = kinds_record(rng), kinds_record(rng, masked=True)
    records = [plain, masked_photo, Record(face=False)]  # the last: enrolled without a face
    gallery = Gallery(["a", "b", "c"], records, "cutout", thresholds)
    probe = kinds_record(rng)
    scores = gallery.scores(probe)
    full, cutout = probe.embeddings["kinds"]["full"][0], probe.embeddings["kinds"]["cutout"][0]
    # Both unmasked: full face against full face.
    assert scores[0] == pytest.approx(float(plain.embeddings["kinds"]["full"][0] @ full))
    # A photo enrolled with a mask on has no full-face template: the mask-aware space (cutout).
    assert scores[1] == pytest.approx(float(masked_photo.embeddings["kinds"]["cutout"][0] @ cutout))
    assert scores[2] == -np.inf
    masked_probe = kinds_record(rng, masked=True)
    assert gallery.scores(masked_probe)[0] == pytest.approx(
        float(plain.embeddings["kinds"]["cutout"][0] @ masked_probe.embeddings["kinds"]["cutout"][0])
    )
    assert np.all(gallery.scores(Record(face=False)) == -np.inf)


def test_an_unsure_probe_is_scored_by_the_stricter_of_both_spaces():
    rng = np.random.default_rng(1)
    thresholds = Thresholds(unmasked=0.0, masked=0.0)
    enrolled = kinds_record(rng)
    probe = kinds_record(rng, unsure=True)
    score = Gallery(["a"], [enrolled], "cutout", thresholds).scores(probe)[0]
    full = float(enrolled.embeddings["kinds"]["full"][0] @ probe.embeddings["kinds"]["full"][0])
    cutout = float(enrolled.embeddings["kinds"]["cutout"][0] @ probe.embeddings["kinds"]["cutout"][0])
    assert score == pytest.approx(min(full, cutout))  # equal thresholds: the lower similarity decides


@pytest.fixture(scope="module")
def tiny_root(lfw_dir: Path, tmp_path_factory) -> Path:
    """Three identities with two photos, two with one: LFW's folders, linked."""
    photos = identity_photos(lfw_dir)
    pairs = [name for name, files in photos.items() if len(files) >= 2][:3]
    singles = [name for name, files in photos.items() if len(files) == 1][:2]
    root = tmp_path_factory.mktemp("identify_root")
    for name in pairs + singles:
        (root / name).mkdir()
        for path in photos[name][:2]:
            (root / name / Path(path).name).symlink_to(path)
    return root


@pytest.mark.slow
def test_the_cli_writes_fnir_at_fpir_rank1_and_the_det_curve(tiny_root: Path, tmp_path: Path):
    out = tmp_path / "identify.json"
    command = [
        sys.executable,
        "-m",
        "toolkit.evaluate_identify",
        "--root",
        str(tiny_root),
        "--gallery-size",
        "2",
    ]
    command += ["--json", str(out), "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["fnir_at_fpir"]) == {"0.01", "0.001"}
    assert all(0.0 <= value <= 1.0 for value in report["fnir_at_fpir"].values())
    assert 0.0 <= report["rank1_hit_rate"] <= 1.0
    assert report["gallery_size"] == 2
    assert report["probes"]["mated"] == 2 and report["probes"]["nonmated"] == 4
    assert not report["operating_points"]["0.001"]["measurable"]  # 4 non-mated searches cannot show 0.1%
    assert report["det"] and {"threshold", "fpir", "fnir"} <= set(report["det"][0])
    assert Path(report["det_png"]).read_bytes()[:4] == b"\x89PNG"
    assert report["command"].startswith("python -m toolkit.evaluate_identify")
    assert "load_average_start" in report["machine"]


def test_the_cli_refuses_a_root_that_is_not_a_folder(tmp_path: Path):
    from toolkit.evaluate_identify import main

    with pytest.raises(SystemExit, match="not a folder"):
        main(["--root", str(tmp_path / "nope"), "--gallery-size", "2", "--json", str(tmp_path / "o.json")])
