"""The enroll / verify (1:1) / identify (1:N) flows shared by the REST API and the console.

Each flow has two halves around one pipeline task on the Celery `inference` queue:

* ``prepare_*`` runs in the web process: resolves the person through the selectors (always with
  the caller's organization), checks the lockout, and returns a :class:`PipelineCall`; refusals
  found here raise :class:`FlowError` (already audited for verify/identify).
* ``finish`` turns the pipeline's JSON output (or its error) into the decision: matching against
  the stored templates, the policy's thresholds, storing templates, and exactly ONE audit row per
  verify/identify call. It returns ``(http_status, body)`` and runs in the web process for a
  synchronous call, or in the ``finish_job`` task for ``?async=true``: the same code either way.

The pipeline itself never touches the database; this module never touches torch.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError

from faceid import selectors, services
from faceid.models import AttemptMode, DecisionChoices, ImagePurpose, Person
from faceid.task_results import TaskFailed, TaskTimedOut, run_task
from tenants.models import ApiKey, Organization, OrganizationPolicy
from tenants.selectors import policy_for

logger = logging.getLogger(__name__)

# A burst of camera frames or a batch of enrollment photos; the task refuses more.
MAX_IMAGES = 16
DEFAULT_TOP_K = 5
MAX_TOP_K = 50

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

# Probe refusals mapped onto the audit log's decisions.
_PROBE_REFUSAL_DECISIONS = {"no_face": DecisionChoices.NO_FACE}


def refusal_message(code: str | None) -> str:
    if not code:
        return ""
    return REFUSAL_MESSAGES.get(code, code.replace("_", " ").capitalize() + ".")


# --- inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInput:
    """One uploaded image (multipart file or base64 JSON), still undecoded."""

    data: bytes
    name: str = "image"
    content_type: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


@dataclass(frozen=True)
class Caller:
    """Who asks: an organization and either one of its API keys or a console user."""

    organization: Organization
    api_key: ApiKey | None = None
    user: Any = None
    client_ip: str | None = None

    def to_json(self) -> dict:
        return {
            "organization_id": self.organization.pk,
            "api_key_id": self.api_key.pk if self.api_key is not None else None,
            "user_id": self.user.pk if self.user is not None else None,
            "client_ip": self.client_ip,
        }

    @classmethod
    def from_json(cls, data: dict) -> Caller:
        organization = Organization.objects.get(pk=data["organization_id"])
        api_key = ApiKey.objects.filter(pk=data.get("api_key_id"), organization=organization).first()
        user = (
            get_user_model().objects.filter(pk=data.get("user_id")).first() if data.get("user_id") else None
        )
        return cls(organization=organization, api_key=api_key, user=user, client_ip=data.get("client_ip"))


class FlowError(Exception):
    """A refusal: HTTP status, machine reason, human detail, extra fields for the JSON body."""

    def __init__(self, status: int, reason: str, detail: str, **extra: Any) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail
        self.extra = extra

    @property
    def body(self) -> dict:
        return {"reason": self.reason, "detail": self.detail, **self.extra}

    @property
    def headers(self) -> dict[str, str]:
        retry = self.extra.get("retry_after")
        return {"Retry-After": str(int(retry))} if retry else {}


@dataclass
class PipelineCall:
    """A prepared call: which pipeline task with which arguments, and the JSON context finish() needs."""

    task_name: str
    args: list
    context: dict = field(default_factory=dict)

    @property
    def task(self):
        from faceid import tasks

        return {"enroll_faces": tasks.enroll_faces, "probe_faces": tasks.probe_faces}[self.task_name]


# --- helpers --------------------------------------------------------------------------------------


def _policy_snapshot(policy: OrganizationPolicy) -> dict:
    return {
        "embedding_model": policy.embedding_model,
        "threshold_unmasked": policy.threshold_unmasked,
        "threshold_masked": policy.threshold_masked,
        "mask_threshold": policy.mask_threshold,
        "mask_strategy": policy.mask_strategy,
        "require_unmasked_enrollment": policy.require_unmasked_enrollment,
        "lockout_failures": policy.lockout_failures,
        "keep_images": policy.keep_images,
    }


def _latency_ms(context: dict) -> float:
    return round((time.time() - context["started"]) * 1000.0, 1)


def _check_images(images: Sequence[ImageInput]) -> None:
    if not images:
        raise FlowError(400, "no_image", "Send at least one image (multipart field `image`, or base64 JSON).")
    if len(images) > MAX_IMAGES:
        raise FlowError(400, "too_many_images", f"At most {MAX_IMAGES} images per call.")
    for index, image in enumerate(images):
        if not image.data:
            raise FlowError(
                400, "bad_image", f"Image {index} is empty.", image_reason="empty", image_index=index
            )


def _record(caller: Caller, context: dict | None, **fields: Any):
    """Append the one audit row of this call; `context` supplies what the caller sent."""
    if context is not None:
        fields.setdefault("latency_ms", _latency_ms(context))
        fields.setdefault("model_name", context["policy"]["embedding_model"])
    return services.record_attempt(
        caller.organization, api_key=caller.api_key, user=caller.user, client_ip=caller.client_ip, **fields
    )


def _probe_call(policy, images: list, context: dict) -> PipelineCall:
    """The worker call that embeds verify and identify frames with the organization's policy."""
    if policy.keep_images:
        context["keep"] = [[img.b64(), img.name, img.content_type] for img in images]
    args = [
        [img.b64() for img in images],
        policy.embedding_model,
        policy.mask_threshold,
        policy.mask_strategy,
    ]
    return PipelineCall("probe_faces", args, context)


