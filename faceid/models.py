"""Persons, their face templates, kept images and the append-only audit log.

Models hold data and invariants. Writes go through faceid.services, reads through
faceid.selectors (which always take the organization).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Func, Q
from django.utils import timezone
from pgvector.django import VectorField

from inference.variants import VARIANT_CUTOUT, VARIANT_FULL, VARIANT_SYNTHETIC
from tenants.models import ApiKey, Organization


class Person(models.Model):
    """An enrolled employee. Erasure keeps the row as a tombstone so audit rows still resolve."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="persons")
    external_id = models.CharField(
        max_length=128, help_text="The organization's own identifier (employee number)."
    )
    display_name = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    erased_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["external_id", "id"]
        constraints = [
            # Unique among live persons only: after an erasure the employee can be enrolled again.
            models.UniqueConstraint(
                fields=["organization", "external_id"],
                condition=Q(erased_at__isnull=True),
                name="faceid_person_external_id_unique_live",
                violation_error_message="a person with this external id already exists",
            ),
            # Target of the composite foreign keys that pin templates/attempts to the person's org.
            models.UniqueConstraint(fields=["id", "organization"], name="faceid_person_id_org_unique"),
            models.CheckConstraint(
                condition=Q(erased_at__isnull=True) | Q(active=False), name="faceid_person_erased_is_inactive"
            ),
            models.CheckConstraint(condition=~Q(external_id=""), name="faceid_person_external_id_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} {self.display_name}".strip()

    @property
    def is_erased(self) -> bool:
        return self.erased_at is not None


class TemplateVariant(models.TextChoices):
    # The names are the pipeline's (inference.variants).
    FULL = VARIANT_FULL, "Full face"
    MASKED_SYNTHETIC = VARIANT_SYNTHETIC, "Synthetic mask rendered on the enrollment photo"
    MASKED_CUTOUT = VARIANT_CUTOUT, "Lower face blanked"


class FaceTemplate(models.Model):
    """One embedding of one enrollment photo, for one model and one variant.

    ``embedding`` is a dimensionless pgvector column so models of different sizes coexist; every
    model has its own partial HNSW index over ``embedding::vector(dim)`` (migration 0002).
    """

    # Denormalised from person so every vector query filters on one column; a composite foreign
    # key (person_id, organization_id) -> person(id, organization_id) keeps it honest.
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="templates")
    model_name = models.CharField(max_length=48)
    model_version = models.CharField(max_length=64)
    variant = models.CharField(max_length=24, choices=TemplateVariant.choices, default=TemplateVariant.FULL)
    embedding = VectorField()
    dim = models.PositiveSmallIntegerField()
    quality = models.FloatField(null=True, blank=True)
    mask_probability = models.FloatField(null=True, blank=True)
    source_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["person_id", "model_name", "variant", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(variant__in=TemplateVariant.values), name="faceid_template_variant_valid"
            ),
            models.CheckConstraint(
                condition=Q(
                    dim=Func(F("embedding"), function="vector_dims", output_field=models.IntegerField())
                ),
                name="faceid_template_dim_matches",
            ),
            # Re-enrolling the same photo replaces its template instead of weighting it twice.
            models.UniqueConstraint(
                fields=["person", "model_name", "model_version", "variant", "source_sha256"],
                name="faceid_template_unique_source",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "person", "model_name"], name="faceid_tpl_org_person_model")
        ]

    def __str__(self) -> str:
        return f"template {self.pk} of person {self.person_id} ({self.model_name}/{self.variant})"


class DecisionChoices(models.TextChoices):
    ACCEPT = "accept", "Accepted (verify) / matched (identify)"
    REJECT = "reject", "Rejected: similarity below threshold"
    NO_MATCH = "no_match", "Identify: nobody above the threshold"
    NO_FACE = "no_face", "No face found"
    BAD_IMAGE = "bad_image", "Image could not be decoded"
    LOW_QUALITY = "low_quality", "Face quality too low"
    NO_TEMPLATES = "no_templates", "Claimed person has no usable templates"
    UNKNOWN_PERSON = "unknown_person", "Claimed person does not exist"
    INACTIVE_PERSON = "inactive_person", "Claimed person is inactive or erased"
    LOCKED_OUT = "locked_out", "Claimed person is locked out"
    RATE_LIMITED = "rate_limited", "Rate limited"
    TIMEOUT = "timeout", "Pipeline timed out"
    ERROR = "error", "Internal error"


