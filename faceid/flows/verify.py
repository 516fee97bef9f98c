"""Verify (1:1): is the face in these frames the claimed person?

``prepare_verify`` runs in the web process before the pipeline: it resolves the claim (always
within the caller's organization), checks the lockout and the images, and returns the pipeline
request. ``finish_verify`` decides on the pipeline's output: each frame against each of the
person's enrolled photos in the comparison space their mask decisions call for (full face only
when neither side is masked; mask-aware whenever either is; both, the stricter winning, when a
mask decision is unsure: inference.comparison), with that space's threshold; the best frame
decides, and exactly one audit row per call, refusals included, records the space and threshold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from faceid import lockout, model_switch, selectors
from faceid.contracts import MAX_IMAGES, FrameResult, ModelFrames, PipelineFailure, PipelineOutput
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
from faceid.flows.results import ModelRef, PersonRef, VerifyResult, frame_summaries
from faceid.flows.scoring import needs_mask_aware, person_photos, policy_thresholds, score_frame
from faceid.models import AttemptMode, DecisionChoices, LockoutState, Person
from inference.comparison import Decision
from inference.embedders import embedder_spec
from tenants.models import Organization, OrganizationPolicy
from tenants.selectors import policy_for

MODE = AttemptMode.VERIFY


def prepare_verify(
    caller: Caller, *, person_ref: str, images: Sequence[ImageInput], started: float | None = None
) -> PreparedCall:
    """Resolve the claimed person, the lockout and the images; every refusal here is audited."""
    organization = caller.organization
    policy = policy_for(organization)
    call = FlowCall(kind="verify", caller=caller, policy=PolicySnapshot.of(policy))
    if started is not None:
        call.started = started
    claim = (person_ref or "").strip()
    call.claim = claim

    def refused(**kwargs) -> FlowError:
        model_name = call.policy.embedding_model
        return refuse(caller, started=call.started, mode=MODE, model_name=model_name, **kwargs)

    if not claim:
        raise refused(
            decision=DecisionChoices.UNKNOWN_PERSON,
            status=400,
            reason="person_required",
            detail="Give the claimed person (`person`: id or external id).",
            audit_reason="no claimed person given",
        )
    person = selectors.person_by_id_or_external_id(organization, claim, include_erased=True)
    if person is None:
        raise refused(
            decision=DecisionChoices.UNKNOWN_PERSON,
            status=404,
            reason="unknown_person",
            detail="No such person.",
            audit_reason="no such person in this organization",
            claimed_external_id=claim,
        )
    if person.is_erased or not person.active:
        state = "erased" if person.is_erased else "inactive"
        # Erased and inactive people answer like unknown ones: nothing to verify against.
        raise refused(
            decision=DecisionChoices.INACTIVE_PERSON,
            status=404,
            reason="unknown_person",
            detail=f"No such person (the person is {state}).",
            audit_reason=f"person is {state}",
            claimed_person=person,
            claimed_external_id=claim,
        )
    # During a model switch the person's old templates serve until their new ones exist (C4).
    policy_model = call.policy.embedding_model
    call.policy = model_switch.serving_model(organization, person, call.policy).applied_to(call.policy)

    # Reserve this call's frames from the person's budget under the person's lock: parallel,
    # asynchronous and multi-key calls all see each other's reservations.
    subject = lockout.Subject.person(person, caller.lockout_key)
    with lockout.holding(organization, subject, policy) as ledger:
        grant = ledger.reserve(frames=min(len(images), MAX_IMAGES), mode=MODE)
    if isinstance(grant, lockout.Denied):
        raise refused(
            **locked_refusal(grant, policy, failures=_FAILURES, locked_detail=_LOCKED), claimed_person=person
        )
    try:
        try:
            check_images(images)
        except FlowError as exc:
            raise refused(
                decision=DecisionChoices.BAD_IMAGE,
                status=exc.status,
                reason=exc.reason,
                detail=exc.detail,
                claimed_person=person,
                extra=exc.extra,
            ) from None
        if not selectors.templates_for_person(
            organization, person, model_name=call.policy.embedding_model
        ).exists():
            raise refused(
                decision=DecisionChoices.NO_TEMPLATES,
                status=409,
                reason="no_templates",
                detail="This person has no enrolled face for the organization's model.",
                audit_reason=f"no {call.policy.embedding_model} templates enrolled",
                claimed_person=person,
            )
    except FlowError:
        lockout.release(organization, grant.entry_id, policy)  # refused before any comparison
        raise
    call.lockout_entry = grant.entry_id
    call.person_id = person.pk
    call.images = image_metas(images, keep=policy.keep_images)
    # A person enrolled with a mask on (or on an unsure photo) is met in the mask-aware space even
    # by an unmasked probe: only then does the worker embed that space for unmasked frames too.
    mask_aware = needs_mask_aware(
        organization, call.policy.embedding_model, mask_threshold=policy.mask_threshold, person=person
    )
    moving_to = _switch_target(organization, call.policy.embedding_model, policy_model)
    if moving_to is None:
        return PreparedCall(call, probe_request(call.policy, images, mask_aware=mask_aware))
    # The running switch may replace this person's old templates while the pipeline runs: the
    # frames are embedded with the new model too, so that finish_verify can decide with whichever
    # model serves the person then. Their new photos' masks are unknown yet: mask-aware vectors too.
    request = probe_request(call.policy, images, mask_aware=True)
    return PreparedCall(call, dataclasses.replace(request, also_embed=(moving_to,)))


def _switch_target(organization: Organization, serving_model: str, policy_model: str) -> str | None:
    """The model a running switch is moving this person to, where the old one serves them now."""
    if serving_model == policy_model or model_switch.running_switch(organization) is None:
        return None
    return policy_model if embedder_spec(policy_model).available else None


_FAILURES = "failed verifications of this person"
_LOCKED = "Too many failed verifications: this person is locked out for now."


def finish_verify(
    call: FlowCall, output: PipelineOutput | None = None, failure: PipelineFailure | None = None
) -> VerifyResult:
    """The decision on the pipeline's output (or its failure). Refusals raise an audited FlowError."""
    organization = call.caller.organization
    policy = call.policy
    live_policy = policy_for(organization)  # the lockout's window and duration as they are now
    person = Person.objects.filter(organization=organization, pk=call.person_id).first()
    try:
        if failure is not None or output is None:
            raise refuse_failure(call, failure or _NO_OUTPUT, claimed_person=person)
        usable = usable_frames(call, output, claimed_person=person)
        # The person can only vanish between prepare and finish through a concurrent erasure.
        if person is None or person.is_erased:
            raise _no_templates(call, output, usable[0][1], person)
    except FlowError:
        lockout.release(organization, call.lockout_entry, live_policy)  # nothing was compared
        raise

    subject = lockout.Subject.person(person, call.caller.lockout_key)
    refusal: FlowError | None = None
    with lockout.holding(organization, subject, live_policy) as ledger:
        # Check again when deciding: this call compares at most the frames it holds.
        grant = ledger.claim(call.lockout_entry, frames=len(usable), mode=MODE)
        if isinstance(grant, lockout.Denied):
            refusal = refuse(
                call.caller,
                **_common(call, output, person),
                **locked_refusal(grant, live_policy, failures=_FAILURES, locked_detail=_LOCKED),
            )
        else:
            compared = compared_frames(usable, grant.frames)
            best = _best_frame(organization, person, policy, compared)
            moved = None if best is not None else _moved_by_the_switch(call, output, person, live_policy)
            if moved is not None:
                call.policy, output, usable = moved
                compared = compared_frames(usable, grant.frames)
                best = _best_frame(organization, person, call.policy, compared)
            if best is None:
                ledger.settle(grant, state=LockoutState.VOID)
                refusal = _no_templates(call, output, usable[0][1], person)
            else:
                result = _decide(call, output, person, best, ledger, grant, len(compared))
    if refusal is not None:
        raise refusal
    return result


