"""Identify (1:N): who, among the organization's active persons, is the face in these frames?

Every vector of every usable frame is searched in the organization's templates of its variant
(HNSW, pgvector); candidates at or above the policy's threshold for the frame's mask decision are
ranked by their best similarity. Exactly one audit row per call, refusals included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from faceid import lockout, selectors
from faceid.contracts import MAX_IMAGES, FrameResult, PipelineFailure, PipelineOutput
from faceid.flows.common import (
    Caller,
    FlowCall,
    FlowError,
    ImageInput,
    PolicySnapshot,
    PreparedCall,
    check_images,
    compared_frames,
    image_metas,
    locked_refusal,
    record,
    refuse,
)
from faceid.flows.probes import keep_probe_images, probe_request, refuse_failure, usable_frames
from faceid.flows.results import IdentifyMatch, IdentifyResult, ModelRef, frame_summaries
from faceid.models import AttemptMode, DecisionChoices, LockoutState, Person
from tenants.selectors import policy_for

MODE = AttemptMode.IDENTIFY
DEFAULT_TOP_K = 5
MAX_TOP_K = 50


def prepare_identify(
    caller: Caller, *, images: Sequence[ImageInput], top_k: int | None = None, started: float | None = None
) -> PreparedCall:
    policy = policy_for(caller.organization)
    call = FlowCall(kind="identify", caller=caller, policy=PolicySnapshot.of(policy))
    if started is not None:
        call.started = started
    top_k = DEFAULT_TOP_K if top_k is None else int(top_k)
    try:
        if not 1 <= top_k <= MAX_TOP_K:
            raise FlowError(400, "invalid", f"top_k must be between 1 and {MAX_TOP_K}.")
        check_images(images)
    except FlowError as exc:
        raise refuse(
            caller,
            started=call.started,
            mode=MODE,
            model_name=policy.embedding_model,
            decision=DecisionChoices.ERROR if exc.reason == "invalid" else DecisionChoices.BAD_IMAGE,
            status=exc.status,
            reason=exc.reason,
            detail=exc.detail,
            extra=exc.extra,
        ) from None
    # The same limits as verify, per caller (API key or console user): each frame compared without
    # a match counts, so a key cannot search the gallery with face after face.
    subject = lockout.Subject.caller(caller.lockout_key)
    with lockout.holding(caller.organization, subject, policy) as ledger:
        grant = ledger.reserve(frames=min(len(images), MAX_IMAGES), mode=MODE)
    if isinstance(grant, lockout.Denied):
        raise refuse(
            caller,
            started=call.started,
            mode=MODE,
            model_name=policy.embedding_model,
            **locked_refusal(grant, policy, failures=_FAILURES, locked_detail=_LOCKED),
        )
    call.lockout_entry = grant.entry_id
    call.top_k = top_k
    call.images = image_metas(images, keep=policy.keep_images)
    return PreparedCall(call, probe_request(call.policy, images))


@dataclass(frozen=True)
class _Candidate:
    similarity: float
    threshold: float
    frame: FrameResult
    person: Person | None = None


def finish_identify(
    call: FlowCall, output: PipelineOutput | None = None, failure: PipelineFailure | None = None
) -> IdentifyResult:
    """Rank the candidates; an unknown face is a 200 with no match. Refusals raise an audited FlowError."""
    organization = call.caller.organization
    live_policy = policy_for(organization)
    try:
        if failure is not None or output is None:
            raise refuse_failure(call, failure or PipelineFailure("failed", "error", "no pipeline output"))
        usable = usable_frames(call, output)
    except FlowError:
        lockout.release(organization, call.lockout_entry, live_policy)  # nothing was compared
        raise
    subject = lockout.Subject.caller(call.caller.lockout_key)
    with lockout.holding(organization, subject, live_policy) as ledger:
        grant = ledger.claim(call.lockout_entry, frames=len(usable), mode=MODE)
        if isinstance(grant, lockout.Denied):
            refusal = refuse(
                call.caller,
                started=call.started,
                mode=MODE,
                model_name=call.policy.embedding_model,
                model_version=output.model_version,
                **locked_refusal(grant, live_policy, failures=_FAILURES, locked_detail=_LOCKED),
            )
        else:
            return _decide(call, output, compared_frames(usable, grant.frames), ledger, grant)
    raise refusal


_FAILURES = "identifications without a match by this caller"
_LOCKED = "Too many identifications without a match: this caller is locked out for now."


def _decide(
    call: FlowCall,
    output: PipelineOutput,
    usable: list[tuple[int, FrameResult]],
    ledger: lockout.Ledger,
    grant: lockout.Grant,
) -> IdentifyResult:
    policy = call.policy
    ranked, best_seen = _search(call, [frame for _, frame in usable])
    if ranked:
        ledger.settle(grant, state=LockoutState.PASSED, comparisons=len(usable))
    elif best_seen is not None:
        ledger.settle(grant, state=LockoutState.FAILED, comparisons=len(usable))
    else:
        ledger.settle(grant, state=LockoutState.VOID)  # nobody enrolled: nothing was compared

    if ranked:
        top = ranked[0]
        decision = DecisionChoices.ACCEPT
        reason = (
            f"{len(ranked)} candidate(s) at or above the threshold; best {top.similarity:.4f} "
            f">= {top.threshold:.4f}"
        )
        decided, matched, similarity = top, top.person, top.similarity
    else:
        decision, matched = DecisionChoices.NO_MATCH, None
        if best_seen is not None:
            decided, similarity = best_seen, best_seen.similarity
            reason = f"nobody at or above the threshold; best {similarity:.4f} < {best_seen.threshold:.4f}"
        else:
            frame = usable[0][1]
            decided = _Candidate(0.0, policy.threshold_for(masked=bool(frame.masked)), frame)
            similarity, reason = None, "no enrolled template to compare with"
    masked = bool(decided.frame.masked)
    attempt = record(
        call.caller,
        started=call.started,
        mode=MODE,
        decision=decision,
        model_name=policy.embedding_model,
        model_version=output.model_version,
        similarity=similarity,
        threshold=decided.threshold,
        matched_person=matched,
        masked=masked,
        mask_probability=decided.frame.mask_probability,
        reason=reason,
    )
    keep_probe_images(call, attempt)
    return IdentifyResult(
        matches=tuple(
            IdentifyMatch(c.person.pk, c.person.external_id, c.person.display_name, round(c.similarity, 6))
            for c in ranked
        ),
        threshold=decided.threshold,
        masked=masked,
        mask_probability=decided.frame.mask_probability,
        attempt_id=attempt.pk,
        latency_ms=attempt.latency_ms,
        pipeline_ms=output.pipeline_ms,
        decision=decision,
        frames=frame_summaries(output),
        model=ModelRef(policy.embedding_model, output.model_version),
    )


def _search(call: FlowCall, frames: list[FrameResult]) -> tuple[list[_Candidate], _Candidate | None]:
    """(candidates at or above their frame's threshold, best first, at most top_k; the most similar
    template seen at all, for the audit row of a no-match)."""
    organization = call.caller.organization
    policy = call.policy
    best_by_person: dict[int, _Candidate] = {}
    best_seen: _Candidate | None = None
    for frame in frames:
        threshold = policy.threshold_for(masked=bool(frame.masked))
        for variant, vector in frame.vectors():
            for m in selectors.nearest_templates(
                organization, policy.embedding_model, vector, variants=[variant], limit=call.top_k
            ):
                candidate = _Candidate(m.similarity, threshold, frame, m.person)
                if best_seen is None or m.similarity > best_seen.similarity:
                    best_seen = candidate
                if m.similarity < threshold:
                    continue
                current = best_by_person.get(m.person.pk)
                if current is None or m.similarity > current.similarity:
                    best_by_person[m.person.pk] = candidate
    ranked = sorted(best_by_person.values(), key=lambda c: -c.similarity)[: call.top_k]
    return ranked, best_seen