# Decisions that count towards a person's lockout: a face was compared and did not match. Refusals
# before matching (no face, bad image, ...) say nothing about an impostor, and locked_out rows must
# not extend the lockout they report.
FAILURE_DECISIONS = frozenset({DecisionChoices.REJECT})


class AttemptMode(models.TextChoices):
    VERIFY = "verify", "Verify (1:1)"
    IDENTIFY = "identify", "Identify (1:N)"
    # A security-relevant action (faceid.events.record_event): no decision, an action and details.
    EVENT = "event", "Event (security-relevant action)"


class AuditAction(models.TextChoices):
    """What an event row records; faceid.events.Action is this class (defined here for the model)."""

    ENROLL = "enroll", "Enrollment"
    ENROLL_OVERRIDE = "enroll_override", "Enrollment: face-match override by an admin"
    TEMPLATE_DELETE = "template_delete", "Templates deleted"
    PERSON_ERASE = "person_erase", "Person erased"
    EXTERNAL_ID_CHANGE = "external_id_change", "External id changed"
    PERSON_DEACTIVATE = "person_deactivate", "Person deactivated"
    PERSON_ACTIVATE = "person_activate", "Person activated"
    POLICY_CHANGE = "policy_change", "Policy changed"
    API_KEY_CREATE = "api_key_create", "API key created"
    API_KEY_REVOKE = "api_key_revoke", "API key revoked"
    LOGIN = "login", "Login"
    LOGIN_FAILED = "login_failed", "Failed login"
    CSV_EXPORT = "csv_export", "Audit log exported as CSV"
    MODEL_SWITCH_START = "model_switch_start", "Model switch started"
    MODEL_SWITCH_COMPLETE = "model_switch_complete", "Model switch completed"


class AuditLogIsAppendOnly(Exception):
    """Raised on any attempt to change or delete audit rows through the ORM."""


class VerificationAttemptQuerySet(models.QuerySet):
    """Refuses bulk writes: rows are written one by one by faceid.audit, which chains them."""

    def update(self, **kwargs: Any) -> int:
        raise AuditLogIsAppendOnly("the audit log is append-only: update() refused")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("the audit log is append-only: delete() refused")

    def bulk_update(self, *args: Any, **kwargs: Any) -> int:
        raise AuditLogIsAppendOnly("the audit log is append-only: bulk_update() refused")

    def bulk_create(self, *args: Any, **kwargs: Any) -> list:
        raise AuditLogIsAppendOnly("audit rows are written one by one with faceid.services.record_attempt")

    def update_or_create(self, *args: Any, **kwargs: Any) -> Any:
        raise AuditLogIsAppendOnly("the audit log is append-only: update_or_create() refused")