def _refuse_unusable_probe(
    caller: Caller,
    context: dict,
    mode: str,
    results: list[dict],
    usable: list,
    frames: list,
    model_version: str,
    claimed_person: Person | None = None,
) -> tuple[int, dict] | None:
    """The audited 400/422 answer when no frame can be matched (verify and identify alike), else None."""
    bad = _decode_errors(results)
    if bad:
        first = bad[0]
        attempt = _record(
            caller,
            context,
            mode=mode,
            decision=DecisionChoices.BAD_IMAGE,
            claimed_person=claimed_person,
            model_version=model_version,
            reason=f"image {first['index']}: {first['detail']}",
        )
        return 400, {
            "reason": "bad_image",
            "detail": first["detail"],
            "image_reason": first["reason"],
            "images": bad,
            "attempt_id": attempt.pk,
        }
    if usable:
        return None
    code = next((r.get("refusal") for r in results if r.get("refusal")), "no_face")
    attempt = _record(
        caller,
        context,
        mode=mode,
        decision=_PROBE_REFUSAL_DECISIONS.get(code, DecisionChoices.LOW_QUALITY),
        claimed_person=claimed_person,
        model_version=model_version,
        reason=f"{code}: {refusal_message(code)}",
    )
    return 422, {"reason": code, "detail": refusal_message(code), "frames": frames, "attempt_id": attempt.pk}


def record_refusal(
    caller: Caller,
    *,
    mode: str,
    decision: str,
    reason: str,
    started: float,
    claimed_external_id: str = "",
    claimed_person: Person | None = None,
) -> int:
    """Audit a verify/identify refused before it reached the flow (rate limit, too large). Returns its id."""
    attempt = services.record_attempt(
        caller.organization,
        mode=mode,
        decision=decision,
        reason=reason,
        api_key=caller.api_key,
        user=caller.user,
        client_ip=caller.client_ip,
        claimed_person=claimed_person,
        claimed_external_id=claimed_external_id[:128],
        latency_ms=round((time.time() - started) * 1000.0, 1),
    )
    return attempt.pk


