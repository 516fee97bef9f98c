"""What the three flows share: who calls, what they sent, the call that crosses the queue, and the
one way a refusal is answered and audited."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from django.contrib.auth import get_user_model

from faceid import lockout, services
from faceid.contracts import MAX_IMAGES, PipelineFailure, PipelineRequest, encode_image
from faceid.events import Actor
from faceid.models import DecisionChoices, VerificationAttempt
from tenants.models import DEFAULT_IDENTIFY_FPIR, ApiKey, Organization, OrganizationPolicy

FlowKind = Literal["enroll", "verify", "identify"]

# Human-readable text for the pipeline's refusal codes (API `detail`, console feedback).
REFUSAL_MESSAGES: dict[str, str] = {
    "no_face": "No face found.",
    "several_faces": "Several faces of similar size: one person per photo.",
    "face_too_small": "Face too small: come closer to the camera.",
    "too_blurred": "Too blurred: hold still, and check focus and light.",
    "pose_too_far": "Head turned too far: look straight at the camera.",
    "eyes_not_visible": "Eyes not visible: remove sunglasses, look at the camera.",
    "masked": "Mask on: please enroll without a mask.",
    "bad_image": "Not a usable image.",
}


def refusal_message(code: str | None) -> str:
    if not code:
        return ""
    return REFUSAL_MESSAGES.get(code, code.replace("_", " ").capitalize() + ".")


# --- inputs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInput:
    """One uploaded image (multipart file or base64 JSON), still undecoded."""

    data: bytes
    name: str = "image"
    content_type: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class ImageMeta:
    """What a flow remembers of an image once it is sent: no pixels, unless the policy keeps them."""

    name: str
    sha256: str
    content_type: str = ""
    kept_b64: str | None = None  # only when the organization keeps raw images

    def kept_data(self) -> bytes | None:
        return None if self.kept_b64 is None else base64.b64decode(self.kept_b64)


@dataclass(frozen=True)
class Caller:
    """Who asks: an organization and either one of its API keys or a console user."""

    organization: Organization
    api_key: ApiKey | None = None
    user: Any = None
    client_ip: str | None = None

    @property
    def actor(self) -> Actor:
        """The caller as the audit log's events name it."""
        return Actor(api_key=self.api_key, user=self.user, client_ip=self.client_ip)

    @property
    def lockout_key(self) -> str:
        """The caller as the identify lockout counts it (faceid.lockout)."""
        return lockout.caller_key(self.api_key, self.user, self.client_ip)

    def to_json(self) -> dict[str, Any]:
        return {
            "organization_id": self.organization.pk,
            "api_key_id": self.api_key.pk if self.api_key is not None else None,
            "user_id": self.user.pk if self.user is not None else None,
            "client_ip": self.client_ip,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Caller:
        organization = Organization.objects.get(pk=data["organization_id"])
        api_key = ApiKey.objects.filter(pk=data.get("api_key_id"), organization=organization).first()
        user_id = data.get("user_id")
        user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
        return cls(organization=organization, api_key=api_key, user=user, client_ip=data.get("client_ip"))


@dataclass(frozen=True)
class PolicySnapshot:
    """The policy as it was when the call was prepared: the decision uses these values even when an
    admin changes the policy while the pipeline runs."""

    embedding_model: str
    threshold_unmasked: float
    threshold_masked: float
    mask_threshold: float
    mask_strategy: str
    require_unmasked_enrollment: bool
    lockout_failures: int
    keep_images: bool
    # Identify's FPIR target per search (faceid.flows.identify_thresholds); the default reads job
    # records written before the field existed.
    identify_fpir: float = DEFAULT_IDENTIFY_FPIR

    @classmethod
    def of(cls, policy: OrganizationPolicy) -> PolicySnapshot:
        return cls(**{name: getattr(policy, name) for name in cls.__dataclass_fields__})

    def threshold_for(self, *, masked: bool) -> float:
        return self.threshold_masked if masked else self.threshold_unmasked


@dataclass
class FlowCall:
    """A prepared call, everything its second half (``finish``) needs. It is JSON-serialisable for
    the asynchronous path, where it waits in the job record: raw images are in it only when the
    policy keeps them."""

    kind: FlowKind
    caller: Caller
    policy: PolicySnapshot
    started: float = field(default_factory=time.time)
    images: tuple[ImageMeta, ...] = ()
    person_id: int | None = None
    claim: str = ""
    top_k: int | None = None
    # The lockout ledger entry reserved when the call was prepared (verify and identify).
    lockout_entry: int | None = None
    # Enroll: an admin stores photos that do not match the person's existing templates.
    override: bool = False

    def latency_ms(self) -> float:
        return round((time.time() - self.started) * 1000.0, 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "caller": self.caller.to_json(),
            "policy": asdict(self.policy),
            "started": self.started,
            "images": [asdict(image) for image in self.images],
            "person_id": self.person_id,
            "claim": self.claim,
            "top_k": self.top_k,
            "lockout_entry": self.lockout_entry,
            "override": self.override,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FlowCall:
        return cls(
            kind=data["kind"],
            caller=Caller.from_json(data["caller"]),
            policy=PolicySnapshot(**data["policy"]),
            started=float(data["started"]),
            images=tuple(ImageMeta(**image) for image in data.get("images", ())),
            person_id=data.get("person_id"),
            claim=data.get("claim", ""),
            top_k=data.get("top_k"),
            lockout_entry=data.get("lockout_entry"),
            override=bool(data.get("override", False)),
        )


@dataclass
class PreparedCall:
    """A flow's first half done: the call to finish, and the request for the pipeline worker."""

    call: FlowCall
    request: PipelineRequest


def image_metas(images: Sequence[ImageInput], *, keep: bool) -> tuple[ImageMeta, ...]:
    return tuple(
        ImageMeta(
            name=image.name,
            sha256=image.sha256,
            content_type=image.content_type,
            kept_b64=encode_image(image.data) if keep else None,
        )
        for image in images
    )


def check_images(images: Sequence[ImageInput]) -> None:
    if not images:
        raise FlowError(400, "no_image", "Send at least one image (multipart field `image`, or base64 JSON).")
    if len(images) > MAX_IMAGES:
        raise FlowError(400, "too_many_images", f"At most {MAX_IMAGES} images per call.")
    for index, image in enumerate(images):
        if not image.data:
            raise FlowError(
                400, "bad_image", f"Image {index} is empty.", image_reason="empty", image_index=index
            )


# --- refusals ------------------------------------------------------------------------------------


class FlowError(Exception):
    """A refusal: HTTP status, machine reason, human detail, extra fields for the JSON body."""

    def __init__(self, status: int, reason: str, detail: str, **extra: Any) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail
        self.extra = extra

    @property
    def body(self) -> dict[str, Any]:
        return {"reason": self.reason, "detail": self.detail, **self.extra}

    @property
    def headers(self) -> dict[str, str]:
        retry = self.extra.get("retry_after")
        return {"Retry-After": str(int(retry))} if retry else {}

    @property
    def audited(self) -> bool:
        return "attempt_id" in self.extra


def record(
    caller: Caller, *, started: float, mode: str, decision: str, model_name: str = "", **fields: Any
) -> VerificationAttempt:
    """Append the one audit row of a verify or identify call (accepted, rejected or refused)."""
    return services.record_attempt(
        caller.organization,
        mode=mode,
        decision=decision,
        api_key=caller.api_key,
        user=caller.user,
        client_ip=caller.client_ip,
        model_name=model_name,
        latency_ms=round((time.time() - started) * 1000.0, 1),
        **fields,
    )


def refuse(
    caller: Caller,
    *,
    started: float,
    mode: str,
    decision: str,
    status: int,
    reason: str,
    detail: str,
    audit_reason: str | None = None,
    model_name: str = "",
    claimed_person: Any = None,
    claimed_external_id: str | None = None,
    extra: dict[str, Any] | None = None,
    **audit_fields: Any,
) -> FlowError:
    """Audit a refused verify/identify and return the FlowError that answers it (raise it).

    The one way a refusal reaches the audit log: found while preparing (unknown person, lockout),
    by the pipeline (no face, bad image, time-out) or by the view (rate limit, bad body).
    """
    if claimed_external_id is not None:
        claimed_external_id = claimed_external_id[:128]
    attempt = record(
        caller,
        started=started,
        mode=mode,
        decision=decision,
        model_name=model_name,
        reason=audit_reason if audit_reason is not None else detail,
        claimed_person=claimed_person,
        claimed_external_id=claimed_external_id,
        **audit_fields,
    )
    return FlowError(status, reason, detail, **(extra or {}), attempt_id=attempt.pk)


def failure_answer(failure: PipelineFailure) -> tuple[int, str, str, str]:
    """(status, reason, detail, audit decision) for a pipeline task that gave no output."""
    if failure.kind == "timeout":
        return (
            504,
            "pipeline_timeout",
            f"The face pipeline did not answer in time ({failure.message}).",
            DecisionChoices.TIMEOUT,
        )
    if failure.kind == "input":
        return 400, failure.reason or "bad_request", failure.message, DecisionChoices.BAD_IMAGE
    return (
        503,
        "pipeline_unavailable",
        f"The face pipeline failed: {failure.message}",
        DecisionChoices.ERROR,
    )


def locked_refusal(
    denied: lockout.Denied, policy: Any, *, failures: str, locked_detail: str
) -> dict[str, Any]:
    """The arguments of ``refuse`` for a call refused because its lockout budget is spent: 423,
    with when to retry. ``failures`` names what is counted (\"failed verifications of this person\")."""
    until = denied.locked_until.isoformat()
    if denied.status.locked:
        detail = locked_detail
        audit_reason = (
            f"locked out until {until} after {policy.lockout_failures} {failures} "
            f"within {policy.lockout_window_seconds} s"
        )
    else:
        detail = "Too many attempts in progress: their comparisons use up what the lockout allows."
        audit_reason = (
            f"locked out until {until}: {denied.status.failures_in_window} {failures} and "
            f"{denied.status.reserved} frame(s) in progress reach the limit of {policy.lockout_failures}"
        )
    return {
        "decision": DecisionChoices.LOCKED_OUT,
        "status": 423,
        "reason": "locked_out",
        "detail": detail,
        "audit_reason": audit_reason,
        "extra": {"locked_until": until, "retry_after": denied.retry_after_seconds()},
    }


def compared_frames(usable: list[tuple[int, Any]], allowed: int) -> list[tuple[int, Any]]:
    """The frames a call may compare when its lockout grant is smaller than its usable frames:
    the best-quality ones (the likeliest to match a genuine person), in their original order."""
    if len(usable) <= allowed:
        return usable
    ranked = sorted(usable, key=lambda item: -(item[1].quality_score or 0.0))[: max(0, allowed)]
    return sorted(ranked, key=lambda item: item[0])
