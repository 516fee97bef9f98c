"""`python -m toolkit.evaluate` on a tiny pairs file of real LFW photos (subprocess, real models)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.embedders import DEFAULT_EMBEDDER, embedder_spec
from toolkit.dev.make_dev_pairs import identity_images
from toolkit.eval_jobs import CachingDetector
from toolkit.evaluate import build_jobs, select_pairs
from toolkit.pairs import parse_pairs

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIRED_KEYS = ("accuracy", "accuracy_std", "auc", "tar_at_far", "threshold", "no_face", "masked_pairs")


@pytest.fixture(scope="module")
def tiny_pairs(lfw_dir: Path, tmp_path_factory) -> Path:
    """2 folds x (2 same + 2 different) pairs from identities with 3+ photos."""
    images = identity_images(lfw_dir)
    names = [name for name, numbers in sorted(images.items()) if len(numbers) >= 3][:8]
    lines = ["2\t2"]
    for fold in range(2):
        a, b, c, d = names[fold * 4 : fold * 4 + 4]
        lines += [f"{a}\t{images[a][0]}\t{images[a][1]}", f"{b}\t{images[b][0]}\t{images[b][2]}"]
        lines += [f"{c}\t{images[c][0]}\t{d}\t{images[d][0]}", f"{a}\t{images[a][2]}\t{c}\t{images[c][1]}"]
    path = tmp_path_factory.mktemp("pairs") / "tiny_pairs.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(module: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_report(report: dict, pairs: int) -> None:
    for key in REQUIRED_KEYS:
        assert key in report, key
    assert report["pairs"] == pairs
    assert set(report["tar_at_far"]) >= {"0.01", "0.001"}
    assert 0.0 <= report["accuracy"] <= 1.0 and report["accuracy_std"] >= 0.0
    assert 0.0 <= report["auc"] <= 1.0
    assert isinstance(report["no_face"], int) and isinstance(report["masked_pairs"], int)


@pytest.mark.slow
def test_evaluate_unmasked(tiny_pairs: Path, lfw_dir: Path, tmp_path: Path):
    out = tmp_path / "eval.json"
    done = run_cli(
        "toolkit.evaluate", "--root", str(lfw_dir), "--pairs", str(tiny_pairs), "--json", str(out),
        "--cache-dir", str(tmp_path / "cache"), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(done.stdout) == report  # standard output is the same JSON document
    check_report(report, 8)
    assert report["no_face"] == 0
    assert report["accuracy"] >= 0.75 and report["auc"] >= 0.9  # real faces, the real model
    assert report["masked_pairs"] == 0
    assert set(report["strategies"]) == {"synthetic", "cutout", "plain"}
    assert report["stage_ms"]["probe"]["embed"]["median"] > 0
    assert report["stage_ms"]["probe"]["detect"]["median"] > 0
    png = Path(report["roc_png"])
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A second run is served from the cache and gives the same numbers, and per-pair scores.
    scores = tmp_path / "scores.csv"
    again = run_cli(
        "toolkit.evaluate", "--root", str(lfw_dir), "--pairs", str(tiny_pairs),
        "--cache-dir", str(tmp_path / "cache"), "--quiet", "--scores", str(scores),
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 to process" in again.stderr
    assert json.loads(again.stdout)["accuracy"] == report["accuracy"]
    with open(scores, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and {r["fold"] for r in rows} == {"1", "2"}
    assert [r["same"] for r in rows[:4]] == ["1", "1", "0", "0"]
    assert rows[0]["enrolled"].endswith(".jpg") and float(rows[0]["probe_mask_probability"]) < 0.5
    # Same-person pairs of this file score above different-person ones on average.
    same = [float(r["cutout"]) for r in rows if r["same"] == "1"]
    different = [float(r["cutout"]) for r in rows if r["same"] == "0"]
    assert np.mean(same) > np.mean(different)

    # Jittering only the probes reuses every cached enrollment.
    probes_jittered = run_cli(
        "toolkit.evaluate", "--root", str(lfw_dir), "--pairs", str(tiny_pairs),
        "--cache-dir", str(tmp_path / "cache"), "--quiet", "--jitter", "1",
    )  # fmt: skip
    assert probes_jittered.returncode == 0, probes_jittered.stderr[-3000:]
    pairs, _ = parse_pairs(tiny_pairs.read_text())
    jobs = {job for pair in build_jobs(pairs, lfw_dir, "none", probe_role="probe") for job in pair}
    enrolled = sum(job.role == "enroll" for job in jobs)
    expected = f"{len(jobs)} images: {enrolled} cached, {len(jobs) - enrolled} to process"
    assert expected in probes_jittered.stderr


@pytest.mark.slow
def test_evaluate_with_a_mask_on_the_second_image(tiny_pairs: Path, lfw_dir: Path, tmp_path: Path):
    out = tmp_path / "masked.json"
    done = run_cli(
        "toolkit.evaluate", "--root", str(lfw_dir), "--pairs", str(tiny_pairs),
        "--synthetic-mask", "second",
        "--mask-strategy", "cutout", "--json", str(out), "--roc", str(tmp_path / "masked.png"),
        "--cache-dir", str(tmp_path / "cache"), "--workers", "2", "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    check_report(report, 8)
    assert report["synthetic_mask"] == "second" and report["mask_strategy"] == "cutout"
    assert report["overlay_failed"] == 0
    assert report["masked_pairs"] >= 6  # the classifier sees most overlaid masks
    assert report["enrolled_masked"] == 0
    for name in ("synthetic", "cutout", "plain"):
        assert 0.0 <= report["strategies"][name]["accuracy"] <= 1.0
    assert report["accuracy"] == report["strategies"]["cutout"]["accuracy"]
    assert (tmp_path / "masked.png").is_file()


@pytest.mark.slow
def test_evaluate_all_modes_share_one_pass_and_leave_no_pair_unscored(
    tiny_pairs: Path, lfw_dir: Path, tmp_path: Path
):
    cache = str(tmp_path / "cache")
    done = run_cli(
        "toolkit.evaluate", "--root", str(lfw_dir), "--pairs", str(tiny_pairs), "--synthetic-mask", "all",
        "--json", str(tmp_path / "eval_{mode}.json"), "--cache-dir", cache, "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout)
    assert document["synthetic_mask"] == "all" and set(document["modes"]) == {
        "none",
        "first",
        "second",
        "both",
    }
    # Each image is processed once plain and once with its overlay, whatever the four modes need.
    paths = {p for line in tiny_pairs.read_text().splitlines()[1:] for p in _pair_paths(line)}
    assert f"{2 * len(paths)} images: 0 cached, {2 * len(paths)} to process" in done.stderr
    for mode in ("none", "first", "second", "both"):
        report = json.loads((tmp_path / f"eval_{mode}.json").read_text())
        check_report(report, 8)
        assert report["synthetic_mask"] == mode and (tmp_path / f"eval_{mode}.png").is_file()
        assert report["unscored_pairs"] == 0 and report["no_face"] == 0
        assert report["strategies"]["cutout"]["unscored_pairs"] == 0
        assert report["strategies"]["synthetic"]["unscored_pairs"] == 0
    first = json.loads((tmp_path / "eval_first.json").read_text())
    # The enrolled side wears the mask: every pair is compared in the mask-aware space.
    assert first["enrolled_masked"] >= 6 and first["masked_pairs"] == 0
    assert first["strategies"]["cutout"]["masked_space_pairs"] == 8
    default = embedder_spec(DEFAULT_EMBEDDER)  # the evaluation runs the registry default
    assert first["decision_thresholds"] == {
        "unmasked": default.default_threshold_unmasked,
        "masked": default.default_threshold_masked,
    }

    # A single mode afterwards is served from the same cache.
    again = run_cli(
        "toolkit.evaluate", "--root", str(lfw_dir), "--pairs", str(tiny_pairs), "--synthetic-mask", "first",
        "--cache-dir", cache, "--quiet",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 to process" in again.stderr
    assert json.loads(again.stdout)["accuracy"] == first["accuracy"]


def _pair_paths(line: str) -> list[tuple[str, int]]:
    fields = line.split("\t")
    if len(fields) == 3:
        return [(fields[0], int(fields[1])), (fields[0], int(fields[2]))]
    return [(fields[0], int(fields[1])), (fields[2], int(fields[3]))]


@pytest.mark.slow
def test_evaluate_peer_pipeline(tiny_pairs: Path, lfw_dir: Path, tmp_path: Path):
    done = run_cli(
        "toolkit.evaluate", "--root", str(lfw_dir), "--pairs", str(tiny_pairs), "--pipeline", "peer",
        "--limit", "4", "--cache-dir", str(tmp_path / "cache"), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    check_report(report, 4)
    assert set(report["strategies"]) == {"peer"}


def test_bad_arguments_fail_cleanly(tiny_pairs: Path, lfw_dir: Path):
    done = run_cli(
        "toolkit.evaluate", "--root", str(lfw_dir), "--pairs", str(tiny_pairs), "--synthetic-mask", "x"
    )
    assert done.returncode == 2 and "invalid choice" in done.stderr


def test_select_pairs_keeps_folds_and_sides_balanced(tiny_pairs: Path):
    pairs, _ = parse_pairs(tiny_pairs.read_text())
    chosen = select_pairs(pairs, None, 4)
    assert len(chosen) == 4
    assert {(p.fold, p.same) for p in chosen} == {(0, True), (0, False), (1, True), (1, False)}
    assert all(p.fold == 1 for p in select_pairs(pairs, [2], None))


def test_caching_detector_gives_back_the_same_faces(lfw_dir: Path, tmp_path: Path):
    from inference.decode import load_image  # MediaPipe loads here, not when the tests are collected
    from inference.detect import get_face_detector

    cached = CachingDetector(get_face_detector(), tmp_path, "test")
    rgb = load_image(lfw_dir / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg")
    first = cached.detect(rgb)
    assert not cached.last_hit and first
    second = cached.detect(rgb)
    assert cached.last_hit and cached.last_ms > 0
    assert len(first) == len(second)
    np.testing.assert_array_equal(first[0].landmarks, second[0].landmarks)
    assert first[0].bbox == second[0].bbox and first[0].source == second[0].source
