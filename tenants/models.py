"""Tenants: organizations, their members, API keys and policy.

Models hold data and invariants only; writes live in tenants.services, reads in tenants.selectors.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from faceid.embedding_models import (
    DEFAULT_EMBEDDING_MODEL,
    EMBEDDING_MODELS,
    embedding_model_choices,
)

# ---------------------------------------------------------------------------------------------
# Policy defaults for a new organization. The similarity thresholds are per embedding model and
# live in faceid.embedding_models; everything else is here.
DEFAULT_TARGET_FAR = 0.001
DEFAULT_MASK_THRESHOLD = 0.5
DEFAULT_LOCKOUT_FAILURES = 5
DEFAULT_LOCKOUT_WINDOW_SECONDS = 300
DEFAULT_LOCKOUT_SECONDS = 900
DEFAULT_KEEP_IMAGES = False
DEFAULT_IMAGE_RETENTION_DAYS = 30
DEFAULT_REQUIRE_UNMASKED_ENROLLMENT = True
_DEFAULT_SPEC = EMBEDDING_MODELS[DEFAULT_EMBEDDING_MODEL]
DEFAULT_THRESHOLD_UNMASKED = _DEFAULT_SPEC.default_threshold_unmasked
DEFAULT_THRESHOLD_MASKED = _DEFAULT_SPEC.default_threshold_masked
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
    # Which mask-aware template variant a masked probe is matched against (see the pipeline issue).
    SYNTHETIC = "synthetic", "Synthetic mask rendered on the enrollment photo"
    CUTOUT = "cutout", "Lower face blanked on enrollment photo and probe"


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


class OrganizationPolicy(models.Model):
    """How an organization wants matching, lockout and image retention done. One per organization."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="policy")
    embedding_model = models.CharField(
        max_length=48, choices=embedding_model_choices(), default=DEFAULT_EMBEDDING_MODEL
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
        help_text="Mask probability above which a probe counts as masked.",
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
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "organization policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(threshold_unmasked__gte=-1, threshold_unmasked__lte=1)
                & Q(threshold_masked__gte=-1, threshold_masked__lte=1),
                name="tenants_policy_thresholds_in_range",
            ),
            models.CheckConstraint(
                condition=Q(target_far__gt=0, target_far__lt=1), name="tenants_policy_target_far_in_range"
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

    def clean(self) -> None:
        if self.embedding_model not in EMBEDDING_MODELS:
            raise ValidationError({"embedding_model": f"unknown embedding model {self.embedding_model!r}"})

    def is_masked(self, mask_probability: float | None) -> bool:
        """The probe's mask decision under this policy ("above" the threshold counts as masked)."""
        return mask_probability is not None and mask_probability > self.mask_threshold

    def threshold_for(self, *, masked: bool) -> float:
        return self.threshold_masked if masked else self.threshold_unmasked
