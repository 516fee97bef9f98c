"""Console views: server-rendered, session login, one organization at a time (the switcher), menus
and access by role (tenants.roles). Data goes through the same selectors/services/flows as the API."""

from __future__ import annotations

import base64
import csv
import time
from datetime import timedelta
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from faceid import calibration as calib
from faceid import selectors, services
from faceid.api.authentication import SESSION_ORG_KEY, client_ip, session_membership
from faceid.audit import attempt_csv_rows, verify_chain
from faceid.console.forms import (
    ApiKeyCreateForm,
    AuditFilterForm,
    ConfirmEraseForm,
    EnrollUploadForm,
    PersonCreateForm,
    PolicyForm,
    VerifyUploadForm,
)
from faceid.models import DecisionChoices, Person
from faceid.verification import Caller, FlowError, ImageInput, prepare_enroll, prepare_verify, run_sync
from tenants import roles
from tenants import services as tenant_services
from tenants.selectors import api_key_by_id, api_keys_for, organizations_for_user, policy_for

CHAIN_STATUS_SECONDS = 300


# --- access ---------------------------------------------------------------------------------------


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
            return view(request, *args, **kwargs)

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


def _render(
    request: HttpRequest, template: str, context: dict | None = None, status: int = 200
) -> HttpResponse:
    return render(
        request, template, {**_base_context(request, request.membership), **(context or {})}, status=status
    )


def _caller(request: HttpRequest) -> Caller:
    return Caller(organization=request.organization, user=request.user, client_ip=client_ip(request))


def _too_large(request: HttpRequest) -> bool:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0) > settings.MAX_UPLOAD_BYTES
    except ValueError:
        return False


def _uploaded_images(request: HttpRequest, field: str = "image") -> list[ImageInput]:
    return [
        ImageInput(data=f.read(), name=f.name or "image", content_type=f.content_type or "")
        for f in request.FILES.getlist(field)
    ]


def _person_or_none(request: HttpRequest, person_id: int) -> Person | None:
    return selectors.persons_for(request.organization).filter(pk=person_id).first()


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True


# --- organization switcher ------------------------------------------------------------------------


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


# --- overview -------------------------------------------------------------------------------------