def _pipeline_error(error: dict) -> tuple[int, str, str, str]:
    """(status, reason, detail, decision) for a pipeline task error."""
    kind = error.get("kind")
    if kind == "timeout":
        return (
            504,
            "pipeline_timeout",
            f"The face pipeline did not answer in time ({error.get('message', '')}).",
            DecisionChoices.TIMEOUT,
        )
    if kind == "input":
        return 400, error.get("reason") or "bad_request", error.get("message", ""), DecisionChoices.BAD_IMAGE
    return (
        503,
        "pipeline_unavailable",
        f"The face pipeline failed: {error.get('message', '')}",
        DecisionChoices.ERROR,
    )


def _decode_errors(results: list[dict]) -> list[dict]:
    return [
        {"index": i, "reason": r["decode_error"]["reason"], "detail": r["decode_error"]["message"]}
        for i, r in enumerate(results)
        if r.get("decode_error")
    ]


def _pipeline_ms(results: list[dict]) -> float:
    """Time the worker spent in the pipeline stages for all images of the call."""
    return round(sum(sum((r.get("timings_ms") or {}).values()) for r in results), 1)


def _quality_score(result: dict) -> float | None:
    quality = result.get("quality") or {}
    return quality.get("score")


def run_sync(call: PipelineCall) -> tuple[int, dict]:
    """Run the pipeline task with the bounded wait (settings.PIPELINE_WAIT_SECONDS), then finish()."""
    try:
        output = run_task(call.task, *call.args)
    except TaskTimedOut as exc:
        return finish(call.context, error={"kind": "timeout", "reason": exc.reason, "message": exc.message})
    except TaskFailed as exc:
        kind = "input" if exc.input_error else "failed"
        return finish(call.context, error={"kind": kind, "reason": exc.reason, "message": exc.message})
    except Exception as exc:  # broker unreachable, ...: audited as an error, answered 503
        logger.exception("pipeline call %s could not be made", call.task_name)
        return finish(
            call.context, error={"kind": "failed", "reason": "error", "message": f"{type(exc).__name__}"}
        )
    return finish(call.context, pipeline_output=output)


def finish(context: dict, pipeline_output: dict | None = None, error: dict | None = None) -> tuple[int, dict]:
    """Second half of a flow (see the module docstring). Never raises for a refusal: it answers it."""
    kind = context["kind"]
    handler = {"verify": _finish_verify, "identify": _finish_identify, "enroll": _finish_enroll}[kind]
    caller = Caller.from_json(context["caller"])
    try:
        return handler(caller, context, pipeline_output, error)
    except FlowError as exc:
        return exc.status, exc.body


# --- verify (1:1) ---------------------------------------------------------------------------------


