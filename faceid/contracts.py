"""What crosses the queue between the web side and the inference worker, typed, with to/from JSON.

The web side (faceid.flows) sends a :class:`PipelineRequest` to the worker task
``faceid.worker.tasks.run_pipeline``; the worker answers a :class:`PipelineOutput` with one
:class:`FrameResult` per image, in order (and, for each further model the request names in
``also_embed``, the same frames embedded with that model: identify during a model switch). When
the task cannot answer, the web side describes what went wrong as a :class:`PipelineFailure`.
Celery carries JSON only, so every class here has ``to_json()`` and ``from_json()``;
``from_json`` refuses a malformed document with :class:`ContractError` instead of letting a
``KeyError`` surface three modules away.

Pure Python: imported by the worker (with torch) and the web process (without).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from inference.embedders import deployable_embedders
from inference.variants import PROBE_STRATEGIES, STRATEGY_CUTOUT, VARIANTS

# A burst of camera frames or a batch of enrollment photos: the most images one call may carry.
MAX_IMAGES = 16
# Further models one probe may be embedded with (`PipelineRequest.also_embed`): a model switch
# leaves one old model serving; each one more costs the whole pipeline again per frame.
MAX_ALSO_EMBED = 2

PipelineKind = Literal["enroll", "probe"]
FailureKind = Literal["timeout", "input", "failed"]


class ContractError(ValueError):
    """A document that does not follow the contract; ``reason`` is a machine code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


# --- images as text ------------------------------------------------------------------------------


def encode_image(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_image_text(text: str, *, index: int = 0) -> tuple[bytes, str]:
    """Bytes and content type of a base64 image, with or without a ``data:`` URL prefix.

    The one base64 parser of the project: API JSON bodies, webcam frames of the console and task
    arguments all come through here. Raises ContractError("not_base64", ...).
    """
    if not isinstance(text, str):
        raise ContractError("not_base64", f"image {index} must be a base64 string")
    payload = text.strip()
    content_type = ""
    if payload.startswith("data:"):
        header, _, payload = payload.partition(",")
        content_type = header[5:].split(";")[0]
    try:
        return base64.b64decode(payload, validate=True), content_type
    except (binascii.Error, ValueError):
        raise ContractError("not_base64", f"image {index} is not valid base64") from None


# --- task input ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineRequest:
    """One pipeline task: the images and the organization's settings that shape their vectors."""

    kind: PipelineKind
    images_b64: tuple[str, ...]
    embedder: str
    mask_threshold: float
    strategy: str = STRATEGY_CUTOUT  # probe: which mask-aware variant a masked frame is embedded for
    allow_masked: bool = False  # enroll: whether a photo with a mask on may be enrolled
    # probe: an unmasked frame also carries its mask-aware vector, because the frames will meet
    # photos that exist only in the mask-aware space (enrolled with a mask on, or unsure).
    mask_aware: bool = False
    # probe: further deployable models to embed the same frames with, besides `embedder`. Identify
    # during a model switch searches each serving model's gallery with that model's own vectors
    # (PipelineOutput.also); verify of a person the switch has not reached yet carries the new
    # model's too, in case the job moves them meanwhile. Empty in the common case.
    also_embed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("enroll", "probe"):
            raise ContractError("bad_argument", f"unknown pipeline kind {self.kind!r}")
        if not self.images_b64:
            raise ContractError("no_image", "at least one image is required")
        if len(self.images_b64) > MAX_IMAGES:
            raise ContractError("too_many_images", f"at most {MAX_IMAGES} images per call")
        if not isinstance(self.embedder, str) or not self.embedder:
            raise ContractError("bad_argument", "embedder must be a model name")
        threshold = _number(self.mask_threshold, "mask_threshold")
        if not 0.0 <= threshold <= 1.0:
            raise ContractError("bad_argument", "mask_threshold must be within [0, 1]")
        if self.strategy not in PROBE_STRATEGIES:
            raise ContractError("bad_argument", f"unknown mask strategy {self.strategy!r}")
        object.__setattr__(self, "also_embed", self._checked_also_embed())

    def _checked_also_embed(self) -> tuple[str, ...]:
        models = self.also_embed
        if not isinstance(models, list | tuple) or not all(isinstance(m, str) and m for m in models):
            raise ContractError("bad_argument", "also_embed must be a list of model names")
        if models and self.kind != "probe":
            raise ContractError("bad_argument", "only a probe may be embedded with further models")
        if len(models) > MAX_ALSO_EMBED:
            raise ContractError("bad_argument", f"at most {MAX_ALSO_EMBED} further models per call")
        if len(set(models)) != len(models) or self.embedder in models:
            raise ContractError("bad_argument", "also_embed repeats a model")
        deployable = set(deployable_embedders()) if models else set()
        unknown = [m for m in models if m not in deployable]
        if unknown:
            raise ContractError("bad_argument", f"also_embed names models that are not deployable: {unknown}")
        return tuple(models)

    def models(self) -> tuple[str, ...]:
        """Every model the frames are embedded with, `embedder` first."""
        return (self.embedder, *self.also_embed)

    def images(self) -> list[bytes]:
        return [decode_image_text(text, index=i)[0] for i, text in enumerate(self.images_b64)]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "images_b64": list(self.images_b64),
            "embedder": self.embedder,
            "mask_threshold": float(self.mask_threshold),
            "strategy": self.strategy,
            "allow_masked": self.allow_masked,
            "mask_aware": self.mask_aware,
            "also_embed": list(self.also_embed),
        }

    @classmethod
    def from_json(cls, data: Any) -> PipelineRequest:
        data = _mapping(data, "pipeline request")
        images = data.get("images_b64")
        if not isinstance(images, list | tuple) or not all(isinstance(i, str) for i in images):
            raise ContractError("no_image", "images_b64 must be a list of base64 strings")
        return cls(
            kind=data.get("kind"),
            images_b64=tuple(images),
            embedder=data.get("embedder"),
            mask_threshold=_number(data.get("mask_threshold"), "mask_threshold"),
            strategy=data.get("strategy", STRATEGY_CUTOUT),
            allow_masked=bool(data.get("allow_masked", False)),
            mask_aware=bool(data.get("mask_aware", False)),
            also_embed=data.get("also_embed") or (),
        )


