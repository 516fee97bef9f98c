"""Tenants: organizations, their members, API keys and policy.

Models hold data and invariants only; writes live in tenants.services, reads in tenants.selectors.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from inference.embedders import (
    DEFAULT_EMBEDDER,
    UnknownEmbedderError,
    available_embedders,
    deployable_embedders,
    embedder_spec,
)
from inference.variants import DEFAULT_MASK_THRESHOLD, STRATEGY_CUTOUT, STRATEGY_SYNTHETIC, is_masked

# ---------------------------------------------------------------------------------------------
# Policy defaults for a new organization. The model, its similarity thresholds and the mask
# threshold come from the inference package (inference.embedders, inference.variants); the
# rest is here.
DEFAULT_TARGET_FAR = 0.001
DEFAULT_LOCKOUT_FAILURES = 5
DEFAULT_LOCKOUT_WINDOW_SECONDS = 300
DEFAULT_LOCKOUT_SECONDS = 900
DEFAULT_KEEP_IMAGES = False
DEFAULT_IMAGE_RETENTION_DAYS = 30
DEFAULT_REQUIRE_UNMASKED_ENROLLMENT = True
DEFAULT_THRESHOLD_UNMASKED = embedder_spec(DEFAULT_EMBEDDER).default_threshold_unmasked
DEFAULT_THRESHOLD_MASKED = embedder_spec(DEFAULT_EMBEDDER).default_threshold_masked
# A rejected verify answers without its similarity unless the organization opts in: the score of
# a reject tells whoever holds a probe how close it came, a signal to climb towards a match with.
DEFAULT_REVEAL_SCORES_ON_REJECT = False
# Identify compares a probe with every enrolled person: its thresholds are chosen for a
# false-positive identification rate per search (an unknown face called someone), at the gallery's
# current size (inference.openset), never below the 1:1 thresholds above.
DEFAULT_IDENTIFY_FPIR = 0.01
# ---------------------------------------------------------------------------------------------


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    OPERATOR = "operator", "Operator"
    AUDITOR = "auditor", "Auditor"


class Scope(models.TextChoices):
    ENROLL = "enroll", "Enroll"
    VERIFY = "verify", "Verify (1:1)"
    IDENTIFY = "identify", "Identify (1:N)"
    AUDIT_READ = "audit:read", "Read the audit log"


class MaskStrategy(models.TextChoices):
    # Which mask-aware template variant a masked probe is matched against (inference.variants).
    SYNTHETIC = STRATEGY_SYNTHETIC, "Synthetic mask rendered on the enrollment photo"
    CUTOUT = STRATEGY_CUTOUT, "Lower face blanked on enrollment photo and probe"


class Organization(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organization"], name="tenants_membership_unique_user_org"
            ),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="tenants_membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization} ({self.role})"


class ApiKey(models.Model):
    """An organization's API key. Only a SHA-256 of the full key is stored; see tenants.services.

    SHA-256 (not a slow password hash) is right here: the secret is 256 random bits, so there is
    nothing to brute-force, and every API request must check it quickly.
    """

    KEY_PREFIX = "fid"  # keys look like fid_<prefix>_<secret>

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    # The short public part of the key, shown in lists so people can tell keys apart.
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = ArrayField(models.CharField(max_length=16, choices=Scope.choices), default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(scopes__contained_by=Scope.values), name="tenants_apikey_scopes_valid"
            ),
            # Target of the composite foreign key that pins an audit row's key to the row's org.
            models.UniqueConstraint(fields=["id", "organization"], name="tenants_apikey_id_org_unique"),
        ]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.KEY_PREFIX}_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return self.is_active and scope in self.scopes


def _thresholds_above_floors() -> Q:
    condition = Q()
    for name in available_embedders():
        spec = embedder_spec(name)
        condition |= Q(
            embedding_model=name,
            threshold_unmasked__gte=spec.floor_threshold_unmasked,
            threshold_masked__gte=spec.floor_threshold_masked,
        )
    return condition


class OrganizationPolicy(models.Model):
    """How an organization wants matching, lockout and image retention done. One per organization."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="policy")
    # No `choices`: what may be chosen is what the registry can deploy on this machine, which a
    # migration must not freeze; clean() checks it, and a switch resets the thresholds (save()).
    embedding_model = models.CharField(
        max_length=48,
        default=DEFAULT_EMBEDDER,
        help_text="Face model. Only models whose weights are installed can be chosen; switching "
        "resets both thresholds to the new model's defaults and needs a new enrollment.",
    )
    threshold_unmasked = models.FloatField(
        default=DEFAULT_THRESHOLD_UNMASKED,
        validators=[MinValueValidator(-1.0), MaxValueValidator(1.0)],
        help_text="Cosine similarity at or above which an unmasked probe is accepted.",
    )
    threshold_masked = models.FloatField(
        default=DEFAULT_THRESHOLD_MASKED,
        validators=[MinValueValidator(-1.0), MaxValueValidator(1.0)],
        help_text="Cosine similarity at or above which a masked probe is accepted.",
    )
    target_far = models.FloatField(
        default=DEFAULT_TARGET_FAR,
        validators=[MinValueValidator(1e-7), MaxValueValidator(0.5)],
        help_text="False-accept rate the thresholds are calibrated for.",
    )
    mask_threshold = models.FloatField(
        default=DEFAULT_MASK_THRESHOLD,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Mask probability at or above which a face counts as masked.",
    )
    # Cutout beat the synthetic gallery on masked probes (dev pairs 97.5% vs 92.9%; LFW with
    # overlay masks TAR@FAR=1e-3 57.7% vs 51.8%, docs/benchmarks/lfw_masked_second.json).
    mask_strategy = models.CharField(max_length=16, choices=MaskStrategy.choices, default=MaskStrategy.CUTOUT)
    require_unmasked_enrollment = models.BooleanField(default=DEFAULT_REQUIRE_UNMASKED_ENROLLMENT)
    lockout_failures = models.PositiveIntegerField(
        default=DEFAULT_LOCKOUT_FAILURES,
        validators=[MinValueValidator(1)],
        help_text="Failed verifications of one person within the window that lock the person out.",
    )
    lockout_window_seconds = models.PositiveIntegerField(
        default=DEFAULT_LOCKOUT_WINDOW_SECONDS, validators=[MinValueValidator(1)]
    )
    lockout_seconds = models.PositiveIntegerField(
        default=DEFAULT_LOCKOUT_SECONDS, validators=[MinValueValidator(1)]
    )
    keep_images = models.BooleanField(
        default=DEFAULT_KEEP_IMAGES, help_text="Keep raw enrollment and probe images (off by default)."
    )
    image_retention_days = models.PositiveIntegerField(
        default=DEFAULT_IMAGE_RETENTION_DAYS,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Kept images are purged this many days after capture.",
    )
    reveal_scores_on_reject = models.BooleanField(
        default=DEFAULT_REVEAL_SCORES_ON_REJECT,
        help_text="Answer a rejected verify with its similarity (off by default: the score of a "
        "reject shows an attacker how close a probe came). The audit log keeps it either way.",
    )
    identify_fpir = models.FloatField(
        default=DEFAULT_IDENTIFY_FPIR,
        validators=[MinValueValidator(1e-6), MaxValueValidator(0.5)],
        verbose_name="identify FPIR",
        help_text="False-positive identification rate per search: the share of searches by a face "
        "that is not enrolled that may return someone. Identify's thresholds are chosen for it at the "
        "current number of enrolled persons, and rise as the gallery grows.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "organization policies"
        constraints = [
            # The floors of the registry, one branch per model (a floor changed or a model added
            # there needs a migration: tests/foundation/test_policy.py checks none is missing).
            models.CheckConstraint(
                condition=_thresholds_above_floors(), name="tenants_policy_thresholds_floor"
            ),
            models.CheckConstraint(
                condition=Q(threshold_unmasked__gte=-1, threshold_unmasked__lte=1)
                & Q(threshold_masked__gte=-1, threshold_masked__lte=1),
                name="tenants_policy_thresholds_in_range",
            ),
            models.CheckConstraint(
                condition=Q(target_far__gt=0, target_far__lt=1), name="tenants_policy_target_far_in_range"
            ),
            models.CheckConstraint(
                condition=Q(identify_fpir__gt=0, identify_fpir__lt=1),
                name="tenants_policy_identify_fpir_in_range",
            ),
            models.CheckConstraint(
                condition=Q(mask_threshold__gte=0, mask_threshold__lte=1),
                name="tenants_policy_mask_threshold_in_range",
            ),
            models.CheckConstraint(
                condition=Q(lockout_failures__gte=1, lockout_window_seconds__gte=1, lockout_seconds__gte=1),
                name="tenants_policy_lockout_positive",
            ),
            models.CheckConstraint(
                condition=Q(image_retention_days__gte=1), name="tenants_policy_retention_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"policy of {self.organization}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        update_fields = kwargs.get("update_fields")
        if update_fields is None or "embedding_model" in update_fields:
            reset = self._reset_thresholds_on_model_switch()
            if reset and update_fields is not None:
                kwargs["update_fields"] = {*update_fields, *reset}
        # Held here too, not only in clean(): a save that skips full_clean() gets a clear
        # ValidationError before the database's check constraint would refuse it.
        self._check_floors()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """A policy may keep the model it has; it may switch only to a deployable one. Its
        thresholds may not go below the model's floors."""
        if self.embedding_model != self._stored_matching()[0]:
            deployable = deployable_embedders()
            if self.embedding_model not in deployable:
                raise ValidationError(
                    {"embedding_model": _not_deployable_message(self.embedding_model, deployable)}
                )
            # The floors apply to the thresholds the switch leaves (save() would reset them too;
            # a threshold that equals the new default is not reset twice).
            self._reset_thresholds_on_model_switch()
        self._check_floors()

    def floor_for(self, *, masked: bool) -> float | None:
        """The lowest threshold this policy's model allows (None for a model the registry lacks)."""
        try:
            return embedder_spec(self.embedding_model).floor_for(masked=masked)
        except UnknownEmbedderError:
            return None

    def _check_floors(self) -> None:
        errors = {}
        for kind, masked in (("unmasked", False), ("masked", True)):
            value = getattr(self, f"threshold_{kind}")
            floor = self.floor_for(masked=masked)
            if floor is not None and value is not None and value < floor:
                errors[f"threshold_{kind}"] = (
                    f"{value:g} is below the floor of {self.embedding_model} ({floor:g}): a lower "
                    "threshold would accept too many impostors"
                )
        if errors:
            raise ValidationError(errors)

    def is_masked(self, mask_probability: float | None) -> bool:
        """The mask decision under this policy: the one rule the pipeline applies too."""
        return is_masked(mask_probability, self.mask_threshold)

    def threshold_for(self, *, masked: bool) -> float:
        return self.threshold_masked if masked else self.threshold_unmasked

    # --- model switches ------------------------------------------------------------------------
    # Similarity scales differ between models: a threshold carried over from the old model is
    # wrong for the new one. Enforced here, in save(), so the service, the console and the Django
    # admin all hold it; a threshold changed in the same save is the caller's and is kept.

    def _stored_matching(self) -> tuple[str, float, float]:
        """Model and thresholds as stored (read afresh: policies change rarely); a new policy's are
        the field defaults."""
        if not self._state.adding:
            stored = (
                OrganizationPolicy.objects.filter(pk=self.pk)
                .values_list("embedding_model", "threshold_unmasked", "threshold_masked")
                .first()
            )
            if stored is not None:
                return stored
        return DEFAULT_EMBEDDER, DEFAULT_THRESHOLD_UNMASKED, DEFAULT_THRESHOLD_MASKED

    def _reset_thresholds_on_model_switch(self) -> list[str]:
        model, unmasked, masked = self._stored_matching()
        if self.embedding_model == model:
            return []
        spec = embedder_spec(self.embedding_model)
        reset = []
        if self.threshold_unmasked == unmasked:
            self.threshold_unmasked = spec.default_threshold_unmasked
            reset.append("threshold_unmasked")
        if self.threshold_masked == masked:
            self.threshold_masked = spec.default_threshold_masked
            reset.append("threshold_masked")
        return reset


def _not_deployable_message(name: str, deployable: list[str]) -> str:
    choices = ", ".join(deployable) or "none (no model's weights are installed)"
    try:
        spec = embedder_spec(name)
    except UnknownEmbedderError:
        return f"unknown embedding model {name!r}; deployable models: {choices}"
    return (
        f"{name!r} cannot be chosen: its weights are not installed ({spec.weights.origin}); "
        f"deployable models: {choices}"
    )
