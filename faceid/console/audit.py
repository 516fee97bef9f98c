"""Console audit trail: the filtered log, its CSV export, and the hash-chain status."""

from __future__ import annotations

from django.core.cache import cache
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone

from faceid import selectors
from faceid.audit import attempts_csv_response, verify_chain
from faceid.console.access import console_caller, console_view, render_page
from faceid.events import Action, record_event
from faceid.filters import ATTEMPT_MODES, AuditFilterForm
from faceid.models import VerificationAttempt
from tenants import roles

CHAIN_STATUS_SECONDS = 300


def _filtered(request: HttpRequest) -> tuple[AuditFilterForm, QuerySet[VerificationAttempt]]:
    """The filter form and its rows; a form with errors shows them and filters nothing (attempts,
    events only when asked for, as in the API)."""
    form = AuditFilterForm(request.GET or None)
    kwargs = form.selector_kwargs(request.organization) if form.is_valid() else {"mode": ATTEMPT_MODES}
    return form, selectors.attempts_for(request.organization, **kwargs)


def _chain_status(request: HttpRequest, *, refresh: bool = False) -> dict:
    """The hash-chain check of the organization, cached per chain head: a new row means a new check."""
    head = (
        selectors.attempts_for(request.organization)
        .order_by("-seq")
        .values_list("row_hash", flat=True)
        .first()
    )
    key = f"console:chain:{request.organization.pk}:{head or 'empty'}"
    status = None if refresh else cache.get(key)
    if status is None:
        report = verify_chain(request.organization)
        status = {
            "ok": report.ok,
            "checked": report.checked,
            "text": str(report),
            "checked_at": timezone.now().isoformat(),
        }
        cache.set(key, status, CHAIN_STATUS_SECONDS)
    return status


@console_view(roles.AUDIT_ROLES)
def audit(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and request.POST.get("check_chain"):
        _chain_status(request, refresh=True)
        return redirect(reverse("console:audit") + ("?" + request.GET.urlencode() if request.GET else ""))
    form, attempts = _filtered(request)
    page = Paginator(attempts, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render_page(
        request,
        "console/audit.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "chain": _chain_status(request),
        },
    )


@console_view(roles.AUDIT_ROLES)
def audit_csv(request: HttpRequest) -> StreamingHttpResponse:
    _, attempts = _filtered(request)
    event = record_event(
        request.organization,
        action=Action.CSV_EXPORT,
        actor=console_caller(request).actor,
        details={"via": "console", "query": request.GET.dict()},
    )
    # The export is the log as it was asked for: its own event row comes after it.
    return attempts_csv_response(attempts.exclude(pk=event.pk), f"audit-{request.organization.slug}.csv")
