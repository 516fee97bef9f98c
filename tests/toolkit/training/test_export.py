"""A trained checkpoint becomes a fine-tuned model the runtime loads with its base's wiring."""

import numpy as np
import pytest
import torch

from inference.embedders import create_embedder, embedder_spec
from inference.embedders.fine_tuned import FineTunedFormatError, build_fine_tuned
from inference.embedders.spec import files_digest
from toolkit.training.backbones import create_backbone, make_trainable
from toolkit.training.checkpoint import save_checkpoint
from toolkit.training.export import export


def tuned_checkpoint(path, backbone):
    with torch.no_grad():
        for parameter in backbone.module.parameters():
            parameter.mul_(1.01)  # stands in for training: the tensors differ from the base's
    save_checkpoint(
        path,
        {"backbone": backbone.module.state_dict(), "backbone_name": backbone.name, "step": 7, "config": {}},
    )


def test_registry_models_become_trainable_with_the_runtimes_keys():
    runtime = create_embedder("intel_0095", device="cpu").module
    trainable = make_trainable(runtime)
    assert set(trainable.state_dict()) == set(runtime.state_dict())
    assert sum(p.numel() for p in trainable.parameters() if p.requires_grad) > 1_000_000
    assert not any(p.requires_grad for p in runtime.parameters())  # the shared runtime copy stays frozen


def test_an_exported_intel_0095_loads_strictly_and_embeds_like_the_trained_network(tmp_path):
    backbone = create_backbone("intel_0095")
    tuned_checkpoint(tmp_path / "best.pt", backbone)
    manifest = export(
        tmp_path / "best.pt", tmp_path / "tuned.pt", command="python -m toolkit.training.train ..."
    )
    assert manifest["base_version"] == embedder_spec("intel_0095").version and manifest["step"] == 7
    runtime = create_embedder("intel_0095", device="cpu", weights=None)
    loaded = build_fine_tuned(tmp_path / "tuned.pt")
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (2, 3, 128, 128)).astype(np.float32))
    with torch.no_grad():
        backbone.module.eval()
        expected, got, base = backbone.module(x), loaded(x), runtime.module(x)
    # float16 storage: close to the trained network, and clearly not the base any more.
    assert torch.nn.functional.cosine_similarity(got, expected).min() > 0.9999
    assert (got - base).abs().max() > 1e-2


def test_a_file_of_another_base_version_or_format_is_refused(tmp_path):
    torch.save(
        {
            "format": "faceid-fine-tuned-1",
            "base": "intel_0095",
            "base_version": "intel_0095-old",
            "state_dict": {},
        },
        tmp_path / "old.pt",
    )
    with pytest.raises(FineTunedFormatError, match="trained from intel_0095 intel_0095-old"):
        build_fine_tuned(tmp_path / "old.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(FineTunedFormatError, match="not a fine-tuned weights file"):
        build_fine_tuned(tmp_path / "other.pt")


def test_the_shipped_mask_tuned_model_loads_its_digest_and_is_never_the_default():
    from inference.embedders import DEFAULT_EMBEDDER

    spec = embedder_spec("intel_0095_mask_lfw")
    embedder = create_embedder("intel_0095_mask_lfw", device="cpu")
    assert DEFAULT_EMBEDDER != spec.name and spec.input == embedder_spec("intel_0095").input
    assert embedder.spec.version == spec.version == f"intel_0095_mask_lfw-{files_digest(spec.weights_path())}"
    chips = [np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)]
    assert embedder.embed(chips).shape == (1, 256)
