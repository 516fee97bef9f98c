import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.align import align_face
from inference.decode import load_image
from inference.embedders import create_embedder, embedder_spec
from inference.embedders.intel_0095 import default_weights_path, load_intel_0095
from inference.embedders.openvino_ir import IRFormatError, constant_bytes, load_ir_module, read_ir
from inference.templates import INTEL_128, TEMPLATES

WEIGHTS = Path(__file__).resolve().parents[2] / "inference" / "weights" / "intel_0095"
XML = WEIGHTS / "face-reidentification-retail-0095.xml"

# The shipped files (../shared/models/README.md lists the same digests). A change here must come
# with a new spec version: the factory checks the version against the files.
SHA256 = {
    XML.name: "879662c555c826e7a07683f95bb4387b810ab679a8b8c64cc46e07016bb3da2b",
    XML.with_suffix(".bin").name: "4d8cdfa9447ddd6d8b447f76c6eaaa2c9345c1ee0146b94900ee5267ffcb9307",
    "LICENSE": "c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4",
    "MODEL_CARD.md": "29a2873486c926668d73f34050e8be2cb0b9589919fc8a6416408b2ebdff4537",
}


@pytest.fixture(scope="module")
def intel_embedder():
    return create_embedder("intel_0095", device="cpu")


@pytest.fixture(scope="module")
def intel_chips(detector, portraits_dir: Path, lfw_dir: Path) -> list[np.ndarray]:
    paths = [portraits_dir / f"img{i}.jpg" for i in (1, 3, 12, 16)]
    paths += [lfw_dir / name / f"{name}_0001.jpg" for name in ("Abel_Pacheco", "Aaron_Eckhart")]
    crops = []
    for path in paths:
        rgb = load_image(path)
        crops.append(align_face(rgb, detector.largest(rgb), INTEL_128))
    return crops


def _openvino_outputs(chips: list[np.ndarray]) -> np.ndarray:
    ov = pytest.importorskip("openvino")
    core = ov.Core()
    # f32 inference: the reference must not round activations to bf16/f16 on CPUs that could.
    compiled = core.compile_model(
        str(XML), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    )
    outputs = []
    for chip in chips:
        bgr = np.ascontiguousarray(chip[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
        outputs.append(np.asarray(compiled(bgr)[0]).reshape(-1))
    return np.stack(outputs)


def test_shipped_files_are_the_published_ones():
    for name, digest in SHA256.items():
        assert hashlib.sha256((WEIGHTS / name).read_bytes()).hexdigest() == digest, name


def test_matches_the_openvino_runtime(intel_embedder, intel_chips):
    reference = _openvino_outputs(intel_chips)

    ours = intel_embedder.embed(intel_chips, flip=False, normalize=False)

    assert ours.shape == (len(intel_chips), 256)
    # Both run float32 on the same FP16-decoded weights; only the order of summation differs
    # (measured: ~3e-6 on outputs of magnitude ~2). 1e-4 leaves room for other CPUs' kernels and
    # still fails on any real misreading: rounding activations to FP16 alone moves them ~1e-3.
    assert np.abs(ours - reference).max() < 1e-4
    cosine = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.9999


def test_traced_and_frozen_network_matches_the_module(intel_embedder):
    # inference.pipeline freezes networks with torch.jit before serving them.
    module = intel_embedder.module
    example = torch.rand(2, 3, 128, 128) * 255
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(module, example)))
        probe = torch.rand(3, 3, 128, 128) * 255
        assert (frozen(probe) - module(probe)).abs().max() < 1e-4


def test_every_constant_in_the_ir_is_used():
    graph = read_ir(XML)
    consts = [layer for layer in graph.layers.values() if layer.type == "Const"]
    assert len(consts) == 209
    # The constants tile the whole .bin: no weights sit in the file unread.
    assert constant_bytes(graph) == len(graph.weights) == 2_213_628
    module = load_intel_0095(XML)
    # Every constant lands in the module (biases folded into their convolutions): 1,106,814
    # values, the model card's "1.107 MParams".
    assert sum(buffer.numel() for buffer in module.buffers()) == 1_106_814


def test_a_constant_that_leads_nowhere_is_refused(tmp_path):
    text = XML.read_text()
    orphan = (
        '<layer id="9999" name="orphan" type="Const" version="opset1">'
        '<data element_type="f16" shape="1" offset="0" size="2" />'
        '<output><port id="0" precision="FP16"><dim>1</dim></port></output></layer>\n'
    )
    (tmp_path / "net.xml").write_text(text.replace("</layers>", orphan + "</layers>", 1))
    (tmp_path / "net.bin").write_bytes(XML.with_suffix(".bin").read_bytes())

    with pytest.raises(IRFormatError, match="do not lead to the output.*orphan"):
        load_ir_module(tmp_path / "net.xml")
    assert load_ir_module(tmp_path / "net.xml", strict=False) is not None