def prepare_verify(
    caller: Caller, *, person_ref: str, images: Sequence[ImageInput], started: float | None = None
) -> PipelineCall:
    """Resolve the claimed person and the lockout, then the pipeline call. Refusals are audited."""
    started = started or time.time()
    organization = caller.organization
    policy = policy_for(organization)
    context = {
        "kind": "verify",
        "caller": caller.to_json(),
        "started": started,
        "policy": _policy_snapshot(policy),
    }
    claim = (person_ref or "").strip()
    mode = AttemptMode.VERIFY

    if not claim:
        attempt = _record(
            caller,
            context,
            mode=mode,
            decision=DecisionChoices.UNKNOWN_PERSON,
            reason="no claimed person given",
        )
        raise FlowError(
            400,
            "person_required",
            "Give the claimed person (`person`: id or external id).",
            attempt_id=attempt.pk,
        )
    person = selectors.person_by_id_or_external_id(organization, claim, include_erased=True)
    if person is None:
        attempt = _record(
            caller,
            context,
            mode=mode,
            decision=DecisionChoices.UNKNOWN_PERSON,
            claimed_external_id=claim,
            reason="no such person in this organization",
        )
        raise FlowError(404, "unknown_person", "No such person.", attempt_id=attempt.pk)
    if person.is_erased or not person.active:
        state = "erased" if person.is_erased else "inactive"
        attempt = _record(
            caller,
            context,
            mode=mode,
            decision=DecisionChoices.INACTIVE_PERSON,
            claimed_person=person,
            claimed_external_id=claim,
            reason=f"person is {state}",
        )
        # Erased and inactive people answer like unknown ones: nothing to verify against.
        raise FlowError(
            404, "unknown_person", f"No such person (the person is {state}).", attempt_id=attempt.pk
        )

    lockout = selectors.lockout_status(organization, person, policy)
    if lockout.locked:
        retry_after = lockout.retry_after_seconds()
        attempt = _record(
            caller,
            context,
            mode=mode,
            decision=DecisionChoices.LOCKED_OUT,
            claimed_person=person,
            reason=f"locked out until {lockout.locked_until.isoformat()} after {policy.lockout_failures} "
            f"failed verifications within {policy.lockout_window_seconds} s",
        )
        raise FlowError(
            423,
            "locked_out",
            "Too many failed verifications: this person is locked out for now.",
            attempt_id=attempt.pk,
            locked_until=lockout.locked_until.isoformat(),
            retry_after=retry_after,
        )

    try:
        _check_images(images)
    except FlowError as exc:
        attempt = _record(
            caller,
            context,
            mode=mode,
            decision=DecisionChoices.BAD_IMAGE,
            claimed_person=person,
            reason=exc.detail,
        )
        exc.extra["attempt_id"] = attempt.pk
        raise

    if not selectors.templates_for_person(organization, person, model_name=policy.embedding_model).exists():
        attempt = _record(
            caller,
            context,
            mode=mode,
            decision=DecisionChoices.NO_TEMPLATES,
            claimed_person=person,
            reason=f"no {policy.embedding_model} templates enrolled",
        )
        raise FlowError(
            409,
            "no_templates",
            "This person has no enrolled face for the organization's model.",
            attempt_id=attempt.pk,
        )

    context["person_id"] = person.pk
    context["claim"] = claim
    return _probe_call(policy, images, context)


def _finish_verify(
    caller: Caller, context: dict, output: dict | None, error: dict | None
) -> tuple[int, dict]:
    organization = caller.organization
    policy = context["policy"]
    person = Person.objects.filter(organization=organization, pk=context["person_id"]).first()
    mode = AttemptMode.VERIFY
    if error is not None:
        status, reason, detail, decision = _pipeline_error(error)
        attempt = _record(
            caller, context, mode=mode, decision=decision, claimed_person=person, reason=f"{reason}: {detail}"
        )
        return status, {"reason": reason, "detail": detail, "attempt_id": attempt.pk}

    results = output["results"]
    model_version = output.get("model_version", "")
    frames = _frames_summary(results)
    usable = [(i, r) for i, r in enumerate(results) if r.get("refusal") is None and r.get("embeddings")]
    refused = _refuse_unusable_probe(
        caller, context, mode, results, usable, frames, model_version, claimed_person=person
    )
    if refused is not None:
        return refused

    # person can only vanish between prepare and finish through a concurrent erasure
    best = None  # (similarity, frame index, result)
    if person is not None and not person.is_erased:
        for index, result in usable:
            for variant, vectors in result["embeddings"].items():
                for vector in vectors:
                    match = selectors.best_match_for_person(
                        organization, person, policy["embedding_model"], vector, variants=[variant]
                    )
                    if match is not None and (best is None or match.similarity > best[0]):
                        best = (match.similarity, index, result)
    if best is None:
        index, result = usable[0]
        masked = bool(result.get("masked"))
        attempt = _record(
            caller,
            context,
            mode=mode,
            decision=DecisionChoices.NO_TEMPLATES,
            claimed_person=person,
            masked=masked,
            mask_probability=result.get("mask_probability"),
            model_version=model_version,
            reason=f"no template of the variant this probe needs (masked: {masked})",
        )
        return 409, {
            "reason": "no_templates",
            "detail": "No enrolled template to compare this probe with.",
            "masked": masked,
            "attempt_id": attempt.pk,
        }

    similarity, index, result = best
    masked = bool(result.get("masked"))
    threshold = policy["threshold_masked"] if masked else policy["threshold_unmasked"]
    match = similarity >= threshold
    body_extra: dict[str, Any] = {}
    reason = f"similarity {similarity:.4f} {'>=' if match else '<'} threshold {threshold:.4f}"
    if match:
        decision = DecisionChoices.ACCEPT
    else:
        decision = DecisionChoices.REJECT
        lockout = selectors.lockout_status(organization, person, policy_for(organization))
        if lockout.failures_in_window + 1 >= policy["lockout_failures"]:
            reason += (
                f"; lockout triggered ({policy['lockout_failures']} failed verifications within the window)"
            )
            body_extra["locked_out"] = True
    attempt = _record(
        caller,
        context,
        mode=mode,
        decision=decision,
        claimed_person=person,
        similarity=similarity,
        threshold=threshold,
        matched_person=person if match else None,
        masked=masked,
        mask_probability=result.get("mask_probability"),
        model_version=model_version,
        reason=reason,
    )
    _keep_probe_images(caller, context, attempt)
    body = {
        "match": match,
        "similarity": round(similarity, 6),
        "threshold": threshold,
        "masked": masked,
        "mask_probability": result.get("mask_probability"),
        "attempt_id": attempt.pk,
        "latency_ms": attempt.latency_ms,
        "pipeline_ms": _pipeline_ms(results),
        "decision": decision,
        "person": {"id": person.pk, "external_id": person.external_id},
        "frame": index,
        "frames": frames,
        "quality": _quality_score(result),
        "model": {"name": policy["embedding_model"], "version": model_version},
        **body_extra,
    }
    return 200, body