class VerificationAttempt(models.Model):
    """The audit log: one row per verify/identify call and per security-relevant event (mode
    "event", faceid.events), append-only and chained per organization in one sequence.

    No biometric data here (no embeddings, no images): erasing a person leaves these rows intact.
    Every foreign key is PROTECT because the database refuses UPDATE/DELETE on this table (a
    trigger); SET_NULL or CASCADE could never succeed.
    """

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="attempts")
    # Position in the organization's chain: 1, 2, 3, ... Unique, so even a writer bypassing the lock
    # cannot fork the chain.
    seq = models.PositiveBigIntegerField(editable=False)
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.PROTECT, related_name="attempts"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="faceid_attempts",
    )
    mode = models.CharField(max_length=16, choices=AttemptMode.choices)
    claimed_person = models.ForeignKey(
        Person, null=True, blank=True, on_delete=models.PROTECT, related_name="claimed_attempts"
    )
    # What the caller sent, kept even when no such person exists.
    claimed_external_id = models.CharField(max_length=128, blank=True)
    decision = models.CharField(max_length=24, choices=DecisionChoices.choices)
    reason = models.TextField(blank=True)
    similarity = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    matched_person = models.ForeignKey(
        Person, null=True, blank=True, on_delete=models.PROTECT, related_name="matched_attempts"
    )
    masked = models.BooleanField(null=True, blank=True)
    mask_probability = models.FloatField(null=True, blank=True)
    model_name = models.CharField(max_length=48, blank=True)
    model_version = models.CharField(max_length=64, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    # Events only (mode "event"): what happened, and its details as canonical JSON text (sorted keys,
    # ASCII), kept as text so the hashed bytes are exactly the stored ones (jsonb would re-encode).
    action = models.CharField(max_length=32, blank=True, default="", choices=AuditAction.choices)
    details = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(editable=False)
    # How row_hash is computed (faceid.audit): 1 = SHA-256 (rows written before the HMAC chain),
    # 2 = HMAC-SHA256 under AUDIT_HMAC_KEY. Never decreases along a chain.
    hash_version = models.PositiveSmallIntegerField(default=1, editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    row_hash = models.CharField(max_length=64, unique=True, editable=False)

    objects = VerificationAttemptQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "seq"], name="faceid_attempt_org_seq_unique"),
            models.CheckConstraint(
                condition=Q(mode__in=AttemptMode.values), name="faceid_attempt_mode_valid"
            ),
            models.CheckConstraint(
                condition=Q(decision__in=DecisionChoices.values) | Q(mode=AttemptMode.EVENT, decision=""),
                name="faceid_attempt_decision_valid",
            ),
            # An event names its action; a verify/identify row has none.
            models.CheckConstraint(
                condition=(Q(mode=AttemptMode.EVENT) & Q(action__in=AuditAction.values))
                | (~Q(mode=AttemptMode.EVENT) & Q(action="", details="")),
                name="faceid_attempt_event_action",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="faceid_attempt_org_time"),
            models.Index(
                fields=["organization", "claimed_person", "created_at"], name="faceid_attempt_org_claimed"
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.pk} {self.mode} {self.decision}"

    def save(self, *args: Any, _append: bool = False, **kwargs: Any) -> None:
        # faceid.audit.append_attempt passes _append=True after it has locked the chain and hashed
        # the row; anything else (admin, shell, a stray .save()) is refused.
        if not self._state.adding or self.pk is not None:
            raise AuditLogIsAppendOnly("the audit log is append-only: audit rows cannot be changed")
        if not _append:
            raise AuditLogIsAppendOnly("write audit rows with faceid.services.record_attempt")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("the audit log is append-only: delete() refused")


class ImagePurpose(models.TextChoices):
    ENROLLMENT = "enrollment", "Enrollment photo"
    PROBE = "probe", "Verification/identification probe"


def _stored_image_path(instance: StoredImage, filename: str) -> str:
    # Content-addressed under the organization: no client-supplied names reach the file system.
    return f"faceid/{instance.organization_id}/{instance.sha256[:2]}/{instance.sha256}{_ext(filename)}"


def _ext(filename: str) -> str:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return f".{suffix}" if suffix in {"jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"} else ".bin"


