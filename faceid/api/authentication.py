"""Who is calling: an organization's API key (``Authorization: Bearer <key>``) or a console user.

An unknown or revoked key gets 401 (with ``WWW-Authenticate: Bearer``); a request without any
credentials too. Console users authenticate with their session (CSRF enforced by DRF's
SessionAuthentication) and act for the organization selected in the console's switcher.
"""

from __future__ import annotations

from django.http import HttpRequest
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header

from faceid.flows.common import Caller
from tenants import roles
from tenants.models import ApiKey, Membership
from tenants.selectors import membership_for, organizations_for_user
from tenants.services import authenticate_api_key

SESSION_ORG_KEY = "faceid_organization_id"


class ApiKeyPrincipal:
    """request.user for API-key requests: authenticated, but not a Django user."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key

    def __str__(self) -> str:
        return f"api key {self.api_key.prefix}"

    def get_username(self) -> str:
        return str(self)


class InvalidApiKey(exceptions.AuthenticationFailed):
    default_detail = "Unknown or revoked API key."
    default_code = "invalid_api_key"


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "bearer"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.encode():
            return None
        if len(header) != 2:
            raise InvalidApiKey("Malformed Authorization header: use `Bearer <key>`.")
        try:
            token = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise InvalidApiKey() from None
        api_key = authenticate_api_key(token)
        if api_key is None:
            raise InvalidApiKey()
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="faceid"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "faceid.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An organization's API key: `Authorization: Bearer fid_<prefix>_<secret>`.",
        }


# --- console users --------------------------------------------------------------------------------


def session_membership(request: HttpRequest) -> Membership | None:
    """The membership of the logged-in user in the organization chosen in the console (or their
    first organization). None for anonymous users and users without any organization."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    cached = getattr(request, "_faceid_membership", False)
    if cached is not False:
        return cached
    organizations = organizations_for_user(user)
    wanted = request.session.get(SESSION_ORG_KEY) if hasattr(request, "session") else None
    organization = organizations.filter(pk=wanted).first() if wanted else None
    if organization is None:
        organization = organizations.first()
    membership = membership_for(user, organization) if organization is not None else None
    request._faceid_membership = membership
    return membership


def client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def caller_for(request) -> Caller | None:
    """The Caller (organization + key or user) of an authenticated DRF or Django request."""
    cached = getattr(request, "_faceid_caller", False)
    if cached is not False:
        return cached
    caller = None
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey):
        caller = Caller(organization=auth.organization, api_key=auth, client_ip=client_ip(request))
    else:
        membership = session_membership(getattr(request, "_request", request))
        if membership is not None:
            caller = Caller(
                organization=membership.organization, user=membership.user, client_ip=client_ip(request)
            )
    request._faceid_caller = caller
    return caller


def scopes_of(request) -> frozenset[str]:
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey):
        return frozenset(auth.scopes) if auth.is_active else frozenset()
    membership = session_membership(getattr(request, "_request", request))
    return roles.scopes_for_role(membership.role if membership else None)


DEFAULT_AUTHENTICATION = [ApiKeyAuthentication, SessionAuthentication]
