"""Console API keys page: create (the plaintext shown once) and revoke keys."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from faceid.console.access import NotFoundPage, console_caller, console_view, render_page
from faceid.console.forms import ApiKeyCreateForm
from tenants import roles
from tenants import services as tenant_services
from tenants.selectors import api_key_by_id, api_keys_for


@console_view(roles.MANAGE_ROLES)
def api_keys(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    form = ApiKeyCreateForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        try:
            api_key, plaintext = tenant_services.create_api_key(
                organization=organization,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                created_by=request.user,
                actor=console_caller(request).actor,
            )
        except ValidationError as exc:
            form.add_error(None, "; ".join(exc.messages))
        else:
            # Rendered once, in this answer only: it is stored nowhere in clear.
            new_key = {"key": api_key, "plaintext": plaintext}
            form = ApiKeyCreateForm()
    response = render_page(
        request,
        "console/api_keys.html",
        {
            "form": form,
            "new_key": new_key,
            "keys": api_keys_for(organization),
        },
    )
    if new_key:
        response["Cache-Control"] = "no-store"
    return response


@console_view(roles.MANAGE_ROLES)
@require_POST
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    api_key = api_key_by_id(request.organization, key_id)
    if api_key is None:
        raise NotFoundPage("API key")
    tenant_services.revoke_api_key(
        organization=request.organization, api_key=api_key, actor=console_caller(request).actor
    )
    messages.success(request, f"Key {api_key.name} ({api_key.prefix}) revoked.")
    return redirect("console:api_keys")
