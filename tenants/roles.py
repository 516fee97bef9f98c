"""What each membership role may do, in one place.

Console users act through their role; API keys act through their scopes. ``scopes_for_role`` maps
a role onto the API scopes so that one permission check can serve both kinds of caller.
"""

from __future__ import annotations

from tenants.models import Role, Scope

ENROLL_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.OPERATOR})
VERIFY_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.OPERATOR})
MANAGE_ROLES = frozenset({Role.OWNER, Role.ADMIN})  # API keys, policy, members
AUDIT_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.AUDITOR})

_ROLE_SCOPES: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(Scope.values),
    Role.ADMIN: frozenset(Scope.values),
    Role.OPERATOR: frozenset({Scope.ENROLL, Scope.VERIFY, Scope.IDENTIFY, Scope.AUDIT_READ}),
    Role.AUDITOR: frozenset({Scope.AUDIT_READ}),
}


def can_enroll(role: str | None) -> bool:
    return role in ENROLL_ROLES


def can_verify(role: str | None) -> bool:
    return role in VERIFY_ROLES


def can_manage(role: str | None) -> bool:
    """Manage API keys, the policy and members."""
    return role in MANAGE_ROLES


def can_read_audit(role: str | None) -> bool:
    return role in AUDIT_ROLES


def scopes_for_role(role: str | None) -> frozenset[str]:
    return _ROLE_SCOPES.get(role or "", frozenset())