# --- task output ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quality:
    score: float
    face_px: float
    sharpness: float
    yaw: float
    pitch: float
    roll: float
    eyes_visible: bool
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "reasons": list(self.reasons)}

    @classmethod
    def from_json(cls, data: Any) -> Quality:
        data = _mapping(data, "quality")
        try:
            return cls(
                **{
                    name: float(data[name])
                    for name in ("score", "face_px", "sharpness", "yaw", "pitch", "roll")
                },
                eyes_visible=bool(data["eyes_visible"]),
                reasons=tuple(str(r) for r in data.get("reasons", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError("bad_output", f"malformed quality report: {exc!r}") from None


@dataclass(frozen=True)
class DecodeFailure:
    """Bytes that are not a usable image (the caller answers 400 for them)."""

    reason: str
    message: str


@dataclass(frozen=True)
class FrameResult:
    """What the pipeline found in one image. ``refusal`` is a reason code, None when usable."""

    refusal: str | None
    face_found: bool = False
    bbox: tuple[float, float, float, float] | None = None
    quality: Quality | None = None
    masked: bool | None = None
    mask_probability: float | None = None
    # The mask probability lies in the unsure band: the frame carries both spaces' vectors and is
    # decided by the stricter comparison. None from a worker that did not say.
    mask_unsure: bool | None = None
    # Template variant -> the vectors to compare for it (L2-normalised).
    embeddings: dict[str, list[list[float]]] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    decode_error: DecodeFailure | None = None

    @property
    def usable(self) -> bool:
        """A face was found, nothing refused it, and there is something to compare."""
        return self.refusal is None and bool(self.embeddings)

    @property
    def quality_score(self) -> float | None:
        return None if self.quality is None else self.quality.score

    def vectors(self) -> list[tuple[str, list[float]]]:
        """(variant, vector) for every vector of this frame."""
        return [(variant, vector) for variant, vectors in self.embeddings.items() for vector in vectors]

    @classmethod
    def undecodable(cls, reason: str, message: str) -> FrameResult:
        return cls(refusal="bad_image", decode_error=DecodeFailure(reason, message))

    def to_json(self) -> dict[str, Any]:
        return {
            "refusal": self.refusal,
            "face_found": self.face_found,
            "bbox": list(self.bbox) if self.bbox is not None else None,
            "quality": self.quality.to_json() if self.quality is not None else None,
            "masked": self.masked,
            "mask_probability": self.mask_probability,
            "mask_unsure": self.mask_unsure,
            "embeddings": {variant: [list(v) for v in vs] for variant, vs in self.embeddings.items()},
            "timings_ms": dict(self.timings_ms),
            "decode_error": self.decode_error.__dict__ if self.decode_error is not None else None,
        }

    @classmethod
    def from_json(cls, data: Any) -> FrameResult:
        data = _mapping(data, "frame result")
        embeddings = _mapping(data.get("embeddings") or {}, "embeddings")
        unknown = [variant for variant in embeddings if variant not in VARIANTS]
        if unknown:
            raise ContractError("bad_output", f"unknown template variants {unknown}")
        decode_error = data.get("decode_error")
        bbox = data.get("bbox")
        probability = data.get("mask_probability")
        try:
            return cls(
                refusal=data.get("refusal"),
                face_found=bool(data.get("face_found", False)),
                bbox=tuple(float(v) for v in bbox) if bbox is not None else None,
                quality=Quality.from_json(data["quality"]) if data.get("quality") is not None else None,
                masked=None if data.get("masked") is None else bool(data["masked"]),
                mask_probability=None if probability is None else float(probability),
                mask_unsure=None if data.get("mask_unsure") is None else bool(data["mask_unsure"]),
                embeddings={
                    variant: [[float(x) for x in vector] for vector in vectors]
                    for variant, vectors in embeddings.items()
                },
                timings_ms={str(k): float(v) for k, v in (data.get("timings_ms") or {}).items()},
                decode_error=DecodeFailure(str(decode_error["reason"]), str(decode_error["message"]))
                if decode_error
                else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError("bad_output", f"malformed frame result: {exc!r}") from None


@dataclass(frozen=True)
class ModelFrames:
    """The call's frames as one model embedded them: a model of `PipelineRequest.also_embed`, or
    the request's own model (`PipelineOutput.frames_of`). One FrameResult per image, in order."""

    model_name: str
    model_version: str
    results: tuple[FrameResult, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "results": [r.to_json() for r in self.results],
        }

    @classmethod
    def from_json(cls, data: Any) -> ModelFrames:
        data = _mapping(data, "model frames")
        return cls(
            model_name=str(data.get("model_name", "")),
            model_version=str(data.get("model_version", "")),
            results=_results(data.get("results")),
        )


@dataclass(frozen=True)
class PipelineOutput:
    """The request's model's frames (`results`), and the same frames embedded with each model of
    `also_embed` (`also`, in the request's order; empty for enroll, and outside a model switch)."""

    model_name: str
    model_version: str
    device: str
    results: tuple[FrameResult, ...]
    also: tuple[ModelFrames, ...] = ()

    def __post_init__(self) -> None:
        for extra in self.also:
            if len(extra.results) != len(self.results):
                raise ContractError(
                    "bad_output",
                    f"{extra.model_name}: {len(extra.results)} frames for {len(self.results)} images",
                )

    @property
    def pipeline_ms(self) -> float:
        """Time the worker spent in the pipeline stages for all images of the call, all models."""
        frames = [*self.results, *(r for extra in self.also for r in extra.results)]
        return round(sum(sum(r.timings_ms.values()) for r in frames), 1)

    def frames_of(self, model_name: str) -> ModelFrames | None:
        """The frames as `model_name` embedded them (None when the call did not embed with it)."""
        if model_name == self.model_name:
            return ModelFrames(self.model_name, self.model_version, self.results)
        return next((extra for extra in self.also if extra.model_name == model_name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "device": self.device,
            "results": [r.to_json() for r in self.results],
            "also": [extra.to_json() for extra in self.also],
        }

    @classmethod
    def from_json(cls, data: Any) -> PipelineOutput:
        data = _mapping(data, "pipeline output")
        also = data.get("also") or []
        if not isinstance(also, list):
            raise ContractError("bad_output", "also must be a list")
        return cls(
            model_name=str(data.get("model_name", "")),
            model_version=str(data.get("model_version", "")),
            device=str(data.get("device", "")),
            results=_results(data.get("results")),
            also=tuple(ModelFrames.from_json(extra) for extra in also),
        )


def _results(results: Any) -> tuple[FrameResult, ...]:
    if not isinstance(results, list):
        raise ContractError("bad_output", "results must be a list")
    return tuple(FrameResult.from_json(r) for r in results)


@dataclass(frozen=True)
class PipelineFailure:
    """Why there is no PipelineOutput: ``timeout`` (504), ``input`` (the task refused it: 400) or
    ``failed`` (503)."""

    kind: FailureKind
    reason: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "reason": self.reason, "message": self.message}

    @classmethod
    def from_json(cls, data: Any) -> PipelineFailure:
        data = _mapping(data, "pipeline failure")
        kind = data.get("kind")
        if kind not in ("timeout", "input", "failed"):
            raise ContractError("bad_output", f"unknown failure kind {kind!r}")
        return cls(kind=kind, reason=str(data.get("reason", "")), message=str(data.get("message", "")))


def _mapping(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ContractError("bad_output", f"{what} must be a JSON object, got {type(data).__name__}")
    return data


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ContractError("bad_argument", f"{name} must be a number") from None
    if not math.isfinite(number):
        raise ContractError("bad_argument", f"{name} must be finite")
    return number
