"""One cached pipeline per model and device; per-call values (the mask threshold) are arguments."""

import pytest
import torch

from inference import pipeline as pipeline_module
from inference.pipeline import PIPELINE_CACHE_SIZE, LruCache, get_pipeline
from inference.variants import STRATEGY_CUTOUT, VARIANT_CUTOUT, VARIANT_FULL


def test_calls_with_different_mask_thresholds_share_one_pipeline_and_decide_apart(lfw_image):
    rgb = lfw_image("Aaron_Peirsol", 1)
    shared = get_pipeline("dlib_resnet_v1", device="cpu")
    probability = shared.analyze(rgb, strict=False).mask_probability

    # The same pipeline serves an organization that calls this face masked and one that does not.
    strict_org = get_pipeline("dlib_resnet_v1", device="cpu").probe(
        [rgb], mask_threshold=probability, strategy=STRATEGY_CUTOUT
    )[0]
    lenient_org = get_pipeline("dlib_resnet_v1", device="cpu").probe(
        [rgb], mask_threshold=min(1.0, probability + 0.01), strategy=STRATEGY_CUTOUT
    )[0]

    assert get_pipeline("dlib_resnet_v1", device="cpu") is shared
    # At its organization's threshold the face's mask decision is unsure (the band always holds
    # the threshold): it carries both spaces' vectors, and must pass both.
    assert strict_org.masked and strict_org.mask_unsure
    assert set(strict_org.embeddings) == {VARIANT_CUTOUT, VARIANT_FULL}
    assert not lenient_org.masked and set(lenient_org.embeddings) == {VARIANT_FULL}
    # (enforce_policy=False: this small LFW photo would otherwise be refused for its quality.)
    [refused] = shared.enroll([rgb], mask_threshold=probability, enforce_policy=False)
    [enrolled] = shared.enroll([rgb], mask_threshold=min(1.0, probability + 0.01), enforce_policy=False)
    assert refused.refusal == "masked" and enrolled.ok
    with pytest.raises(ValueError, match="mask_threshold"):
        shared.probe([rgb], mask_threshold=1.5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto is the CPU only without a GPU")
def test_auto_and_cpu_are_one_pipeline_on_a_machine_without_gpu():
    assert get_pipeline("dlib_resnet_v1", device="auto") is get_pipeline("dlib_resnet_v1", device="cpu")


def test_the_process_cache_is_bounded():
    assert pipeline_module._pipelines.maxsize == PIPELINE_CACHE_SIZE
    assert len(pipeline_module._pipelines) <= PIPELINE_CACHE_SIZE


def test_the_cache_evicts_the_least_recently_used_entry_beyond_its_bound():
    cache: LruCache[str] = LruCache(maxsize=2)
    builds: list[str] = []

    def get(key: str) -> str:
        return cache.get_or_build(key, lambda: builds.append(key) or f"pipeline {key}")

    assert get("a") == "pipeline a" and get("b") == "pipeline b"
    assert get("a") == "pipeline a"  # reused, and now the most recent
    get("c")  # evicts b, the least recently used
    assert cache.keys() == ["a", "c"] and len(cache) == 2
    get("b")  # built again
    assert builds == ["a", "b", "c", "b"]
    for key in "defgh":
        get(key)
        assert len(cache) <= 2
    with pytest.raises(ValueError):
        LruCache(maxsize=0)