def _frames_summary(results: list[dict]) -> list[dict]:
    return [
        {
            "index": i,
            "face_found": bool(r.get("face_found")),
            "refusal": r.get("refusal"),
            "detail": refusal_message(r.get("refusal")),
            "masked": r.get("masked"),
            "mask_probability": r.get("mask_probability"),
            "quality": _quality_score(r),
        }
        for i, r in enumerate(results)
    ]


def _keep_probe_images(caller: Caller, context: dict, attempt) -> None:
    for data_b64, name, content_type in context.get("keep", []):
        try:
            services.keep_image(
                caller.organization,
                data=base64.b64decode(data_b64),
                purpose=ImagePurpose.PROBE,
                filename=name or "probe",
                content_type=content_type,
                attempt=attempt,
            )
        except (OSError, ValidationError, DatabaseError):  # the decision stands even if keeping fails
            logger.exception("could not keep a probe image of attempt %s", attempt.pk)


# --- identify (1:N) -------------------------------------------------------------------------------


def prepare_identify(
    caller: Caller, *, images: Sequence[ImageInput], top_k: int | None = None, started: float | None = None
) -> PipelineCall:
    started = started or time.time()
    policy = policy_for(caller.organization)
    context = {
        "kind": "identify",
        "caller": caller.to_json(),
        "started": started,
        "policy": _policy_snapshot(policy),
    }
    top_k = DEFAULT_TOP_K if top_k is None else int(top_k)
    try:
        if not 1 <= top_k <= MAX_TOP_K:
            raise FlowError(400, "invalid", f"top_k must be between 1 and {MAX_TOP_K}.")
        _check_images(images)
    except FlowError as exc:
        decision = DecisionChoices.BAD_IMAGE if exc.reason != "invalid" else DecisionChoices.ERROR
        attempt = _record(caller, context, mode=AttemptMode.IDENTIFY, decision=decision, reason=exc.detail)
        exc.extra["attempt_id"] = attempt.pk
        raise
    context["top_k"] = top_k
    return _probe_call(policy, images, context)


