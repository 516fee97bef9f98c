"""Changing model without a flag day: the switch record, which model serves a person meanwhile,
and the steps of the background job that computes the new model's templates.

When an organization's policy changes model (tenants.services.update_policy), ``start_switch``
records the old model (name, version, thresholds) and the new one, lists every person who has
templates of the old model, and audits it (``model_switch_start``). The job (faceid.jobs,
``run_model_switch``; its steps are faceid.switch_reembed) re-embeds each listed person from their
kept enrollment photos where the policy keeps images (StoredImage); a person without a usable kept
photo is listed for re-enrollment. When nobody is pending any more the switch completes
(``model_switch_complete``).

Serving rule (contract C4, ``serving_model``): a person with templates of the policy's model is
matched with them and the policy's thresholds; otherwise, if the organization's latest switch led
to the policy's model and the person still has templates of that switch's old model, those serve,
with the old thresholds the switch kept. So verify keeps working for everyone, during the job and
after it for persons waiting to re-enroll.

Old templates rule: a person's old-model templates are deleted (audited, ``template_delete``) as
soon as their new-model templates exist, by the job or by a new enrollment; a person listed for
re-enrollment keeps being served by them until then. A later switch deletes the templates of any
model that is neither its old nor its new one (counted in its start event): nothing serves them.

The job's first task is sent by name: this module imports neither faceid.jobs nor its steps.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, NamedTuple

from celery import current_app
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from faceid import job_records, services
from faceid.events import Action, Actor, record_event
from faceid.models import (
    FaceTemplate,
    ModelSwitch,
    ModelSwitchPerson,
    ModelSwitchStatus,
    Person,
    SwitchPersonState,
)
from inference.embedders import UnknownEmbedderError, embedder_spec
from tenants.models import Organization, OrganizationPolicy
from tenants.selectors import policy_for

logger = logging.getLogger(__name__)

# The job's first task (faceid.jobs), sent by name so that this module need not import the jobs.
RUN_TASK = "faceid.jobs.run_model_switch"
JOB_KIND = "model_switch"
# Persons listed for re-enrollment in the job's answer (the console pages through them all).
MAX_LISTED = 1000


class Thresholds(NamedTuple):
    unmasked: float
    masked: float

    def threshold_for(self, *, masked: bool) -> float:
        return self.masked if masked else self.unmasked


class Serving(NamedTuple):
    """The model that matches a person and its thresholds: ``model_name, thresholds = serving``."""

    model_name: str
    thresholds: Thresholds

    def applied_to(self, snapshot: Any) -> Any:
        """A copy of a policy snapshot (a dataclass with embedding_model and both thresholds) that
        matches with this model and these thresholds: what verify decides with."""
        return dataclasses.replace(
            snapshot,
            embedding_model=self.model_name,
            threshold_unmasked=self.thresholds.unmasked,
            threshold_masked=self.thresholds.masked,
        )


def _policy_serving(policy: Any) -> Serving:
    return Serving(policy.embedding_model, Thresholds(policy.threshold_unmasked, policy.threshold_masked))


def _old_serving(switch: ModelSwitch) -> Serving:
    return Serving(
        switch.old_model_name, Thresholds(switch.old_threshold_unmasked, switch.old_threshold_masked)
    )


# --- selectors ---------------------------------------------------------------------------------------


def latest_switch(organization: Organization) -> ModelSwitch | None:
    return ModelSwitch.objects.filter(organization=organization).order_by("-id").first()


def running_switch(organization: Organization) -> ModelSwitch | None:
    return ModelSwitch.objects.filter(organization=organization, status=ModelSwitchStatus.RUNNING).first()


def _has_templates(organization: Organization, person: Person, model_name: str) -> bool:
    templates = FaceTemplate.objects.filter(organization=organization, person=person)
    return templates.filter(model_name=model_name).exists()


def serving_model(organization: Organization, person: Person, policy: Any = None) -> Serving:
    """Which model (and thresholds) matches this person now (contract C4; see the module's rule).
    ``policy``: the OrganizationPolicy or a snapshot of it (read afresh when None)."""
    policy = policy if policy is not None else policy_for(organization)
    current = _policy_serving(policy)
    switch = latest_switch(organization)
    if switch is None or switch.new_model_name != current.model_name:
        return current
    if _has_templates(organization, person, current.model_name):
        return current
    if _has_templates(organization, person, switch.old_model_name):
        return _old_serving(switch)
    return current


def serving_galleries(organization: Organization, policy: Any = None) -> list[Serving]:
    """Every model that serves somebody in the organization now, the policy's first: what 1:N
    search must cover (a probe embedded with each, compared with that model's thresholds)."""
    policy = policy if policy is not None else policy_for(organization)
    galleries = [_policy_serving(policy)]
    switch = latest_switch(organization)
    if (
        switch is not None
        and switch.new_model_name == policy.embedding_model
        and old_served_persons(organization, switch).exists()
    ):
        galleries.append(_old_serving(switch))
    return galleries


def old_served_persons(organization: Organization, switch: ModelSwitch) -> QuerySet[Person]:
    """Live persons the switch's old model still serves (old templates, no new ones)."""
    return (
        Person.objects.filter(organization=organization, erased_at__isnull=True)
        .filter(templates__model_name=switch.old_model_name)
        .exclude(templates__model_name=switch.new_model_name)
        .distinct()
    )


def progress(switch: ModelSwitch) -> dict[str, int]:
    """{"done", "total", "reembedded", "needs_enrollment", "pending"} of the switch's job."""
    counts = dict(
        ModelSwitchPerson.objects.filter(switch=switch).values_list("state").annotate(n=Count("id"))
    )
    pending = counts.get(SwitchPersonState.PENDING, 0)
    total = sum(counts.values())
    return {
        "done": total - pending,
        "total": total,
        "pending": pending,
        "reembedded": counts.get(SwitchPersonState.REEMBEDDED, 0),
        "needs_enrollment": counts.get(SwitchPersonState.NEEDS_ENROLLMENT, 0),
    }


def persons_needing_enrollment(organization: Organization, switch: ModelSwitch | None = None) -> QuerySet:
    """The switch's (by default the latest's) live persons listed for re-enrollment, with reasons."""
    switch = switch if switch is not None else latest_switch(organization)
    if switch is None:
        return ModelSwitchPerson.objects.none()
    return (
        ModelSwitchPerson.objects.filter(
            switch=switch,
            switch__organization=organization,
            state=SwitchPersonState.NEEDS_ENROLLMENT,
            person__erased_at__isnull=True,
        )
        .select_related("person")
        .order_by("person__external_id", "person_id")
    )


def job_record(switch: ModelSwitch) -> dict[str, Any]:
    """The switch's job as faceid.jobs records it, its status and progress read from the database."""
    switch = ModelSwitch.objects.select_related("organization").get(pk=switch.pk)
    counts = progress(switch)
    done = switch.status == ModelSwitchStatus.COMPLETED
    return {
        "id": switch.job_id,
        "kind": JOB_KIND,
        "status": "done" if done else ("running" if counts["done"] else "pending"),
        "organization_id": switch.organization_id,
        "switch_id": switch.pk,
        "created_at": switch.started_at.isoformat(),
        "finished_at": switch.completed_at.isoformat() if switch.completed_at else None,
        "http_status": 200 if done else None,
        "progress": {"done": counts["done"], "total": counts["total"]},
        "outcome": {
            "old_model": switch.old_model_name,
            "new_model": switch.new_model_name,
            "new_model_version": switch.new_model_version,
            **counts,
            # Who must enroll again (the console's list, for API clients); at most MAX_LISTED.
            "needs_enrollment_persons": [
                {"id": row.person_id, "external_id": row.person.external_id, "reason": row.reason}
                for row in persons_needing_enrollment(switch.organization, switch)[:MAX_LISTED]
            ],
        },
        "refusal": None,
    }


# --- starting a switch -------------------------------------------------------------------------------


def ensure_no_running_switch(organization: Organization) -> None:
    switch = running_switch(organization)
    if switch is not None:
        counts = progress(switch)
        raise ValidationError(
            {
                "embedding_model": f"a switch to {switch.new_model_name} is still running "
                f"({counts['done']}/{counts['total']} persons done): wait for it to complete"
            }
        )


def _version_of(organization: Organization, model_name: str) -> str:
    """The version the organization's templates of a model carry (the registry's when it has none)."""
    stored = (
        FaceTemplate.objects.filter(organization=organization, model_name=model_name)
        .values_list("model_version", flat=True)
        .order_by("-created_at")
        .first()
    )
    if stored:
        return stored
    try:
        return embedder_spec(model_name).version
    except UnknownEmbedderError:
        return ""


def start_switch(
    organization: Organization,
    *,
    old_model: str,
    old_thresholds: Thresholds,
    new_model: str,
    actor: Actor | None = None,
) -> ModelSwitch:
    """Record and audit a switch (call it in the transaction that changes the policy); the job starts
    once that transaction commits. Refused while another switch of the organization runs."""
    ensure_no_running_switch(organization)
    retired, _ = (
        FaceTemplate.objects.filter(organization=organization)
        .exclude(model_name__in=[old_model, new_model])
        .delete()
    )
    switch = ModelSwitch.objects.create(
        organization=organization,
        old_model_name=old_model,
        old_model_version=_version_of(organization, old_model),
        old_threshold_unmasked=old_thresholds.unmasked,
        old_threshold_masked=old_thresholds.masked,
        new_model_name=new_model,
        new_model_version=embedder_spec(new_model).version,
        job_id=job_records.new_job_id(),
    )
    with_old = Person.objects.filter(
        organization=organization, erased_at__isnull=True, templates__model_name=old_model
    ).distinct()
    rows = [
        ModelSwitchPerson(
            switch=switch,
            person=person,
            state=SwitchPersonState.PENDING if person.active else SwitchPersonState.NEEDS_ENROLLMENT,
            reason="" if person.active else "inactive: enroll again once reactivated",
        )
        for person in with_old
    ]
    ModelSwitchPerson.objects.bulk_create(rows)
    record_event(
        organization,
        action=Action.MODEL_SWITCH_START,
        actor=actor,
        details={
            "switch": switch.pk,
            "job": switch.job_id,
            "old_model": old_model,
            "old_model_version": switch.old_model_version,
            "old_thresholds": {"unmasked": old_thresholds.unmasked, "masked": old_thresholds.masked},
            "new_model": new_model,
            "new_model_version": switch.new_model_version,
            "persons": len(rows),
            "retired_templates_deleted": retired,
        },
    )
    transaction.on_commit(lambda: _launch(switch.pk))
    maybe_complete(switch.pk)  # nobody to re-embed: complete at once
    switch.refresh_from_db()
    return switch


def resume_switch(organization: Organization) -> ModelSwitch | None:
    """Send the running switch's job again (say its message was lost with the broker); None when no
    switch runs. Safe to repeat: only pending persons are planned, and storing is idempotent."""
    switch = running_switch(organization)
    if switch is not None:
        transaction.on_commit(lambda: _launch(switch.pk))
    return switch


def _launch(switch_id: int) -> None:
    switch = ModelSwitch.objects.get(pk=switch_id)
    job_records.save(job_record(switch))
    if switch.status == ModelSwitchStatus.RUNNING:
        current_app.send_task(RUN_TASK, args=[switch.pk], task_id=switch.job_id)


# --- completing a switch ------------------------------------------------------------------------------


@transaction.atomic
def maybe_complete(switch_id: int) -> bool:
    """Complete (and audit, once) the switch when no person is pending. True when it is complete."""
    switch = ModelSwitch.objects.select_for_update().select_related("organization").get(pk=switch_id)
    if switch.status == ModelSwitchStatus.COMPLETED:
        return True
    counts = progress(switch)
    if counts["pending"]:
        return False
    switch.status, switch.completed_at = ModelSwitchStatus.COMPLETED, timezone.now()
    switch.save(update_fields=["status", "completed_at"])
    record_event(
        switch.organization,
        action=Action.MODEL_SWITCH_COMPLETE,
        details={
            "switch": switch.pk,
            "old_model": switch.old_model_name,
            "new_model": switch.new_model_name,
            "reembedded": counts["reembedded"],
            "needs_enrollment": counts["needs_enrollment"],
            # Their old templates keep serving them until they enroll again (module docstring).
            "old_templates_kept_for": old_served_persons(switch.organization, switch).count(),
        },
    )
    transaction.on_commit(lambda: job_records.save(job_record(switch)))
    return True


def retire_old_templates(organization: Organization, person: Person, *, actor: Actor | None = None) -> int:
    """After a person is enrolled with the policy's model: delete their templates of the latest
    switch's old model (no longer served) and take them off the re-enrollment list. Returns how many
    templates went."""
    policy: OrganizationPolicy = policy_for(organization)
    switch = latest_switch(organization)
    if switch is None or switch.new_model_name != policy.embedding_model:
        return 0
    if not _has_templates(organization, person, switch.new_model_name):
        return 0
    deleted = services.delete_templates(organization, person, model_name=switch.old_model_name, actor=actor)
    ModelSwitchPerson.objects.filter(switch=switch, person=person).exclude(
        state=SwitchPersonState.REEMBEDDED
    ).update(state=SwitchPersonState.REEMBEDDED, reason="enrolled again")
    if switch.status == ModelSwitchStatus.RUNNING:
        maybe_complete(switch.pk)
    return deleted