def test_a_layer_type_it_cannot_run_is_refused_by_name(tmp_path):
    text = XML.read_text().replace('type="Sigmoid"', 'type="HSigmoid"', 1)
    (tmp_path / "net.xml").write_text(text)
    (tmp_path / "net.bin").write_bytes(XML.with_suffix(".bin").read_bytes())

    with pytest.raises(IRFormatError, match="HSigmoid"):
        load_ir_module(tmp_path / "net.xml")


def test_a_truncated_weights_file_is_refused(tmp_path):
    (tmp_path / "net.xml").write_text(XML.read_text())
    (tmp_path / "net.bin").write_bytes(XML.with_suffix(".bin").read_bytes()[:-1000])

    with pytest.raises(IRFormatError, match="do not hold shape"):
        load_ir_module(tmp_path / "net.xml")


def test_bad_crop_shapes_are_refused(intel_embedder):
    for bad in (
        np.zeros((112, 112, 3), np.uint8),
        np.zeros((128, 128), np.uint8),
        np.zeros((128, 128, 4), np.uint8),
        np.zeros((128, 128, 3), np.float32),
    ):
        with pytest.raises(ValueError, match="128x128 uint8 RGB crops aligned to intel_128"):
            intel_embedder.embed([bad])
    assert intel_embedder.embed([]).shape == (0, 256)


def test_vectors_are_unit_length_and_flip_invariant(intel_embedder, intel_chips):
    vectors = intel_embedder.embed(intel_chips)
    mirrored = [np.ascontiguousarray(chip[:, ::-1]) for chip in intel_chips]

    assert vectors.dtype == np.float32 and vectors.shape == (len(intel_chips), 256)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(intel_embedder.embed(mirrored) - vectors).max() < 1e-5


def test_same_person_pairs_score_higher_than_different_person_pairs(intel_embedder, detector, lfw_image):
    same = [("Aaron_Peirsol", 1, 2), ("Aaron_Sorkin", 1, 2), ("Abdullah_Gul", 13, 14)]
    different = [("Aaron_Peirsol", 1, "Aaron_Sorkin", 1), ("Abdullah_Gul", 13, "Aaron_Peirsol", 2)]

    def vector(name: str, number: int) -> np.ndarray:
        rgb = lfw_image(name, number)
        return intel_embedder.embed([align_face(rgb, detector.largest(rgb), INTEL_128)])[0]

    same_scores = [float(vector(n, a) @ vector(n, b)) for n, a, b in same]
    different_scores = [float(vector(a, i) @ vector(b, j)) for a, i, b, j in different]
    assert min(same_scores) > max(different_scores)


def test_spec_names_the_shipped_files_template_and_bgr_input():
    spec = embedder_spec("intel_0095")
    assert spec.dim == 256 and spec.input_size == (128, 128)
    assert spec.template is INTEL_128 and TEMPLATES["intel_128"] is INTEL_128
    assert spec.input.channel_order == "bgr"
    assert spec.input.mean == (0.0, 0.0, 0.0) and spec.input.scale == (1.0, 1.0, 1.0)
    assert spec.weights_path() == default_weights_path() == XML
    assert "Apache-2.0" in spec.licence
    assert spec.index_name == "faceid_tpl_hnsw_intel_0095"
    # Chosen on every pair of the development images (see the registry's comment).
    assert (spec.default_threshold_unmasked, spec.default_threshold_masked) == (0.36, 0.41)
    assert (spec.floor_threshold_unmasked, spec.floor_threshold_masked) == (0.23, 0.30)


def test_template_is_the_model_cards_points_scaled_to_128():
    card = np.array(
        [
            (0.31556875, 0.4615741071428571),
            (0.6826229166666667, 0.4615741071428571),
            (0.5002624999999999, 0.6405053571428571),
            (0.349471875, 0.8246919642857142),
            (0.6534364583333333, 0.8246919642857142),
        ]
    )
    assert np.allclose(INTEL_128.points, card * 128)
    assert INTEL_128.size == (128, 128)


def test_other_files_get_their_own_version(tmp_path, intel_embedder):
    (tmp_path / "same.xml").write_bytes(XML.read_bytes())
    (tmp_path / "same.bin").write_bytes(XML.with_suffix(".bin").read_bytes())
    (tmp_path / "other.xml").write_bytes(XML.read_bytes() + b"<!-- edited -->\n")
    (tmp_path / "other.bin").write_bytes(XML.with_suffix(".bin").read_bytes())

    same = create_embedder("intel_0095", device="cpu", weights=tmp_path / "same.xml")
    other = create_embedder("intel_0095", device="cpu", weights=tmp_path / "other.xml")

    assert same.spec.version == intel_embedder.spec.version
    assert other.spec.version != intel_embedder.spec.version
    assert other.spec.version.startswith("intel_0095-")
    with pytest.raises(FileNotFoundError):
        create_embedder("intel_0095", device="cpu", weights=tmp_path / "missing.xml")
