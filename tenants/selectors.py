"""Reads for tenants. Anything owned by an organization is read through the organization."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet

from tenants.models import ApiKey, Membership, Organization, OrganizationPolicy


def organization_by_slug(slug: str, *, active_only: bool = True) -> Organization | None:
    qs = Organization.objects.filter(slug=slug)
    if active_only:
        qs = qs.filter(active=True)
    return qs.first()


def organizations_for_user(user: AbstractBaseUser | AnonymousUser | None) -> QuerySet[Organization]:
    """Active organizations the user is a member of (none for anonymous users).

    Superusers get no implicit membership: the console is per-organization; the Django admin is the
    platform operators' cross-tenant tool.
    """
    if user is None or not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user=user, active=True).order_by("name", "slug")


def membership_for(
    user: AbstractBaseUser | AnonymousUser | None, organization: Organization
) -> Membership | None:
    if user is None or not user.is_authenticated:
        return None
    return Membership.objects.filter(user=user, organization=organization).first()


def role_for(user: AbstractBaseUser | AnonymousUser | None, organization: Organization) -> str | None:
    membership = membership_for(user, organization)
    return membership.role if membership is not None else None


def members_of(organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization=organization)
        .select_related("user")
        .order_by("role", "user_id")
    )


def api_keys_for(organization: Organization, *, include_revoked: bool = True) -> QuerySet[ApiKey]:
    qs = ApiKey.objects.filter(organization=organization).select_related("created_by")
    if not include_revoked:
        qs = qs.filter(revoked_at__isnull=True)
    return qs.order_by("-created_at")


def api_key_by_id(organization: Organization, key_id: int | str) -> ApiKey | None:
    try:
        pk = int(key_id)
    except (TypeError, ValueError):
        return None
    return ApiKey.objects.filter(organization=organization, pk=pk).first()


def policy_for(organization: Organization) -> OrganizationPolicy:
    """The organization's policy. Every organization has one (created with it by the services)."""
    return OrganizationPolicy.objects.get(organization=organization)
