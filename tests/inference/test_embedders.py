import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.align import ARCFACE_112, DLIB_150, align_face
from inference.decode import load_image
from inference.embedders import (
    DEFAULT_EMBEDDER,
    EmbedderSpec,
    UnknownEmbedderError,
    WeightsUnavailableError,
    available_embedders,
    create_embedder,
    deployable_embedders,
    embedder_spec,
)
from inference.embedders.dlib_resnet import default_weights_path, load_dlib_resnet
from inference.embedders.iresnet import LAYERS, build_iresnet
from inference.embedders.spec import WEIGHTS_DIR_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dlib_embedder():
    return create_embedder("dlib_resnet_v1", device="cpu")


@pytest.fixture(scope="module")
def chips(detector, portraits_dir: Path, lfw_dir: Path) -> list[np.ndarray]:
    paths = [portraits_dir / f"img{i}.jpg" for i in (1, 3, 12, 13, 16, 22)]
    paths += [
        lfw_dir / name / f"{name}_0001.jpg" for name in ("Abel_Pacheco", "Aaron_Eckhart", "Akhmed_Zakayev")
    ]
    crops = []
    for path in paths:
        rgb = load_image(path)
        crops.append(align_face(rgb, detector.largest(rgb), DLIB_150))
    return crops


def _lfw_pairs(pairs_file: Path, per_kind: int) -> tuple[list[tuple], list[tuple]]:
    lines = pairs_file.read_text().splitlines()
    _, n = (int(v) for v in lines[0].split())
    same = [line.split() for line in lines[1 : 1 + n]][:per_kind]
    different = [line.split() for line in lines[1 + n : 1 + 2 * n]][:per_kind]
    return (
        [((p[0], int(p[1])), (p[0], int(p[2]))) for p in same],
        [((p[0], int(p[1])), (p[2], int(p[3]))) for p in different],
    )


def test_matches_dlib_within_1e_4(dlib_embedder, chips):
    dlib = pytest.importorskip("dlib")
    reference_model = dlib.face_recognition_model_v1(str(default_weights_path()))
    reference = np.array([np.array(reference_model.compute_face_descriptor(chip)) for chip in chips])

    ours = dlib_embedder.embed(chips, flip=False, normalize=False)

    assert ours.shape == (len(chips), 128)
    assert np.abs(ours - reference).max() < 1e-4
    normalised = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    assert np.abs(dlib_embedder.embed(chips, flip=False) - normalised).max() < 1e-4


def test_network_has_dlibs_parameter_count():
    module = load_dlib_resnet()
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 29
    assert len(module.blocks) == 14
    # The file's 5,614,592 parameters: conv weights and biases, affine gamma and beta per channel
    # (folded into the conv weights and biases here) and the 256x128 fc without bias.
    folded = sum(p.numel() for p in module.parameters())
    affine = sum(2 * c.out_channels for c in convs)
    assert folded + affine == 5_614_592


def test_embeddings_are_unit_length_float32(dlib_embedder, chips):
    vectors = dlib_embedder.embed(chips)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_flip_averages_the_crop_and_its_mirror(dlib_embedder, chips):
    mirrored = [np.ascontiguousarray(chip[:, ::-1]) for chip in chips]
    raw = dlib_embedder.embed(chips, flip=False, normalize=False)
    raw_mirrored = dlib_embedder.embed(mirrored, flip=False, normalize=False)
    expected = (raw + raw_mirrored) / 2
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)

    flipped = dlib_embedder.embed(chips, flip=True)

    assert np.abs(flipped - expected).max() < 1e-5
    # So a photo and its mirror image get the same vector.
    assert np.abs(dlib_embedder.embed(mirrored, flip=True) - flipped).max() < 1e-5


def test_batch_size_does_not_change_the_vectors(dlib_embedder, chips):
    one_by_one = dlib_embedder.embed(chips, batch_size=1)
    batched = dlib_embedder.embed(chips, batch_size=32)
    assert np.abs(one_by_one - batched).max() < 1e-5


