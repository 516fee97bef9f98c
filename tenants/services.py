"""Writes for tenants: organizations, members, policy and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from faceid import model_switch
from faceid.events import Action, Actor, record_event
from inference.embedders import deployable_embedders, embedder_spec
from tenants.exceptions import ensure_same_organization
from tenants.models import ApiKey, Membership, Organization, OrganizationPolicy, Role, Scope

# last_used_at is informational; writing it on every request would turn each API call into a
# row update, so it is refreshed at most this often.
API_KEY_TOUCH_INTERVAL = timedelta(seconds=60)

_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_PREFIX_LENGTH = 8  # 36^8 ~ 2.8e12 prefixes; collisions are retried
_SECRET_BYTES = 32  # 256 bits: no need for a slow hash, nothing to brute-force
_MAX_KEY_LENGTH = 200
# Compared against when the prefix is unknown, so that path also does one digest comparison.
_DUMMY_HASH = hashlib.sha256(b"faceid-no-such-key").hexdigest()

# The policy fields an owner or admin may change, in the order the console shows them.
POLICY_FIELDS = (
    "embedding_model",
    "threshold_unmasked",
    "threshold_masked",
    "target_far",
    "mask_threshold",
    "mask_strategy",
    "require_unmasked_enrollment",
    "lockout_failures",
    "lockout_window_seconds",
    "lockout_seconds",
    "keep_images",
    "image_retention_days",
    "reveal_scores_on_reject",
    "identify_fpir",
)


# --- organizations and members -------------------------------------------------------------------


@transaction.atomic
def create_organization(*, slug: str, name: str, **policy: Any) -> Organization:
    """Create an organization together with its policy (defaults, overridden by ``policy``).

    An `embedding_model` given here is the organization's starting model, with that model's
    default thresholds: a new organization has no templates, so this is no model switch.
    """
    organization = Organization(slug=slug, name=name)
    organization.full_clean()  # also reports an existing slug as a ValidationError
    organization.save()
    ensure_policy(organization, embedding_model=policy.pop("embedding_model", None))
    if policy:
        update_policy(organization, **policy)
    return organization


def ensure_policy(organization: Organization, *, embedding_model: str | None = None) -> OrganizationPolicy:
    """The organization's policy, created with defaults when missing (e.g. org added in the admin).

    embedding_model: the model a new policy starts on (the registry default when None); it must
    be deployable here. An existing policy is returned as it is.
    """
    if embedding_model is None:
        policy, _ = OrganizationPolicy.objects.get_or_create(organization=organization)
        return policy
    existing = OrganizationPolicy.objects.filter(organization=organization).first()
    if existing is not None:
        return existing
    if embedding_model not in deployable_embedders():
        choices = ", ".join(deployable_embedders())
        message = f"{embedding_model} is not deployable here; choose: {choices}"
        raise ValidationError({"embedding_model": message})
    spec = embedder_spec(embedding_model)
    return OrganizationPolicy.objects.create(
        organization=organization,
        embedding_model=embedding_model,
        threshold_unmasked=spec.default_threshold_unmasked,
        threshold_masked=spec.default_threshold_masked,
    )


def update_organization(
    organization: Organization, *, name: str | None = None, active: bool | None = None
) -> Organization:
    if name is not None:
        organization.name = name
    if active is not None:
        organization.active = active
    organization.full_clean()
    organization.save(update_fields=["name", "active"])
    return organization


def get_or_create_user(*, email: str, password: str | None = None) -> tuple[AbstractBaseUser, bool]:
    """A Django user whose username is the e-mail address; (user, created).

    The password, when given, is checked by the configured validators and set only on a new user:
    provisioning scripts re-run safely without resetting an existing person's password.
    """
    User = get_user_model()
    email = User.objects.normalize_email(email.strip())
    if not email or "@" not in email:
        raise ValidationError({"email": "a valid e-mail address is required"})
    username_field = User.USERNAME_FIELD
    user = User.objects.filter(**{f"{username_field}__iexact": email}).first()
    if user is not None:
        return user, False
    user = User(**{username_field: email})
    if hasattr(user, "email"):
        user.email = email
    if password:
        validate_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean()
    user.save()
    return user, True


def set_membership(organization: Organization, *, user: AbstractBaseUser, role: str) -> Membership:
    """Add the user to the organization with ``role``, or change their role."""
    if role not in Role.values:
        raise ValidationError({"role": f"unknown role {role!r}"})
    membership, _ = Membership.objects.update_or_create(
        organization=organization, user=user, defaults={"role": role}
    )
    return membership


def remove_membership(organization: Organization, membership: Membership) -> None:
    ensure_same_organization(organization.id, membership)
    membership.delete()


# --- policy ----------------------------------------------------------------------------------------


@transaction.atomic
def update_policy(
    organization: Organization, *, actor: Actor | None = None, **fields: Any
) -> OrganizationPolicy:
    """Change policy fields, and write one policy_change event with each changed field's old and new
    value (thresholds reset by a model switch included) in the same transaction.

    The model may only switch to a deployable one; a switch resets each threshold left at the old
    model's value to the new model's default, and no threshold may go below the model's floor
    (OrganizationPolicy holds both rules for every path, the Django admin included). A switch is
    recorded and audited (faceid.model_switch) and starts the job that re-embeds everyone; another
    model change is refused while it runs."""
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise ValidationError(f"unknown policy fields: {', '.join(sorted(unknown))}")
    policy = ensure_policy(organization)
    # Locked: two admins saving at once each record the change from the value they replaced.
    policy = OrganizationPolicy.objects.select_for_update().get(pk=policy.pk)
    before = {name: getattr(policy, name) for name in POLICY_FIELDS}
    for name, value in fields.items():
        setattr(policy, name, value)
    switching = policy.embedding_model != before["embedding_model"]
    if switching:
        model_switch.ensure_no_running_switch(organization)  # one switch at a time
    policy.full_clean()
    policy.save()
    changes = {
        name: [before[name], getattr(policy, name)]
        for name in POLICY_FIELDS
        if getattr(policy, name) != before[name]
    }
    if changes:
        record_event(organization, action=Action.POLICY_CHANGE, actor=actor, details={"changes": changes})
    if switching:
        # No flag day: the old model keeps serving each person until their new templates exist.
        model_switch.start_switch(
            organization,
            old_model=before["embedding_model"],
            old_thresholds=model_switch.Thresholds(before["threshold_unmasked"], before["threshold_masked"]),
            new_model=policy.embedding_model,
            actor=actor,
        )
    return policy


# --- API keys --------------------------------------------------------------------------------------


def _hash_key(plaintext: str) -> str:
    # The whole key is hashed (not only the secret part) so the prefix is bound to the secret.
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def _normalise_scopes(scopes: Iterable[str]) -> list[str]:
    cleaned = sorted({s.strip() for s in scopes if s and s.strip()})
    if not cleaned:
        raise ValidationError({"scopes": "at least one scope is required"})
    unknown = [s for s in cleaned if s not in Scope.values]
    if unknown:
        raise ValidationError(
            {"scopes": f"unknown scopes: {', '.join(unknown)}; known: {', '.join(Scope.values)}"}
        )
    return cleaned


def create_api_key(
    organization: Organization,
    *,
    name: str,
    scopes: Iterable[str],
    created_by: AbstractBaseUser | None = None,
    actor: Actor | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext: the only time the plaintext exists. Audited
    (api_key_create: prefix, name, scopes) with ``actor``, or else ``created_by`` as the actor."""
    scope_list = _normalise_scopes(scopes)
    name = (name or "").strip() or "API key"
    for _ in range(5):
        prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(_PREFIX_LENGTH))
        plaintext = f"{ApiKey.KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        api_key = ApiKey(
            organization=organization,
            name=name,
            prefix=prefix,
            secret_hash=_hash_key(plaintext),
            scopes=scope_list,
            created_by=created_by,
        )
        api_key.full_clean(exclude=["prefix"])  # prefix uniqueness is left to the database
        try:
            with transaction.atomic():
                api_key.save()
                record_event(
                    organization,
                    action=Action.API_KEY_CREATE,
                    actor=actor or Actor(user=created_by),
                    details={"key_id": api_key.pk, "prefix": prefix, "name": name, "scopes": scope_list},
                )
        except IntegrityError:
            continue  # prefix collision: draw again
        return api_key, plaintext
    raise RuntimeError("could not draw a unique API key prefix")  # pragma: no cover