@console_view()
def home(request: HttpRequest) -> HttpResponse:
    if request.membership.role not in roles.ENROLL_ROLES:
        return redirect("console:audit")  # auditors see only the audit trail
    organization = request.organization
    since = timezone.now() - timedelta(days=1)
    last_day = selectors.attempts_for(organization, since=since)
    by_decision = dict(last_day.order_by().values_list("decision").annotate(n=Count("id")))
    return _render(
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


# --- persons --------------------------------------------------------------------------------------


@console_view(roles.ENROLL_ROLES)
def persons(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    form = PersonCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        external_id = form.cleaned_data["external_id"].strip()
        if selectors.persons_for(organization).filter(external_id=external_id).exists():
            form.add_error("external_id", "A person with this external id exists.")
        else:
            try:
                person = services.create_person(
                    organization, external_id=external_id, display_name=form.cleaned_data["display_name"]
                )
            except ValidationError as exc:
                form.add_error(None, "; ".join(exc.messages))
            else:
                messages.success(request, f"Person {person.external_id} created: now enroll their face.")
                return redirect("console:enroll", person_id=person.pk)
    search = request.GET.get("q", "").strip()
    qs = selectors.persons_for(organization, search=search or None).annotate(
        template_count=Count("templates")
    )
    page = Paginator(qs, 25).get_page(request.GET.get("page"))
    return _render(request, "console/persons.html", {"page": page, "q": search, "form": form})


@console_view(roles.ENROLL_ROLES)
def person_detail(request: HttpRequest, person_id: int) -> HttpResponse:
    organization = request.organization
    person = _person_or_none(request, person_id)
    if person is None:
        return _render(request, "console/not_found.html", {"what": "person"}, status=404)
    if request.method == "POST" and request.POST.get("action") in {"activate", "deactivate"}:
        services.update_person(organization, person, active=request.POST["action"] == "activate")
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
    return _render(
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
    person = _person_or_none(request, person_id)
    if person is None:
        return _render(request, "console/not_found.html", {"what": "person"}, status=404)
    form = ConfirmEraseForm(request.POST or None, expected=person.external_id)
    if request.method == "POST" and form.is_valid():
        services.erase_person(organization, person)
        messages.success(request, f"Person {person.external_id} erased: templates and kept images deleted.")
        return redirect("console:persons")
    return _render(
        request,
        "console/person_erase.html",
        {
            "person": person,
            "form": form,
            "template_count": selectors.templates_for_person(organization, person).count(),
        },
    )


# --- enrollment -----------------------------------------------------------------------------------


@console_view(roles.ENROLL_ROLES)
def enroll(request: HttpRequest, person_id: int) -> HttpResponse:
    person = _person_or_none(request, person_id)
    if person is None:
        return _render(request, "console/not_found.html", {"what": "person"}, status=404)
    result = None
    status = 200
    form = EnrollUploadForm()
    if request.method == "POST":
        if _too_large(request):
            messages.error(
                request, f"The upload is larger than {settings.MAX_UPLOAD_BYTES // (1024 * 1024)} MB."
            )
            return redirect("console:enroll", person_id=person.pk)
        form = EnrollUploadForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                call = prepare_enroll(_caller(request), person=person, images=_uploaded_images(request))
                status, result = run_sync(call)
            except FlowError as exc:
                status, result = exc.status, exc.body
            if status == 201:
                messages.success(request, f"{result['stored']} photo(s) enrolled.")
            else:
                messages.error(request, result.get("detail") or "Nothing enrolled.")
    return _render(
        request,
        "console/enroll.html",
        {
            "person": person,
            "form": form,
            "result": result,
            "policy": policy_for(request.organization),
            "frames_url": reverse("console:enroll_frames", args=[person.pk]),
        },
        status=200 if status < 500 else status,
    )


def _json_flow(request: HttpRequest, prepare) -> JsonResponse:
    if _too_large(request):
        return JsonResponse(
            {
                "reason": "too_large",
                "detail": "The frames are larger than the upload limit.",
                "limit_bytes": settings.MAX_UPLOAD_BYTES,
            },
            status=413,
        )
    try:
        images = _uploaded_images(request)
        for index, value in enumerate(request.POST.getlist("frame")):  # data: URLs from a canvas
            header, _, payload = value.partition(",")
            images.append(
                ImageInput(
                    data=base64.b64decode(payload),
                    name=f"frame{index}.jpg",
                    content_type=header[5:].split(";")[0] if header.startswith("data:") else "",
                )
            )
        status, body = run_sync(prepare(images))
    except FlowError as exc:
        status, body = exc.status, exc.body
    except (ValueError, TypeError):
        status, body = 400, {"reason": "bad_image", "detail": "A frame is not valid base64."}
    return JsonResponse(body, status=status)


@console_view(roles.ENROLL_ROLES, json=True)
@require_POST
def enroll_frames(request: HttpRequest, person_id: int) -> JsonResponse:
    """Webcam frames (multipart `image` blobs) -> per-frame pipeline feedback; good frames are stored."""
    person = _person_or_none(request, person_id)
    if person is None:
        return JsonResponse({"reason": "not_found", "detail": "No such person."}, status=404)
    return _json_flow(request, lambda images: prepare_enroll(_caller(request), person=person, images=images))


# --- verify test page -----------------------------------------------------------------------------


@console_view(roles.VERIFY_ROLES)
def verify(request: HttpRequest) -> HttpResponse:
    form = VerifyUploadForm(
        request.POST or None, request.FILES or None, initial={"person": request.GET.get("person", "")}
    )
    result, status = None, None
    if request.method == "POST":
        if _too_large(request):
            messages.error(request, "The upload is larger than the limit.")
            return redirect("console:verify")
        if form.is_valid():
            try:
                call = prepare_verify(
                    _caller(request), person_ref=form.cleaned_data["person"], images=_uploaded_images(request)
                )
                status, result = run_sync(call)
            except FlowError as exc:
                status, result = exc.status, exc.body
    policy = policy_for(request.organization)
    return _render(
        request,
        "console/verify.html",
        {
            "form": form,
            "result": result,
            "result_status": status,
            "policy": policy,
            "frames_url": reverse("console:verify_frames"),
            "persons": selectors.persons_for(request.organization, active=True)[:500],
        },
    )


@console_view(roles.VERIFY_ROLES, json=True)
@require_POST
def verify_frames(request: HttpRequest) -> JsonResponse:
    person_ref = request.POST.get("person", "")
    return _json_flow(
        request, lambda images: prepare_verify(_caller(request), person_ref=person_ref, images=images)
    )


# --- policy and calibration -----------------------------------------------------------------------


@console_view(roles.MANAGE_ROLES)
def policy(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    current = policy_for(organization)
    form = PolicyForm(request.POST or None, instance=current)
    if request.method == "POST" and form.is_valid():
        changed = {name: form.cleaned_data[name] for name in form.changed_data}
        try:
            tenant_services.update_policy(organization=organization, **changed)
        except ValidationError as exc:
            form.add_error(None, "; ".join(exc.messages))
        else:
            messages.success(request, "Policy saved." if changed else "Nothing changed.")
            return redirect("console:policy")
    return _render(request, "console/policy.html", {"form": form, "policy": current})


@console_view(roles.MANAGE_ROLES)
def calibration(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    current = policy_for(organization)
    result = calib.calibrate(organization, current)
    if request.method == "POST" and request.POST.get("apply"):
        changes = {}
        for dist in result.distributions:
            if (
                dist.proposal
                and dist.proposal.threshold is not None
                and request.POST.get(f"apply_{dist.name}")
            ):
                changes[f"threshold_{dist.name}"] = dist.proposal.threshold
        if changes:
            tenant_services.update_policy(organization=organization, **changes)
            messages.success(request, "Applied: " + ", ".join(f"{k} = {v:.4f}" for k, v in changes.items()))
        else:
            messages.info(request, "Nothing applied.")
        return redirect("console:calibration")
    started = time.perf_counter()
    hist = base64.b64encode(calib.histogram_png(result)).decode()
    roc = base64.b64encode(calib.roc_png(result)).decode()
    return _render(
        request,
        "console/calibration.html",
        {
            "calibration": result,
            "policy": current,
            "histogram_png": hist,
            "roc_png": roc,
            "plot_ms": round((time.perf_counter() - started) * 1000),
        },
    )


# --- API keys -------------------------------------------------------------------------------------


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
            )
        except ValidationError as exc:
            form.add_error(None, "; ".join(exc.messages))
        else:
            # Rendered once, in this answer only: it is stored nowhere in clear.
            new_key = {"key": api_key, "plaintext": plaintext}
            form = ApiKeyCreateForm()
    response = _render(
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
        return _render(request, "console/not_found.html", {"what": "API key"}, status=404)
    tenant_services.revoke_api_key(organization=request.organization, api_key=api_key)
    messages.success(request, f"Key {api_key.name} ({api_key.prefix}) revoked.")
    return redirect("console:api_keys")


# --- audit ----------------------------------------------------------------------------------------


def _audit_queryset(request: HttpRequest, form: AuditFilterForm):
    organization = request.organization
    kwargs: dict = {}
    if form.is_valid():
        data = form.cleaned_data
        kwargs["since"] = data.get("since")
        kwargs["until"] = data.get("until")
        if data.get("decision"):
            kwargs["decision"] = data["decision"]
        if data.get("mode"):
            kwargs["mode"] = data["mode"]
        if data.get("masked"):
            kwargs["masked"] = data["masked"] == "true"
        if data.get("person"):
            person = selectors.person_by_id_or_external_id(organization, data["person"], include_erased=True)
            if person is not None:
                kwargs["person"] = person
            else:
                kwargs["external_id"] = data["person"]
        if data.get("key"):
            key = api_keys_for(organization).filter(prefix=data["key"].strip()).first()
            kwargs["api_key"] = key if key is not None else -1
    return selectors.attempts_for(organization, **kwargs)


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
    form = AuditFilterForm(request.GET or None)
    qs = _audit_queryset(request, form)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return _render(
        request,
        "console/audit.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "chain": _chain_status(request),
            "decisions": DecisionChoices,
        },
    )


class _Echo:
    def write(self, value):
        return value


@console_view(roles.AUDIT_ROLES)
def audit_csv(request: HttpRequest) -> StreamingHttpResponse:
    qs = _audit_queryset(request, AuditFilterForm(request.GET or None))
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in attempt_csv_rows(qs.iterator(chunk_size=2000))),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="audit-{request.organization.slug}.csv"'
    return response
