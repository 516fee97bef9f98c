"""The documents that cross the queue: round trips, and refusals of what breaks the contract."""

from __future__ import annotations

import base64

import pytest

from faceid.contracts import (
    MAX_IMAGES,
    ContractError,
    FrameResult,
    PipelineFailure,
    PipelineOutput,
    PipelineRequest,
    decode_image_text,
)
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