class StoredImage(models.Model):
    """A raw image kept because the organization's policy asks for it; purged at ``expires_at``."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    person = models.ForeignKey(Person, null=True, blank=True, on_delete=models.CASCADE, related_name="images")
    attempt = models.ForeignKey(
        VerificationAttempt, null=True, blank=True, on_delete=models.PROTECT, related_name="images"
    )
    purpose = models.CharField(max_length=16, choices=ImagePurpose.choices)
    file = models.FileField(upload_to=_stored_image_path, max_length=255)
    content_type = models.CharField(max_length=64, blank=True)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"image {self.pk} ({self.purpose})"


class LockoutState(models.TextChoices):
    PENDING = "pending", "Reserved: the call is in the pipeline"
    FAILED = "failed", "Compared and did not match"
    PASSED = "passed", "Compared and matched (resets the count)"
    VOID = "void", "Refused before any comparison"


class LockoutSubject(models.TextChoices):
    # Verify counts per claimed person (every caller shares the budget), identify per caller.
    PERSON = "person", "A claimed person (verify)"
    CALLER = "caller", "An API key or console user (identify)"


class LockoutEntry(models.Model):
    """The lockout ledger: one row per verify/identify call that may compare faces.

    The row is reserved (pending, with the number of frames the call may compare) under an advisory
    lock when the call is prepared, and settled when it is decided (faceid.lockout). Failures are
    counted in compared frames, not calls. No biometric data; not part of the audit log (which
    stays append-only): this table is working state, rows older than the lockout horizon are
    irrelevant and may be deleted.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    subject = models.CharField(max_length=8, choices=LockoutSubject.choices)
    # Set for a person subject; a composite foreign key (person_id, organization_id) pins it to
    # the organization (migration 0004).
    person = models.ForeignKey(
        Person, null=True, blank=True, on_delete=models.CASCADE, related_name="lockout_entries"
    )
    # "key:<id>" or "user:<id>": who called (always set; the identify budget is keyed on it).
    caller_key = models.CharField(max_length=64)
    mode = models.CharField(max_length=16, choices=AttemptMode.choices)
    state = models.CharField(max_length=8, choices=LockoutState.choices, default=LockoutState.PENDING)
    # Pending: frames reserved (the most this call may compare); settled: frames actually compared.
    comparisons = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # An unsettled reservation counts as a failure of all its reserved frames from this moment.
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=LockoutState.values), name="faceid_lockout_state_valid"
            ),
            models.CheckConstraint(
                condition=(Q(subject=LockoutSubject.PERSON) & Q(person__isnull=False))
                | Q(subject=LockoutSubject.CALLER),
                name="faceid_lockout_person_subject_has_person",
            ),
            models.CheckConstraint(
                condition=Q(state=LockoutState.PENDING) | Q(decided_at__isnull=False),
                name="faceid_lockout_settled_has_time",
            ),
        ]
        indexes = [
            models.Index(
                fields=["organization", "person", "created_at"],
                name="faceid_lock_org_person",
                condition=Q(subject="person"),
            ),
            models.Index(
                fields=["organization", "caller_key", "created_at"],
                name="faceid_lock_org_caller",
                condition=Q(subject="caller"),
            ),
        ]

    def __str__(self) -> str:
        return f"lockout entry {self.pk} {self.subject} {self.state} x{self.comparisons}"


# --- model switches (faceid.model_switch) --------------------------------------------------------


class ModelSwitchStatus(models.TextChoices):
    RUNNING = "running", "Running: new templates are being computed"
    COMPLETED = "completed", "Completed: every person re-embedded or listed for re-enrollment"


class ModelSwitch(models.Model):
    """An organization's policy changing model: what served before (model, version, thresholds),
    what serves now, and how far the re-embedding job has got. While it runs, a person's old
    templates serve with the old thresholds until their new ones exist (faceid.model_switch)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="model_switches")
    old_model_name = models.CharField(max_length=48)
    old_model_version = models.CharField(max_length=64, blank=True)
    old_threshold_unmasked = models.FloatField()
    old_threshold_masked = models.FloatField()
    new_model_name = models.CharField(max_length=48)
    new_model_version = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16, choices=ModelSwitchStatus.choices, default=ModelSwitchStatus.RUNNING
    )
    # The background job (faceid.jobs) whose record the API's job status reads: GET /api/v1/jobs/{id}/.
    job_id = models.CharField(max_length=32, blank=True)
    started_at = models.DateTimeField(default=timezone.now, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ModelSwitchStatus.values), name="faceid_switch_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(old_model_name=F("new_model_name")), name="faceid_switch_changes_model"
            ),
            # At most one running switch per organization: the policy cannot change model meanwhile.
            models.UniqueConstraint(
                fields=["organization"],
                condition=Q(status="running"),
                name="faceid_switch_one_running_per_org",
            ),
        ]

    def __str__(self) -> str:
        return f"switch {self.pk} {self.old_model_name} -> {self.new_model_name} ({self.status})"


class SwitchPersonState(models.TextChoices):
    PENDING = "pending", "Waiting for the new model's templates"
    REEMBEDDED = "reembedded", "New templates computed from kept enrollment photos"
    NEEDS_ENROLLMENT = "needs_enrollment", "Must be enrolled again (no usable kept photo)"


class ModelSwitchPerson(models.Model):
    """One person's progress in a switch: the job's done/total and the re-enrollment list."""

    switch = models.ForeignKey(ModelSwitch, on_delete=models.CASCADE, related_name="persons")
    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(
        max_length=24, choices=SwitchPersonState.choices, default=SwitchPersonState.PENDING
    )
    reason = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["switch_id", "person_id"]
        constraints = [
            models.UniqueConstraint(fields=["switch", "person"], name="faceid_switch_person_unique"),
            models.CheckConstraint(
                condition=Q(state__in=SwitchPersonState.values), name="faceid_switch_person_state_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"person {self.person_id} in switch {self.switch_id}: {self.state}"
