"""Logins and failed logins (console and Django admin alike) in the audit log, from Django's signals.

A login is recorded in the chain of every organization the user is a member of (the console picks
the organization after the login). A failed login for a known username is recorded, without the
password, in that user's organizations; a failed login for an unknown username, or a user who
belongs to no organization (staff only), has no chain to go to: it is logged (logger
``faceid.audit``, warning) and not chained.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.http import HttpRequest

from faceid.events import Action, Actor, record_event
from tenants.models import Organization

logger = logging.getLogger("faceid.audit")
_MAX_USERNAME = 150


def _client_ip(request: HttpRequest | None) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


def _organizations(user: Any) -> list[Organization]:
    return list(Organization.objects.filter(memberships__user=user).order_by("pk"))


def on_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    actor = Actor(user=user, client_ip=_client_ip(request))
    organizations = _organizations(user)
    for organization in organizations:
        record_event(organization, action=Action.LOGIN, actor=actor)
    if not organizations:
        logger.info("login of %s (no organization: not chained)", user.get_username())


def on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    User = get_user_model()
    # Django's authenticate() has already replaced the password with asterisks; only the name is kept.
    username = str(credentials.get(User.USERNAME_FIELD) or credentials.get("username") or "")[:_MAX_USERNAME]
    client_ip = _client_ip(request)
    user = User.objects.filter(**{f"{User.USERNAME_FIELD}__iexact": username}).first() if username else None
    organizations = _organizations(user) if user is not None else []
    for organization in organizations:
        record_event(
            organization,
            action=Action.LOGIN_FAILED,
            actor=Actor(user=user, client_ip=client_ip),
            details={"username": username},
        )
    if not organizations:
        logger.warning("failed login for %r from %s (no organization: not chained)", username, client_ip)


def connect() -> None:
    """Called once by faceid.apps.FaceidConfig.ready()."""
    user_logged_in.connect(on_login, dispatch_uid="faceid.login_audit.on_login")
    user_login_failed.connect(on_login_failed, dispatch_uid="faceid.login_audit.on_login_failed")
