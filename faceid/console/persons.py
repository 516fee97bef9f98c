"""Console overview and persons pages: list, create, show, (de)activate and erase persons."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from faceid import selectors, services
from faceid.console.access import console_caller, console_view, person_or_404, render_page
from faceid.console.forms import ConfirmEraseForm, PersonCreateForm
from tenants import roles
from tenants.selectors import policy_for


@console_view()
def home(request: HttpRequest) -> HttpResponse:
    if request.membership.role not in roles.ENROLL_ROLES:
        return redirect("console:audit")  # auditors see only the audit trail
    organization = request.organization
    since = timezone.now() - timedelta(days=1)
    last_day = selectors.attempts_for(organization, since=since)
    by_decision = dict(last_day.order_by().values_list("decision").annotate(n=Count("id")))
    return render_page(
        request,
        "console/home.html",
        {
            "persons_count": selectors.persons_for(organization).count(),
            "active_count": selectors.persons_for(organization, active=True).count(),
            "attempts_day": sum(by_decision.values()),
            "by_decision": sorted(by_decision.items(), key=lambda kv: -kv[1]),
            "recent": selectors.attempts_for(organization)[:10],
            "policy": policy_for(organization),
        },
    )


@console_view(roles.ENROLL_ROLES)
def persons(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    form = PersonCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            person = services.create_person(organization, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)  # field errors (a duplicate external id) land on their field
        else:
            messages.success(request, f"Person {person.external_id} created: now enroll their face.")
            return redirect("console:enroll", person_id=person.pk)
    search = request.GET.get("q", "").strip()
    qs = selectors.persons_for(organization, search=search or None).annotate(
        template_count=Count("templates")
    )
    page = Paginator(qs, 25).get_page(request.GET.get("page"))
    return render_page(request, "console/persons.html", {"page": page, "q": search, "form": form})


@console_view(roles.ENROLL_ROLES)
def person_detail(request: HttpRequest, person_id: int) -> HttpResponse:
    organization = request.organization
    person = person_or_404(request, person_id)
    if request.method == "POST" and request.POST.get("action") in {"activate", "deactivate"}:
        services.update_person(
            organization,
            person,
            active=request.POST["action"] == "activate",
            actor=console_caller(request).actor,
        )
        messages.success(request, f"Person {person.external_id} {request.POST['action']}d.")
        return redirect("console:person", person_id=person.pk)
    templates = selectors.templates_for_person(organization, person)
    photos: dict[str, dict] = {}
    for t in templates:
        photo = photos.setdefault(
            t.source_sha256,
            {
                "sha": t.source_sha256,
                "created_at": t.created_at,
                "quality": t.quality,
                "mask_probability": t.mask_probability,
                "variants": [],
            },
        )
        photo["variants"].append(t.variant)
    lockout = selectors.lockout_status(organization, person)
    return render_page(
        request,
        "console/person_detail.html",
        {
            "person": person,
            "templates": templates,
            "photos": list(photos.values()),
            "attempts": selectors.attempts_for(organization, person=person)[:20],
            "lockout": lockout,
        },
    )


@console_view(roles.ENROLL_ROLES)
def person_erase(request: HttpRequest, person_id: int) -> HttpResponse:
    organization = request.organization
    person = person_or_404(request, person_id)
    form = ConfirmEraseForm(request.POST or None, expected=person.external_id)
    if request.method == "POST" and form.is_valid():
        services.erase_person(organization, person, actor=console_caller(request).actor)
        messages.success(request, f"Person {person.external_id} erased: templates and kept images deleted.")
        return redirect("console:persons")
    return render_page(
        request,
        "console/person_erase.html",
        {
            "person": person,
            "form": form,
            "template_count": selectors.templates_for_person(organization, person).count(),
        },
    )
