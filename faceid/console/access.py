"""Console access: session login, one organization at a time (the switcher), menus and access by
role (tenants.roles), and the page frame every console view renders in."""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from faceid import selectors
from faceid.api.authentication import SESSION_ORG_KEY, client_ip, session_membership
from faceid.flows.common import Caller
from faceid.models import Person
from tenants import roles
from tenants.selectors import organizations_for_user


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


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True


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
