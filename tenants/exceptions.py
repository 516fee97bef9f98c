"""Errors shared by the tenants and faceid service layers."""

from __future__ import annotations

from django.http import Http404


class ObjectNotInOrganization(Http404):
    """A service was handed an object that belongs to another organization.

    It subclasses Http404 on purpose: to a caller, another tenant's object must be
    indistinguishable from one that does not exist, and both Django views and DRF already turn
    Http404 into a 404 answer.
    """


def ensure_same_organization(organization_id: int, *objects: object) -> None:
    """Raise ObjectNotInOrganization unless every non-None object belongs to the organization."""
    for obj in objects:
        if obj is None:
            continue
        if getattr(obj, "organization_id", None) != organization_id:
            raise ObjectNotInOrganization(f"{type(obj).__name__} not found")