def authenticate_api_key(plaintext: str | None) -> ApiKey | None:
    """The active key matching ``plaintext`` (organization loaded), or None.

    The secret is compared with hmac.compare_digest; an unknown prefix still costs one comparison.
    """
    if not plaintext or not isinstance(plaintext, str) or len(plaintext) > _MAX_KEY_LENGTH:
        return None
    parts = plaintext.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != ApiKey.KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    candidate = _hash_key(plaintext.strip())
    api_key = ApiKey.objects.select_related("organization").filter(prefix=parts[1]).first()
    stored = api_key.secret_hash if api_key is not None else _DUMMY_HASH
    if not hmac.compare_digest(stored, candidate) or api_key is None:
        return None
    if api_key.revoked_at is not None or not api_key.organization.active:
        return None
    _touch_last_used(api_key)
    return api_key


def _touch_last_used(api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < API_KEY_TOUCH_INTERVAL:
        return
    # Conditional update: concurrent requests for one key write the row at most once per interval.
    ApiKey.objects.filter(pk=api_key.pk).exclude(last_used_at__gte=now - API_KEY_TOUCH_INTERVAL).update(
        last_used_at=now
    )
    api_key.last_used_at = now


@transaction.atomic
def revoke_api_key(organization: Organization, api_key: ApiKey, *, actor: Actor | None = None) -> ApiKey:
    """Revoke the key (idempotent; the revocation is audited once, api_key_revoke). Keys are never
    deleted: audit rows refer to them."""
    ensure_same_organization(organization.id, api_key)
    # Locked and re-read: two concurrent revocations write one event.
    api_key.revoked_at = ApiKey.objects.select_for_update().get(pk=api_key.pk).revoked_at
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        record_event(
            organization,
            action=Action.API_KEY_REVOKE,
            actor=actor,
            details={"key_id": api_key.pk, "prefix": api_key.prefix, "name": api_key.name},
        )
    return api_key