def test_same_person_pairs_score_higher_than_different_person_pairs(dlib_embedder, detector, shared_data):
    lfw = shared_data / "lfw" / "images"
    same, different = _lfw_pairs(shared_data / "lfw" / "pairs.txt", per_kind=6)

    def vector(name: str, number: int) -> np.ndarray:
        rgb = load_image(lfw / name / f"{name}_{number:04d}.jpg")
        return dlib_embedder.embed([align_face(rgb, detector.largest(rgb), DLIB_150)])[0]

    same_scores = [float(vector(*a) @ vector(*b)) for a, b in same]
    different_scores = [float(vector(*a) @ vector(*b)) for a, b in different]
    assert min(same_scores) > max(different_scores)


def test_wrong_crop_size_is_refused(dlib_embedder):
    with pytest.raises(ValueError, match="150x150"):
        dlib_embedder.embed([np.zeros((112, 112, 3), np.uint8)])
    assert dlib_embedder.embed([]).shape == (0, 128)


def test_networks_are_built_once_per_process(dlib_embedder):
    assert create_embedder("dlib_resnet_v1", device="cpu").module is dlib_embedder.module


def test_registry_lists_every_embedder():
    assert available_embedders() == sorted(
        [
            "dlib_resnet_v1",
            "fusion_sface_intel",
            "intel_0095",
            "intel_0095_mask_lfw",
            "iresnet18",
            "iresnet34",
            "iresnet50",
            "iresnet100",
            "sface",
        ]
    )


def test_unknown_embedder_is_a_clear_error():
    with pytest.raises(UnknownEmbedderError, match="dlib_resnet_v1"):
        create_embedder("facenet")
    with pytest.raises(ValueError):
        embedder_spec("facenet")


