"""The fusion embedder: one vector whose cosine is the share-weighted sum of its members' cosines."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.align import align_face
from inference.decode import load_image
from inference.embedders import create_embedder, deployable_embedders, embedder_spec
from inference.embedders.fusion import build_fusion, canvas_to_member
from inference.embedders.fusion_weights import (
    FusionWeights,
    FusionWeightsError,
    FusionWeightsSource,
    MemberCalibration,
    fusion_version,
    load_fusion_weights,
    parse_fusion_weights,
)
from inference.embedders.spec import WeightsSource
from inference.templates import ARCFACE_112, FUSION_CANVAS_144

FUSION = "fusion_sface_intel"
MEMBERS = ("sface", "intel_0095")


@pytest.fixture(scope="module")
def members():
    return [create_embedder(name, device="cpu") for name in MEMBERS]


@pytest.fixture(scope="module")
def fusion(members):
    # Uneven shares, so that a segment mixed up with another would show.
    return build_fusion(embedder_spec(FUSION), members, (0.3, 0.7))


@pytest.fixture(scope="module")
def faces(detector, portraits_dir: Path, lfw_dir: Path):
    paths = [portraits_dir / f"img{i}.jpg" for i in (1, 3, 12, 13)]
    paths += [lfw_dir / name / f"{name}_0001.jpg" for name in ("Abel_Pacheco", "Aaron_Eckhart")]
    found = []
    for path in paths:
        rgb = load_image(path)
        found.append((rgb, detector.largest(rgb)))
    return found


@pytest.fixture(scope="module")
def canvases(faces):
    return [align_face(rgb, face, FUSION_CANVAS_144) for rgb, face in faces]


def _calibration(**changes) -> dict:
    weights = FusionWeights(
        (
            MemberCalibration("sface", embedder_spec("sface").version, 0.01, 0.08, 0.5),
            MemberCalibration("intel_0095", embedder_spec("intel_0095").version, 0.02, 0.10, 0.5),
        )
    )
    data = weights.to_json()
    data.update(changes)
    return data


def test_fusion_cosine_is_the_share_weighted_sum_of_member_cosines(fusion, canvases):
    vectors = fusion.embed(canvases)
    assert vectors.shape == (len(canvases), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    parts = fusion.member_vectors(vectors)
    for part in parts:
        np.testing.assert_allclose(np.linalg.norm(part, axis=1), 1.0, atol=1e-6)
    fused = vectors @ vectors.T
    weighted = 0.3 * parts[0] @ parts[0].T + 0.7 * parts[1] @ parts[1].T
    np.testing.assert_allclose(fused, weighted, atol=1e-6)


def test_each_segment_is_its_member_on_the_crop_warped_from_the_canvas(fusion, members, canvases):
    parts = fusion.member_vectors(fusion.embed(canvases))
    for member, part in zip(members, parts, strict=True):
        matrix = canvas_to_member(FUSION_CANVAS_144, member.spec.template)
        crops = [
            cv2.warpAffine(
                c, matrix, member.spec.template.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            for c in canvases
        ]
        cosines = (member.embed(crops) * part).sum(axis=1)
        assert cosines.min() > 0.999, (member.spec.name, cosines)


def test_a_segment_stays_close_to_the_member_on_its_own_alignment(fusion, members, faces, canvases):
    parts = fusion.member_vectors(fusion.embed(canvases))
    for member, part in zip(members, parts, strict=True):
        direct = member.embed([align_face(rgb, face, member.spec.template) for rgb, face in faces])
        cosines = (direct * part).sum(axis=1)
        assert cosines.min() > 0.99, (member.spec.name, cosines)


def test_the_canvas_is_arcface_scaled_about_the_centre_so_the_flip_commutes():
    matrix = canvas_to_member(FUSION_CANVAS_144, ARCFACE_112)
    np.testing.assert_allclose(matrix[:, :2], np.eye(2) * 112 / 144, atol=1e-9)
    # The canvas's mirror axis (x = 71.5) lands on the member's (x = 55.5).
    np.testing.assert_allclose(matrix @ [71.5, 10.0, 1.0], [55.5, (10.5) * 112 / 144 - 0.5], atol=1e-9)


def test_a_crop_of_another_shape_is_refused(fusion, faces):
    rgb, face = faces[0]
    with pytest.raises(ValueError, match="fusion_canvas_144"):
        fusion.embed([align_face(rgb, face, ARCFACE_112)])
    with pytest.raises(ValueError, match="uint8"):
        fusion.embed([np.zeros((144, 144, 3), dtype=np.float32)])


def test_the_fusion_network_traces_and_freezes_as_one_module(fusion):
    # The pipeline's CPU compilation (inference.cpu_compile) traces `module`; a fusion that
    # could not be traced would silently stay eager.
    import torch

    with torch.no_grad():
        frozen = torch.jit.freeze(torch.jit.trace(fusion.module.eval(), torch.rand(2, 3, 144, 144) * 255))
        batch = torch.rand(3, 3, 144, 144) * 255
        np.testing.assert_allclose(frozen(batch).numpy(), fusion.module(batch).numpy(), rtol=1e-4, atol=1e-4)


def test_the_pipeline_s_compiled_fusion_gives_the_same_vectors(canvases, detector):
    from inference.pipeline import FacePipeline

    pipeline = FacePipeline(FUSION, detector=detector, device="cpu")
    eager = create_embedder(FUSION, device="cpu")
    np.testing.assert_allclose(pipeline.embedder.embed(canvases), eager.embed(canvases), atol=1e-4)


def test_shipped_weights_file_names_the_members_and_versions():
    spec = embedder_spec(FUSION)
    weights = load_fusion_weights(spec.weights_path())
    assert weights.names == MEMBERS
    assert [m.version for m in weights.members] == [embedder_spec(n).version for n in MEMBERS]
    assert spec.dim == sum(embedder_spec(n).dim for n in MEMBERS)
    assert len(spec.version) <= 64
    assert abs(sum(weights.scales()) - 1.0) < 1e-12


def test_the_shares_make_the_fusion_cosine_an_affine_image_of_the_zscore_sum():
    weights = parse_fusion_weights(_calibration())
    a = np.array(weights.scales())
    rng = np.random.default_rng(0)
    for cosines in rng.uniform(-1, 1, size=(20, 2)):
        zscore = sum(
            m.weight * (c - m.impostor_mean) / m.impostor_std
            for m, c in zip(weights.members, cosines, strict=False)
        )
        assert weights.fused_cosine_to_zscore(float(a @ cosines)) == pytest.approx(zscore, abs=1e-9)
    # w / sigma normalised: 0.5 / 0.08 against 0.5 / 0.10.
    assert a == pytest.approx([0.10 / 0.18, 0.08 / 0.18])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other"}, "not a fusion weights document"),
        ({"members": "sface"}, "members must be a list"),
        ({"scales": [0.5, 0.5]}, "scales disagree"),
    ],
)
def test_a_malformed_weights_document_is_refused(change, message):
    with pytest.raises(FusionWeightsError, match=message):
        parse_fusion_weights(_calibration(**change))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("impostor_std", 0.0, "impostor_std must be a positive number"),
        ("impostor_mean", 3.0, "impostor_mean must lie in"),
        ("weight", -0.1, "weight must be >= 0"),
        ("name", "intel_0095", "member names repeat"),
    ],
)
def test_a_member_row_out_of_range_is_refused(field, value, message):
    data = _calibration()
    data["members"][0][field] = value
    data.pop("scales")
    with pytest.raises(FusionWeightsError, match=message):
        parse_fusion_weights(data)


def test_a_member_row_missing_a_field_is_refused():
    data = _calibration()
    del data["members"][1]["impostor_std"]
    with pytest.raises(FusionWeightsError, match="lacks 'impostor_std'"):
        parse_fusion_weights(data)


def test_weights_calibrated_on_another_member_version_are_refused(tmp_path):
    data = _calibration()
    data["members"][0]["version"] = "sface-some-other-weights"
    path = tmp_path / "fusion.json"
    path.write_text(json.dumps(data))
    with pytest.raises(FusionWeightsError, match="calibrated on sface sface-some-other-weights"):
        create_embedder(FUSION, device="cpu", weights=path)


def test_the_factory_uses_the_file_s_shares(tmp_path, canvases):
    path = tmp_path / "fusion.json"
    path.write_text(json.dumps(_calibration()))
    embedder = create_embedder(FUSION, device="cpu", weights=path)
    assert embedder.scales == pytest.approx(parse_fusion_weights(_calibration()).scales())


def test_availability_follows_every_member_s_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERENCE_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "fusion.json").write_text("{}")
    (tmp_path / "a.bin").write_bytes(b"a")
    source = FusionWeightsSource(
        file="fusion.json", member_names=("a", "b"), members=(WeightsSource("a.bin"), WeightsSource("b.bin"))
    )
    assert not source.available
    (tmp_path / "b.bin").write_bytes(b"b")
    assert source.available
    (tmp_path / "fusion.json").unlink()
    assert not source.available


def test_the_registered_fusion_is_deployable_exactly_when_its_members_are(monkeypatch):
    spec = embedder_spec(FUSION)
    assert spec.available == all(embedder_spec(n).available for n in MEMBERS)
    assert (FUSION in deployable_embedders()) == spec.available
    missing = replace(spec.weights.members[0], file="weights/sface/absent.onnx")
    broken = replace(spec, weights=replace(spec.weights, members=(missing, spec.weights.members[1])))
    assert not broken.available


def test_the_version_follows_the_weights_file_and_the_member_versions(tmp_path):
    path = tmp_path / "fusion.json"
    path.write_text("one")
    first = fusion_version("fusion_x-1", path, ("a-1", "b-1"))
    assert fusion_version("fusion_x-1", path, ("a-2", "b-1")) != first
    path.write_text("two")
    assert fusion_version("fusion_x-1", path, ("a-1", "b-1")) != first
    assert len(first) <= 64
