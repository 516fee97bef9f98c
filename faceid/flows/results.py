"""The typed results of the flows. The API's output serializers render them (and the job records
of asynchronous calls keep them as JSON, rendered by the same serializers when polled)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from faceid.contracts import FrameResult, PipelineOutput, Quality
from faceid.flows.common import refusal_message


@dataclass(frozen=True)
class PersonRef:
    id: int
    external_id: str


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str


@dataclass(frozen=True)
class FrameSummary:
    """What the pipeline said of one probe frame."""

    index: int
    face_found: bool
    refusal: str | None
    detail: str
    masked: bool | None
    mask_probability: float | None
    quality: float | None

    @classmethod
    def of(cls, index: int, frame: FrameResult) -> FrameSummary:
        return cls(
            index=index,
            face_found=frame.face_found,
            refusal=frame.refusal,
            detail=refusal_message(frame.refusal),
            masked=frame.masked,
            mask_probability=frame.mask_probability,
            quality=frame.quality_score,
        )


def frame_summaries(output: PipelineOutput) -> tuple[FrameSummary, ...]:
    return tuple(FrameSummary.of(i, frame) for i, frame in enumerate(output.results))


class FlowResult:
    """Base of the results: the HTTP status the answer carries, and its JSON form."""

    status: int = 200

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class ProbeResult(FlowResult):
    """What a decided verify or identify call answers besides its own fields."""

    threshold: float
    masked: bool
    mask_probability: float | None
    attempt_id: int
    latency_ms: float | None
    pipeline_ms: float
    decision: str
    frames: tuple[FrameSummary, ...]
    model: ModelRef


@dataclass(frozen=True)
class VerifyResult(ProbeResult):
    match: bool
    similarity: float
    person: PersonRef
    frame: int
    quality: float | None
    locked_out: bool | None = None  # True when this failure locked the person out; absent otherwise


@dataclass(frozen=True)
class IdentifyMatch:
    person: int
    external_id: str
    display_name: str
    similarity: float


@dataclass(frozen=True)
class IdentifyResult(ProbeResult):
    matches: tuple[IdentifyMatch, ...]
    # The persons searched (the gallery size the thresholds were chosen for) and the FPIR target.
    candidates_searched: int = 0
    target_fpir: float | None = None


@dataclass(frozen=True)
class StoredTemplate:
    id: int
    variant: str
    quality: float | None
    model_name: str
    model_version: str


@dataclass(frozen=True)
class PhotoResult:
    """One enrollment photo: stored (with its templates), or why not."""

    index: int
    filename: str
    sha256: str
    face_found: bool
    masked: bool | None
    mask_probability: float | None
    quality: Quality | None
    stored: bool
    reason: str | None
    detail: str
    templates: tuple[StoredTemplate, ...] = ()


@dataclass(frozen=True)
class EnrollResult(FlowResult):
    person: PersonRef
    stored: int
    photos: tuple[PhotoResult, ...]
    latency_ms: float
    model: ModelRef
    # Set only when nothing was stored (answered 422): the first photo's refusal.
    reason: str | None = None
    detail: str | None = None

    @property
    def status(self) -> int:  # type: ignore[override]
        return 201 if self.stored else 422