def test_specs_are_read_without_torch_opencv_or_mediapipe():
    # In a fresh process: what the web process imports (the registry, the variant names, the
    # threshold maths) must not pull in the worker's libraries, nor parse any weights.
    code = (
        "import sys\n"
        "import inference.embedders, inference.variants, inference.thresholds\n"
        "from inference.embedders import embedder_spec, deployable_embedders\n"
        "spec, iresnet = embedder_spec('dlib_resnet_v1'), embedder_spec('iresnet50')\n"
        "deployable_embedders()\n"
        "print(sorted({'torch', 'cv2', 'mediapipe'} & set(sys.modules)))\n"
        "print(spec.dim, spec.input_size, spec.template.name, spec.version,"
        " iresnet.dim, iresnet.input_size)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    loaded, described = result.stdout.splitlines()
    assert loaded == "[]"
    assert described.split() == [
        "128",
        "(150,",
        "150)",
        "dlib_150",
        "dlib_resnet_v1-1",
        "512",
        "(112,",
        "112)",
    ]


def test_only_embedders_with_weights_here_are_deployable(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    # dlib's weights come with face-recognition-models; sface, intel_0095, their fusion and the
    # mask-tuned intel_0095 are bundled in the package: none depends on the operator's directory.
    shipped = ["dlib_resnet_v1", "fusion_sface_intel", "intel_0095", "intel_0095_mask_lfw", "sface"]
    assert deployable_embedders() == shipped
    assert embedder_spec("dlib_resnet_v1").available and not embedder_spec("iresnet50").available
    (tmp_path / "iresnet50.pth").write_bytes(b"")
    assert deployable_embedders() == sorted([*shipped, "iresnet50"])


def test_specs_carry_thresholds_weights_licence_and_index():
    dlib, iresnet = embedder_spec("dlib_resnet_v1"), embedder_spec("iresnet100")
    assert (dlib.default_threshold_unmasked, dlib.default_threshold_masked) == (0.94, 0.96)
    assert (iresnet.default_threshold_unmasked, iresnet.default_threshold_masked) == (0.36, 0.30)
    assert dlib.weights.package == "face_recognition_models" and dlib.weights_path() == default_weights_path()
    assert iresnet.weights.package is None and iresnet.weights.file == "iresnet100.pth"
    assert "CC0" in dlib.licence and "non-commercial" in iresnet.licence
    assert dlib.index_name == "faceid_tpl_hnsw_dlib_resnet_v1"
    # Every registered iresnet has a network depth, and every depth is registered.
    assert {name for name in available_embedders() if name.startswith("iresnet")} == set(LAYERS)


def test_names_that_are_not_sql_safe_are_refused():
    spec = embedder_spec("dlib_resnet_v1")
    fields = {field: getattr(spec, field) for field in EmbedderSpec.__dataclass_fields__}
    with pytest.raises(ValueError, match="SQL"):
        EmbedderSpec(**{**fields, "name": "x'; DROP TABLE faceid_facetemplate; --"})


def test_spec_describes_the_template():
    assert embedder_spec().name == DEFAULT_EMBEDDER == "intel_0095"
    spec = embedder_spec("dlib_resnet_v1")
    assert spec.name == "dlib_resnet_v1" and spec.dim == 128
    assert spec.template is DLIB_150 and spec.input_size == (150, 150)
    assert embedder_spec("iresnet100").template is ARCFACE_112


def test_iresnet_uses_arcface_torch_key_names():
    state = build_iresnet("iresnet18").state_dict()
    prefixes = {key.split(".")[0] for key in state}
    assert prefixes == {
        "conv1",
        "bn1",
        "prelu",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "bn2",
        "fc",
        "features",
    }
    for key in (
        "layer1.0.bn1.weight",
        "layer1.0.conv1.weight",
        "layer1.0.prelu.weight",
        "layer1.0.bn3.running_var",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.num_batches_tracked",
        "features.running_mean",
    ):
        assert key in state, key
    assert state["fc.weight"].shape == (512, 512 * 7 * 7)
    assert sum(1 for key in state if key.endswith("conv1.weight") and key.startswith("layer")) == 8


def test_iresnet_loads_the_state_dict_put_in_the_weights_directory(
    tmp_path, monkeypatch, detector, portraits_dir: Path
):
    torch.manual_seed(0)
    module = build_iresnet("iresnet18").eval()
    torch.save(module.state_dict(), tmp_path / "iresnet18.pth")
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    rgb = load_image(portraits_dir / "img14.jpg")
    crop = align_face(rgb, detector.largest(rgb), ARCFACE_112)

    embedder = create_embedder("iresnet18", device="cpu")
    vectors = embedder.embed([crop, crop[:, ::-1].copy()], flip=False)

    assert vectors.shape == (2, 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with torch.inference_mode():
        pixels = torch.from_numpy(crop).permute(2, 0, 1).float()[None]
        expected = torch.nn.functional.normalize(module((pixels / 255 - 0.5) / 0.5), dim=1).numpy()[0]
    assert np.abs(vectors[0] - expected).max() < 1e-4
    assert embedder.spec.version.startswith("iresnet18-arcface-")
    assert embedder.spec.template is ARCFACE_112


def test_iresnet_accepts_a_data_parallel_checkpoint(tmp_path):
    state = {f"module.{key}": value for key, value in build_iresnet("iresnet18").state_dict().items()}
    torch.save(state, tmp_path / "ddp.pth")
    embedder = create_embedder("iresnet18", weights=tmp_path / "ddp.pth", device="cpu")
    assert embedder.embed([np.zeros((112, 112, 3), np.uint8)]).shape == (1, 512)


def test_iresnet_refuses_mismatched_weights(tmp_path):
    torch.save(build_iresnet("iresnet18").state_dict(), tmp_path / "r18.pth")
    with pytest.raises(RuntimeError, match="state_dict"):
        create_embedder("iresnet34", weights=tmp_path / "r18.pth", device="cpu")


def test_iresnet_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match="iresnet50 weights not found"):
        create_embedder("iresnet50")
    with pytest.raises(FileNotFoundError):
        create_embedder("iresnet50", weights=tmp_path / "missing.pth")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_and_cpu_give_the_same_vectors(dlib_embedder, chips):
    on_gpu = create_embedder("dlib_resnet_v1", device="cuda")
    assert np.abs(on_gpu.embed(chips) - dlib_embedder.embed(chips)).max() < 1e-3