def _moved_by_the_switch(
    call: FlowCall, output: PipelineOutput, person: Person, live_policy: OrganizationPolicy
) -> tuple[PolicySnapshot, PipelineOutput, list[tuple[int, FrameResult]]] | None:
    """Where the switch job gave the person their new templates (and retired the old ones) while
    the pipeline ran: the policy, frames and usable frames of the model that serves them now, if
    this call's frames were embedded with it too (prepare_verify asks for that during a switch)."""
    serving = model_switch.serving_model(call.caller.organization, person, live_policy)
    frames = output.frames_of(serving.model_name)
    if serving.model_name == call.policy.embedding_model or frames is None:
        return None
    usable = [(index, frame) for index, frame in enumerate(frames.results) if frame.usable]
    if not usable:
        return None
    # The two models' frames swap places: the serving model's decide, the pipeline time stays whole.
    swapped = dataclasses.replace(
        output,
        model_name=frames.model_name,
        model_version=frames.model_version,
        results=frames.results,
        also=(ModelFrames(output.model_name, output.model_version, output.results),),
    )
    return serving.applied_to(call.policy), swapped, usable


def _common(call: FlowCall, output: PipelineOutput, person: Person | None) -> dict:
    return {
        "started": call.started,
        "mode": MODE,
        "model_name": call.policy.embedding_model,
        "model_version": output.model_version,
        "claimed_person": person,
    }