def _finish_identify(
    caller: Caller, context: dict, output: dict | None, error: dict | None
) -> tuple[int, dict]:
    organization = caller.organization
    policy = context["policy"]
    mode = AttemptMode.IDENTIFY
    if error is not None:
        status, reason, detail, decision = _pipeline_error(error)
        attempt = _record(caller, context, mode=mode, decision=decision, reason=f"{reason}: {detail}")
        return status, {"reason": reason, "detail": detail, "attempt_id": attempt.pk}
    results = output["results"]
    model_version = output.get("model_version", "")
    frames = _frames_summary(results)
    usable = [(i, r) for i, r in enumerate(results) if r.get("refusal") is None and r.get("embeddings")]
    refused = _refuse_unusable_probe(caller, context, mode, results, usable, frames, model_version)
    if refused is not None:
        return refused

    top_k = context["top_k"]
    best_by_person: dict[
        int, tuple[float, float, bool, Any]
    ] = {}  # person -> (similarity, threshold, masked, p)
    best_seen: tuple[float, float, bool, dict] | None = None
    for _, result in usable:
        masked = bool(result.get("masked"))
        threshold = policy["threshold_masked"] if masked else policy["threshold_unmasked"]
        for variant, vectors in result["embeddings"].items():
            for vector in vectors:
                for m in selectors.nearest_templates(
                    organization, policy["embedding_model"], vector, variants=[variant], limit=top_k
                ):
                    if best_seen is None or m.similarity > best_seen[0]:
                        best_seen = (m.similarity, threshold, masked, result)
                    if m.similarity < threshold:
                        continue
                    current = best_by_person.get(m.person.pk)
                    if current is None or m.similarity > current[0]:
                        best_by_person[m.person.pk] = (m.similarity, threshold, masked, m.person)
    ranked = sorted(best_by_person.values(), key=lambda item: -item[0])[:top_k]
    matches = [
        {
            "person": p.pk,
            "external_id": p.external_id,
            "display_name": p.display_name,
            "similarity": round(sim, 6),
        }
        for sim, _, _, p in ranked
    ]
    if ranked:
        similarity, threshold, masked, top = ranked[0]
        result = next(r for _, r in usable if bool(r.get("masked")) == masked)
        decision = DecisionChoices.ACCEPT
        reason = (
            f"{len(ranked)} candidate(s) at or above the threshold; best {similarity:.4f} >= {threshold:.4f}"
        )
    else:
        top = None
        if best_seen is not None:
            similarity, threshold, masked, result = best_seen
            reason = f"nobody at or above the threshold; best {similarity:.4f} < {threshold:.4f}"
        else:
            result = usable[0][1]
            masked = bool(result.get("masked"))
            similarity, threshold = (
                None,
                policy["threshold_masked"] if masked else policy["threshold_unmasked"],
            )
            reason = "no enrolled template to compare with"
        decision = DecisionChoices.NO_MATCH
    attempt = _record(
        caller,
        context,
        mode=mode,
        decision=decision,
        similarity=similarity,
        threshold=threshold,
        matched_person=top,
        masked=masked,
        mask_probability=result.get("mask_probability"),
        model_version=model_version,
        reason=reason,
    )
    _keep_probe_images(caller, context, attempt)
    return 200, {
        "matches": matches,
        "threshold": threshold,
        "masked": masked,
        "mask_probability": result.get("mask_probability"),
        "attempt_id": attempt.pk,
        "latency_ms": attempt.latency_ms,
        "pipeline_ms": _pipeline_ms(results),
        "decision": decision,
        "frames": frames,
        "model": {"name": policy["embedding_model"], "version": model_version},
    }


# --- enroll ---------------------------------------------------------------------------------------


