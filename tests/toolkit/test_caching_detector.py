"""toolkit.eval_jobs.CachingDetector keeps every field alignment reads, YuNet's five points included."""

import shutil
from pathlib import Path

import numpy as np

from toolkit import eval_jobs
from toolkit.eval_jobs import CachingDetector, detector_fingerprint

FACE = Path("Aaron_Peirsol") / "Aaron_Peirsol_0001.jpg"


def test_cached_faces_keep_yunets_five_points(lfw_dir: Path, tmp_path: Path):
    from inference.align import ARCFACE_112, alignment_matrix
    from inference.decode import load_image  # MediaPipe loads here, not when the tests are collected
    from inference.detect import get_face_detector

    cached = CachingDetector(get_face_detector(), tmp_path, "test")
    rgb = load_image(lfw_dir / FACE)
    first = cached.detect(rgb)
    second = cached.detect(rgb)
    assert cached.last_hit
    assert first[0].points5 is not None  # YuNet sees this frontal LFW face
    np.testing.assert_array_equal(first[0].points5, second[0].points5)
    # so "yunet" alignment through the cache is YuNet's, not the mesh's five points
    np.testing.assert_allclose(
        alignment_matrix(second[0], ARCFACE_112, mode="yunet"),
        alignment_matrix(first[0], ARCFACE_112, mode="yunet"),
    )
    assert not np.allclose(
        alignment_matrix(second[0], ARCFACE_112, mode="yunet"),
        alignment_matrix(second[0], ARCFACE_112, mode="five_point"),
    )


def test_cached_faces_without_five_points_stay_without(lfw_dir: Path, tmp_path: Path):
    from inference.decode import load_image
    from inference.detect import FaceDetector

    cached = CachingDetector(FaceDetector(yunet=False), tmp_path, "no-yunet")
    rgb = load_image(lfw_dir / FACE)
    assert cached.detect(rgb)[0].points5 is None
    again = cached.detect(rgb)
    assert cached.last_hit and again[0].points5 is None


def test_cache_files_without_five_points_are_detected_again(lfw_dir: Path, tmp_path: Path):
    from inference.decode import load_image
    from inference.detect import get_face_detector

    cached = CachingDetector(get_face_detector(), tmp_path, "old")
    rgb = load_image(lfw_dir / FACE)
    cached.detect(rgb)
    (path,) = tmp_path.rglob("*.npz")
    with np.load(path) as data:  # a file as written before points5 was kept
        old = {name: data[name] for name in data.files if name != "points5"}
    np.savez(path, **old)
    faces = cached.detect(rgb)
    assert not cached.last_hit and faces[0].points5 is not None


def test_detector_fingerprint_follows_yunet_code(tmp_path: Path, monkeypatch):
    inference = eval_jobs.REPO_ROOT / "inference"
    copy = tmp_path / "inference"
    (copy / "weights" / "yunet").mkdir(parents=True)
    for name in ("detect.py", "yunet.py"):
        shutil.copy(inference / name, copy / name)
    for weights in (inference / "weights" / "yunet").glob("*.onnx"):
        shutil.copy(weights, copy / "weights" / "yunet" / weights.name)
    monkeypatch.setattr(eval_jobs, "REPO_ROOT", tmp_path)
    before = detector_fingerprint()
    (copy / "yunet.py").write_text((copy / "yunet.py").read_text() + "\n# changed\n")
    assert detector_fingerprint() != before
