"""Identify (1:N): who, among the organization's active persons, is the face in these frames?

Every vector of every usable frame is searched in the organization's templates of its variant
(HNSW, pgvector); each candidate person is then scored by the one rule verify uses
(faceid.flows.scoring: the space follows both sides' mask decisions), against identify's own
thresholds: chosen for the policy's false-positive identification rate per search at the number of
persons searched (faceid.flows.identify_thresholds), never below the 1:1 thresholds. Accepted
candidates are ranked by their margin over the threshold of the space they were decided in. The
answer says how many persons were searched. Exactly one audit row per call, refusals included.

During a model switch (faceid.model_switch) some persons are still served by the old model: the
probe is then embedded with every serving model (``PipelineRequest.also_embed``), each gallery is
searched with its own model's vectors and decided against its own model's thresholds (the old
ones the switch kept), each chosen for the FPIR target over all the persons searched, so that the
galleries together keep it. Candidates from every gallery are ranked by margin over their own
threshold, and the audit row names the model (and version) of the gallery that decided. Without a
switch, one model and one embedding per frame, as before.
"""

from __future__ import annotations

import dataclasses
import logging
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
from faceid.flows.identify_thresholds import IdentifyThresholds, gallery_size, identify_thresholds
from faceid.flows.probes import keep_probe_images, probe_request, refuse_failure, usable_frames
from faceid.flows.results import IdentifyMatch, IdentifyResult, ModelRef, frame_summaries
from faceid.flows.scoring import needs_mask_aware, policy_thresholds, score_persons
from faceid.model_switch import Serving, serving_galleries
from faceid.models import AttemptMode, DecisionChoices, FaceTemplate, LockoutState, Person
from inference.comparison import Decision
from inference.embedders import deployable_embedders
from inference.variants import SPACE_FULL
from tenants.models import Organization
from tenants.selectors import policy_for

logger = logging.getLogger(__name__)

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
    models = _serving_models(call)
    # Unmasked frames also carry their mask-aware vector when a gallery holds photos that exist
    # only in that space (enrolled with a mask on, or unsure): no pair is left unscored.
    mask_aware = any(
        needs_mask_aware(caller.organization, model, mask_threshold=policy.mask_threshold) for model in models
    )
    request = probe_request(call.policy, images, mask_aware=mask_aware)
    return PreparedCall(call, dataclasses.replace(request, also_embed=models[1:]))


def _serving_models(call: FlowCall) -> tuple[str, ...]:
    """The models whose galleries this search covers, the policy's first: one but during a switch."""
    models = [serving.model_name for serving in serving_galleries(call.caller.organization, call.policy)]
    if len(models) == 1:
        return (models[0],)
    deployable = set(deployable_embedders())
    for model in models[1:]:
        if model not in deployable:
            # Its weights left this deployment: its persons can still be verified from nowhere, so
            # the search goes on without them rather than failing for everyone.
            logger.warning("identify cannot search the %r gallery: the model is not deployable", model)
    return (models[0], *(model for model in models[1:] if model in deployable))


@dataclass(frozen=True)
class _Gallery:
    """One serving model's gallery as this search covers it: its thresholds and its frames."""

    model_name: str
    model_version: str
    limits: IdentifyThresholds
    persons: int  # the persons of this gallery (limits.gallery_size counts all galleries')
    frames: list[FrameResult]
    primary: bool  # the policy's model (else an old model still serving during a switch)


@dataclass(frozen=True)
class _Candidate:
    similarity: float
    threshold: float
    frame: FrameResult
    gallery: _Gallery
    person: Person | None = None
    decision: Decision | None = None

    @property
    def margin(self) -> float:
        return self.similarity - self.threshold

    @property
    def masked_space(self) -> bool:
        """Whether the candidate was decided in the mask-aware space (else the frame's decision)."""
        if self.decision is not None:
            return self.decision.space != SPACE_FULL
        return bool(self.frame.masked)


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
    galleries = _galleries(call, output, [index for index, _ in usable])
    primary = galleries[0]
    ranked, best_seen = _search(call, galleries)
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
            frame = primary.frames[0]
            decided = _Candidate(0.0, primary.limits.threshold_for(masked=bool(frame.masked)), frame, primary)
            similarity, reason = None, "no enrolled template to compare with"
    if decided.decision is not None:
        reason += f"; {decided.decision.describe()}"
    reason += f"; {decided.gallery.limits.describe(masked=decided.masked_space)}"
    if len(galleries) > 1:
        searched = ", ".join(f"{g.model_name} ({g.persons})" for g in galleries)
        reason += f"; model switch: galleries {searched}, decided by {decided.gallery.model_name}"
    masked = bool(decided.frame.masked)
    attempt = record(
        call.caller,
        started=call.started,
        mode=MODE,
        decision=decision,
        model_name=decided.gallery.model_name,
        model_version=decided.gallery.model_version,
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
        model=ModelRef(decided.gallery.model_name, decided.gallery.model_version),
        candidates_searched=primary.limits.gallery_size,
        target_fpir=primary.limits.target_fpir,
    )