def prepare_enroll(
    caller: Caller, *, person: Person, images: Sequence[ImageInput], started: float | None = None
) -> PipelineCall:
    """Enrollment photos of a person of the caller's organization (looked up by the caller)."""
    organization = caller.organization
    if person.organization_id != organization.pk or person.is_erased:
        raise FlowError(404, "not_found", "No such person.")
    if not person.active:
        raise FlowError(409, "person_inactive", "This person is inactive: reactivate them before enrolling.")
    _check_images(images)
    policy = policy_for(organization)
    context = {
        "kind": "enroll",
        "caller": caller.to_json(),
        "started": started or time.time(),
        "policy": _policy_snapshot(policy),
        "person_id": person.pk,
        "images": [
            {"name": img.name, "sha256": img.sha256, "content_type": img.content_type} for img in images
        ],
    }
    if policy.keep_images:
        context["keep"] = [img.b64() for img in images]
    args = [
        [img.b64() for img in images],
        policy.embedding_model,
        policy.mask_threshold,
        not policy.require_unmasked_enrollment,
    ]
    return PipelineCall("enroll_faces", args, context)


def _finish_enroll(
    caller: Caller, context: dict, output: dict | None, error: dict | None
) -> tuple[int, dict]:
    organization = caller.organization
    policy = context["policy"]
    if error is not None:
        status, reason, detail, _ = _pipeline_error(error)
        return status, {"reason": reason, "detail": detail}
    results = output["results"]
    model_version = output.get("model_version", "")
    bad = _decode_errors(results)
    if bad:
        first = bad[0]
        return 400, {
            "reason": "bad_image",
            "detail": f"Photo {first['index']}: {first['detail']}",
            "image_reason": first["reason"],
            "images": bad,
            "stored": 0,
        }
    person = Person.objects.filter(organization=organization, pk=context["person_id"]).first()
    if person is None or person.is_erased:
        return 404, {"reason": "not_found", "detail": "No such person (erased meanwhile)."}

    photos: list[dict] = []
    stored_count = 0
    for index, (meta, result) in enumerate(zip(context["images"], results, strict=True)):
        entry: dict[str, Any] = {
            "index": index,
            "filename": meta["name"],
            "sha256": meta["sha256"],
            "face_found": bool(result.get("face_found")),
            "masked": result.get("masked"),
            "mask_probability": result.get("mask_probability"),
            "quality": result.get("quality"),
        }
        if result.get("refusal"):
            entry.update(
                stored=False,
                reason=result["refusal"],
                detail=refusal_message(result["refusal"]),
                templates=[],
            )
            photos.append(entry)
            continue
        quality = _quality_score(result)
        data = [
            services.TemplateData(
                model_name=policy["embedding_model"],
                model_version=model_version,
                variant=variant,
                embedding=vector,
                source_sha256=meta["sha256"],
                quality=quality,
                mask_probability=result.get("mask_probability"),
            )
            for variant, vectors in result.get("embeddings", {}).items()
            for vector in vectors
        ]
        try:
            templates = services.store_templates(organization, person, data)
        except ValidationError as exc:
            entry.update(stored=False, reason="not_stored", detail="; ".join(exc.messages), templates=[])
            photos.append(entry)
            continue
        stored_count += 1
        entry.update(
            stored=True,
            reason=None,
            detail="",
            templates=[
                {
                    "id": t.pk,
                    "variant": t.variant,
                    "quality": t.quality,
                    "model_name": t.model_name,
                    "model_version": t.model_version,
                }
                for t in templates
            ],
        )
        if context.get("keep"):
            try:
                services.keep_image(
                    organization,
                    data=base64.b64decode(context["keep"][index]),
                    purpose=ImagePurpose.ENROLLMENT,
                    filename=meta["name"] or "photo",
                    content_type=meta["content_type"],
                    person=person,
                )
            except (OSError, ValidationError, DatabaseError):
                logger.exception("could not keep an enrollment photo of person %s", person.pk)
        photos.append(entry)
    body = {
        "person": {"id": person.pk, "external_id": person.external_id},
        "stored": stored_count,
        "photos": photos,
        "latency_ms": _latency_ms(context),
        "model": {"name": policy["embedding_model"], "version": model_version},
    }
    if stored_count:
        return 201, body
    first = next((p for p in photos if p.get("reason")), None)
    body.update(
        reason=first["reason"] if first else "refused",
        detail="No photo could be enrolled: " + (first["detail"] if first else ""),
    )
    return 422, body