def _no_templates(
    call: FlowCall, output: PipelineOutput, frame: FrameResult, person: Person | None
) -> FlowError:
    masked = bool(frame.masked)
    return refuse(
        call.caller,
        **_common(call, output, person),
        decision=DecisionChoices.NO_TEMPLATES,
        status=409,
        reason="no_templates",
        detail="No enrolled template to compare this probe with.",
        audit_reason=f"no template of the variant this probe needs (masked: {masked})",
        masked=masked,
        mask_probability=frame.mask_probability,
        extra={"masked": masked},
    )


def _decide(
    call: FlowCall,
    output: PipelineOutput,
    person: Person,
    best: tuple[Decision, int, FrameResult],
    ledger: lockout.Ledger,
    grant: lockout.Grant,
    compared: int,
) -> VerifyResult:
    """Accept or reject on the best frame, settle the lockout entry, write the audit row."""
    policy = call.policy
    scored, index, frame = best
    masked = bool(frame.masked)
    # The comparison space decides the threshold: masked whenever either side wore a mask.
    similarity, threshold, match = scored.similarity, scored.threshold, scored.accepted
    reason = (
        f"similarity {similarity:.4f} {'>=' if match else '<'} threshold {threshold:.4f}, "
        + scored.describe()
    )
    if compared > 1:
        reason += f" (best of {compared} frames)"
    locked_out = None
    if match:
        decision = DecisionChoices.ACCEPT
        ledger.settle(grant, state=LockoutState.PASSED, comparisons=compared)
    else:
        decision = DecisionChoices.REJECT
        ledger.settle(grant, state=LockoutState.FAILED, comparisons=compared)
        if ledger.status().locked:
            limit = ledger.policy.lockout_failures
            reason += f"; lockout triggered ({limit} failed frames within the window)"
            locked_out = True
    attempt = record(
        call.caller,
        **_common(call, output, person),
        decision=decision,
        similarity=similarity,
        threshold=threshold,
        matched_person=person if match else None,
        masked=masked,
        mask_probability=frame.mask_probability,
        reason=reason,
    )
    keep_probe_images(call, attempt)
    return VerifyResult(
        match=match,
        similarity=round(similarity, 6),
        threshold=threshold,
        masked=masked,
        mask_probability=frame.mask_probability,
        attempt_id=attempt.pk,
        latency_ms=attempt.latency_ms,
        pipeline_ms=output.pipeline_ms,
        decision=decision,
        person=PersonRef(person.pk, person.external_id),
        frame=index,
        frames=frame_summaries(output),
        quality=frame.quality_score,
        model=ModelRef(policy.embedding_model, output.model_version),
        locked_out=locked_out,
    )


def _best_frame(
    organization, person: Person, policy: PolicySnapshot, usable: list[tuple[int, FrameResult]]
) -> tuple[Decision, int, FrameResult] | None:
    """The best (decision, frame index, frame) over the usable frames, ranked by the margin over
    the threshold of the space each was decided in; None when nothing could be compared."""
    photos = person_photos(
        organization, policy.embedding_model, [person.pk], mask_threshold=policy.mask_threshold
    )[person.pk]
    thresholds = policy_thresholds(policy)
    best = None
    for index, frame in usable:
        decision = score_frame(
            frame,
            photos,
            strategy=policy.mask_strategy,
            thresholds=thresholds,
            mask_threshold=policy.mask_threshold,
        )
        if decision is not None and (best is None or decision.deciding.margin > best[0].deciding.margin):
            best = (decision, index, frame)
    return best


_NO_OUTPUT = PipelineFailure("failed", "error", "no pipeline output")
