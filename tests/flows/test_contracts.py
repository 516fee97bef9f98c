"""The documents that cross the queue: round trips, and refusals of what breaks the contract."""

from __future__ import annotations

import base64

import pytest

from faceid.contracts import (
    MAX_ALSO_EMBED,
    MAX_IMAGES,
    ContractError,
    FrameResult,
    ModelFrames,
    PipelineFailure,
    PipelineOutput,
    PipelineRequest,
    decode_image_text,
)
from inference.embedders import available_embedders, deployable_embedders
from tests.flows.builders import frame

IMAGE = base64.b64encode(b"\xff\xd8 jpeg bytes").decode()


def test_a_request_and_an_output_survive_json():
    request = PipelineRequest("probe", (IMAGE,), "dlib_resnet_v1", 0.5, strategy="synthetic")
    assert PipelineRequest.from_json(request.to_json()) == request
    output = PipelineOutput(
        "dlib_resnet_v1", "v1", "cpu", (frame({"full": [[0.6, 0.8]]}), frame(refusal="no_face"))
    )
    again = PipelineOutput.from_json(output.to_json())
    assert again == output and again.results[0].usable and not again.results[1].usable
    failure = PipelineFailure("timeout", "wait_timeout", "no result")
    assert PipelineFailure.from_json(failure.to_json()) == failure


def test_the_mask_aware_request_and_the_unsure_flag_survive_json_and_default_off():
    request = PipelineRequest("probe", (IMAGE,), "dlib_resnet_v1", 0.5, mask_aware=True)
    assert PipelineRequest.from_json(request.to_json()).mask_aware is True
    older = {key: value for key, value in request.to_json().items() if key != "mask_aware"}
    assert PipelineRequest.from_json(older).mask_aware is False
    unsure = FrameResult.from_json({**frame({"full": [[0.6, 0.8]]}).to_json(), "mask_unsure": True})
    assert unsure.mask_unsure is True
    assert FrameResult.from_json(frame({"full": [[0.6, 0.8]]}).to_json()).mask_unsure is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"images_b64": []}, "no_image"),
        ({"images_b64": [IMAGE] * (MAX_IMAGES + 1)}, "too_many_images"),
        ({"mask_threshold": 1.5}, "bad_argument"),
        ({"mask_threshold": "high"}, "bad_argument"),
        ({"strategy": "balaclava"}, "bad_argument"),
        ({"kind": "train"}, "bad_argument"),
    ],
)
def test_a_request_outside_the_contract_is_refused_with_a_reason(changes, reason):
    document = {**PipelineRequest("probe", (IMAGE,), "dlib_resnet_v1", 0.5).to_json(), **changes}
    with pytest.raises(ContractError) as refused:
        PipelineRequest.from_json(document)
    assert refused.value.reason == reason


def _other_deployable() -> str:
    others = [name for name in deployable_embedders() if name != "dlib_resnet_v1"]
    if not others:
        pytest.skip("embedding with a further model needs a second deployable model")
    return others[0]


def test_a_probe_embedded_with_further_models_survives_json_and_older_documents_mean_one_model():
    other = _other_deployable()
    request = PipelineRequest("probe", (IMAGE,), "dlib_resnet_v1", 0.5, also_embed=[other])
    assert request.also_embed == (other,) and request.models() == ("dlib_resnet_v1", other)
    assert PipelineRequest.from_json(request.to_json()) == request
    older = {key: value for key, value in request.to_json().items() if key != "also_embed"}
    assert PipelineRequest.from_json(older).also_embed == ()

    frames = (frame({"full": [[0.6, 0.8]]}), frame(refusal="no_face"))
    extra = ModelFrames(other, "other-v2", (frame({"full": [[0.8, 0.6]]}), frame(refusal="no_face")))
    output = PipelineOutput("dlib_resnet_v1", "v1", "cpu", frames, also=(extra,))
    again = PipelineOutput.from_json(output.to_json())
    assert again == output
    assert again.frames_of(other) == extra and again.frames_of("dlib_resnet_v1").results == frames
    assert again.frames_of("nobody") is None
    assert again.pipeline_ms == 100.0  # both models' stages: 25 ms per frame
    single = PipelineOutput("dlib_resnet_v1", "v1", "cpu", frames)
    older_output = {key: value for key, value in single.to_json().items() if key != "also"}
    assert PipelineOutput.from_json(older_output) == single and single.also == ()


@pytest.mark.parametrize(
    "also_embed",
    [
        ["dlib_resnet_v1"],  # the request's own model
        ["sface", "sface"],
        ["no_such_model"],
        [""],
        "sface",
        ["sface", "intel_0095", "fusion_sface_intel"][: MAX_ALSO_EMBED + 1],
    ],
)
def test_further_models_that_repeat_are_unknown_or_not_deployable_are_refused(also_embed):
    document = {
        **PipelineRequest("probe", (IMAGE,), "dlib_resnet_v1", 0.5).to_json(),
        "also_embed": also_embed,
    }
    with pytest.raises(ContractError) as refused:
        PipelineRequest.from_json(document)
    assert refused.value.reason == "bad_argument"


def test_only_a_probe_is_embedded_with_further_models():
    with pytest.raises(ContractError, match="only a probe"):
        PipelineRequest("enroll", (IMAGE,), "dlib_resnet_v1", 0.5, also_embed=(_other_deployable(),))


def test_a_registered_model_without_weights_here_is_refused_as_a_further_model():
    missing = [name for name in available_embedders() if name not in deployable_embedders()]
    if not missing:
        pytest.skip("every registered model has its weights here")
    with pytest.raises(ContractError, match="not deployable"):
        PipelineRequest("probe", (IMAGE,), "dlib_resnet_v1", 0.5, also_embed=(missing[0],))


def test_an_output_whose_further_model_lost_a_frame_is_refused():
    document = PipelineOutput("dlib_resnet_v1", "v1", "cpu", (frame({"full": [[0.6, 0.8]]}),)).to_json()
    document["also"] = [{"model_name": "sface", "model_version": "s1", "results": []}]
    with pytest.raises(ContractError, match="0 frames for 1 images"):
        PipelineOutput.from_json(document)
    with pytest.raises(ContractError):
        PipelineOutput.from_json({**document, "also": {"sface": []}})


def test_an_output_with_an_unknown_variant_or_shape_is_refused():
    with pytest.raises(ContractError):
        FrameResult.from_json({"refusal": None, "embeddings": {"sunglasses": [[1.0]]}})
    with pytest.raises(ContractError):
        PipelineOutput.from_json({"results": "none"})
    with pytest.raises(ContractError):
        FrameResult.from_json({"refusal": None, "quality": {"score": "good"}})


def test_base64_images_are_read_with_or_without_a_data_url():
    assert decode_image_text(IMAGE) == (b"\xff\xd8 jpeg bytes", "")
    assert decode_image_text(f"data:image/jpeg;base64,{IMAGE}") == (b"\xff\xd8 jpeg bytes", "image/jpeg")
    for bad in ("not base64!", 42):
        with pytest.raises(ContractError) as refused:
            decode_image_text(bad, index=3)
        assert refused.value.reason == "not_base64" and "3" in refused.value.message