def _galleries(call: FlowCall, output: PipelineOutput, indices: list[int]) -> list[_Gallery]:
    """The galleries this search covers, the policy's first: each serving model the worker embedded
    the frames with (the frames at `indices` that its own pipeline found usable), with thresholds
    chosen for the persons of all of them together."""
    organization = call.caller.organization
    found: list[tuple[Serving, str, list[FrameResult], int]] = []
    # The policy's model comes first, and the output always holds its frames (the request's model).
    for serving in serving_galleries(organization, call.policy):
        frames = output.frames_of(serving.model_name)
        if frames is None:  # not embedded with it: not deployable, or serving since the call began
            continue
        usable = [frames.results[i] for i in indices if frames.results[i].usable]
        persons = _persons_served(organization, serving.model_name, call.policy.embedding_model)
        found.append((serving, frames.model_version, usable, persons))
    total = sum(persons for *_, persons in found)
    return [
        _Gallery(
            model_name=serving.model_name,
            model_version=version,
            limits=identify_thresholds(organization, serving.applied_to(call.policy), size=total),
            persons=persons,
            frames=frames,
            primary=position == 0,
        )
        for position, (serving, version, frames, persons) in enumerate(found)
    ]


def _persons_served(organization: Organization, model_name: str, policy_model: str) -> int:
    """The active persons a gallery serves: an old model's leaves out those the policy's serves."""
    if model_name == policy_model:
        return gallery_size(organization, model_name)
    return (
        Person.objects.filter(organization=organization, active=True, templates__model_name=model_name)
        .exclude(templates__model_name=policy_model)
        .distinct()
        .count()
    )


def _search(call: FlowCall, galleries: list[_Gallery]) -> tuple[list[_Candidate], _Candidate | None]:
    """(candidates the rule accepts, largest margin first, at most top_k; the candidate with the
    largest margin seen at all, for the audit row of a no-match).

    HNSW finds the candidates by any of the frame's vectors in each gallery; each is then decided
    by the rule verify uses, against that gallery's open-set thresholds. An old model's gallery
    leaves out persons the policy's model serves already (its templates are on their way out).
    """
    best_by_person: dict[int, _Candidate] = {}
    best_seen: _Candidate | None = None
    for gallery in galleries:
        for candidate in _gallery_candidates(call, gallery):
            if best_seen is None or candidate.margin > best_seen.margin:
                best_seen = candidate
            if not candidate.decision.accepted:
                continue
            current = best_by_person.get(candidate.person.pk)
            if current is None or candidate.margin > current.margin:
                best_by_person[candidate.person.pk] = candidate
    ranked = sorted(best_by_person.values(), key=lambda c: -c.margin)[: call.top_k]
    return ranked, best_seen


def _gallery_candidates(call: FlowCall, gallery: _Gallery) -> list[_Candidate]:
    """Every candidate person of one gallery for every frame, decided."""
    organization = call.caller.organization
    policy = call.policy
    thresholds = policy_thresholds(gallery.limits)
    candidates = []
    for frame in gallery.frames:
        persons: dict[int, Person] = {}
        for variant, vector in frame.vectors():
            for m in selectors.nearest_templates(
                organization, gallery.model_name, vector, variants=[variant], limit=call.top_k
            ):
                persons[m.person.pk] = m.person
        if not gallery.primary and persons:
            moved = FaceTemplate.objects.filter(
                organization=organization, model_name=policy.embedding_model, person_id__in=list(persons)
            ).values_list("person_id", flat=True)
            for person_id in set(moved):
                del persons[person_id]
        decisions = score_persons(
            organization,
            frame,
            persons,
            model_name=gallery.model_name,
            strategy=policy.mask_strategy,
            thresholds=thresholds,
            mask_threshold=policy.mask_threshold,
        )
        candidates.extend(
            _Candidate(decision.similarity, decision.threshold, frame, gallery, persons[person_id], decision)
            for person_id, decision in decisions.items()
        )
    return candidates
