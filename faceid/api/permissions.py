"""Scope checks. API keys carry scopes; console users get the scopes of their role
(tenants.roles.scopes_for_role). A missing scope answers 403 with reason ``missing_scope``."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.permissions import BasePermission

from faceid.api.authentication import caller_for, scopes_of


class MissingScope(exceptions.PermissionDenied):
    default_code = "missing_scope"


class NoOrganization(exceptions.PermissionDenied):
    default_detail = "Your account is not a member of any active organization."
    default_code = "no_organization"


class HasScope(BasePermission):
    """The view declares ``required_scopes``: a scope, or a dict HTTP method -> scope."""

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False  # DRF answers 401 (NotAuthenticated) since an authenticator was tried
        if caller_for(request) is None:
            raise NoOrganization()
        required = getattr(view, "required_scopes", None)
        if isinstance(required, dict):
            required = required.get(request.method, required.get("*"))
        if required is None:
            return True
        if required not in scopes_of(request):
            raise MissingScope(f"This call needs the `{required}` scope.")
        return True
