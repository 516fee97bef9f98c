"""Console access: session login, one organization at a time (the switcher), menus and access by
role (tenants.roles), and the page frame every console view renders in."""

from __future__ import annotations

import math
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from faceid import selectors
from faceid.api.authentication import SESSION_ORG_KEY, client_ip, session_membership
from faceid.api.throttling import clear_login_failures, login_locked_for, record_login_failure
from faceid.flows.common import Caller
from faceid.models import Person
from tenants import roles
from tenants.selectors import organizations_for_user

UserModel = get_user_model()


def menu_for(role: str | None) -> list[tuple[str, str]]:
    """(url name, label) of the pages a role may open, in menu order. Auditors: the audit trail only."""
    items = []
    if role in roles.ENROLL_ROLES:
        items += [("console:home", "Overview"), ("console:persons", "Persons")]
    if role in roles.VERIFY_ROLES:
        items.append(("console:verify", "Verify"))
    if role in roles.MANAGE_ROLES:
        items += [("console:policy", "Policy"), ("console:api_keys", "API keys")]
    if role in roles.AUDIT_ROLES:
        items.append(("console:audit", "Audit"))
    return items


class NotFoundPage(Exception):
    """A console view's object is not in the organization: console_view answers 404 (page or JSON)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def console_view(allowed_roles=None, *, json: bool = False):
    """Login required, an organization membership required, and (optionally) one of the roles."""

    def decorate(view):
        @wraps(view)
        @login_required
        def wrapper(request: HttpRequest, *args, **kwargs):
            membership = session_membership(request)
            if membership is None:
                if json:
                    return JsonResponse(
                        {"reason": "no_organization", "detail": "No organization."}, status=403
                    )
                return render(request, "console/no_organization.html", status=403)
            if allowed_roles is not None and membership.role not in allowed_roles:
                if json:
                    return JsonResponse(
                        {"reason": "forbidden", "detail": "Your role cannot do this."}, status=403
                    )
                return render(
                    request, "console/forbidden.html", _base_context(request, membership), status=403
                )
            request.membership = membership
            request.organization = membership.organization
            try:
                return view(request, *args, **kwargs)
            except NotFoundPage as missing:
                if json:
                    return JsonResponse(
                        {"reason": "not_found", "detail": f"No such {missing.what}."}, status=404
                    )
                return render_page(request, "console/not_found.html", {"what": missing.what}, status=404)

        return wrapper

    return decorate


def _base_context(request: HttpRequest, membership) -> dict:
    return {
        "membership": membership,
        "organization": membership.organization,
        "role": membership.role,
        "organizations": organizations_for_user(request.user),
        "menu": menu_for(membership.role),
        "can_manage": membership.role in roles.MANAGE_ROLES,
        "can_enroll": membership.role in roles.ENROLL_ROLES,
        "can_verify": membership.role in roles.VERIFY_ROLES,
    }


def render_page(
    request: HttpRequest, template: str, context: dict | None = None, status: int = 200
) -> HttpResponse:
    return render(
        request, template, {**_base_context(request, request.membership), **(context or {})}, status=status
    )


def console_caller(request: HttpRequest) -> Caller:
    return Caller(organization=request.organization, user=request.user, client_ip=client_ip(request))


def too_large(request: HttpRequest) -> bool:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0) > settings.MAX_UPLOAD_BYTES
    except ValueError:
        return False


def person_or_none(request: HttpRequest, person_id: int) -> Person | None:
    return selectors.persons_for(request.organization).filter(pk=person_id).first()


def person_or_404(request: HttpRequest, person_id: int) -> Person:
    person = person_or_none(request, person_id)
    if person is None:
        raise NotFoundPage("person")
    return person


class RateLimitedModelBackend(ModelBackend):
    """Django's password check, counting failures per username and per client IP
    (CONSOLE_LOGIN_FAILURE_LIMIT, CONSOLE_LOGIN_IP_FAILURE_LIMIT), for every password login: the
    console's and the Django admin's alike. Past a limit the password is not checked at all (the
    login fails), the same for a username that exists and one that does not."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        name = str(username if username is not None else kwargs.get(UserModel.USERNAME_FIELD) or "")
        ip = client_ip(request) if request is not None else None
        if login_locked_for(name, ip) is not None:
            return None
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            if name:
                record_login_failure(name, ip)
        else:
            clear_login_failures(name)
        return user


class LoginView(auth_views.LoginView):
    """The console's login page. Failed logins are limited by RateLimitedModelBackend; a login tried
    once a limit is reached answers 429 (with Retry-After) and a message. It still goes through
    authenticate(), which refuses it without checking the password, so it is audited as a failed
    login like any other."""

    template_name = "console/login.html"
    redirect_authenticated_user = True
    locked_for: float | None = None

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        self.locked_for = login_locked_for(self._username(), client_ip(request))
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form) -> HttpResponse:
        if self.locked_for is None:
            return super().form_invalid(form)
        minutes = max(1, math.ceil(self.locked_for / 60))
        messages.error(
            self.request,
            f"Too many failed logins. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
        )
        # Not the bound form: its "wrong password" error would be false (no password was checked).
        unbound = self.get_form_class()(self.request, initial={"username": self._username()})
        response = self.render_to_response(self.get_context_data(form=unbound), status=429)
        response["Retry-After"] = str(math.ceil(self.locked_for))
        return response

    def _username(self) -> str:
        return str(self.request.POST.get("username", ""))[:254]


@login_required
@require_POST
def switch_organization(request: HttpRequest) -> HttpResponse:
    wanted = request.POST.get("organization", "")
    organization = organizations_for_user(request.user).filter(slug=wanted).first()
    if organization is None:
        messages.error(request, "You are not a member of that organization.")
    else:
        request.session[SESSION_ORG_KEY] = organization.pk
        messages.success(request, f"Now working in {organization.name}.")
    # Pages belong to one organization (a person of one is a 404 in the other): start at its home.
    return redirect("console:home")
