"""Console pages that run the face pipeline: enroll photos or webcam frames, and the verify test page.
Data goes through the same flows as the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from faceid import selectors
from faceid.api.results import RESULT_SERIALIZERS
from faceid.console.access import console_caller, console_view, person_or_404, render_page, too_large
from faceid.console.forms import (
    EnrollUploadForm,
    VerifyUploadForm,
)
from faceid.contracts import ContractError, decode_image_text
from faceid.flows import FlowError, ImageInput, PreparedCall, prepare_enroll, prepare_verify, run_sync
from tenants import roles
from tenants.selectors import policy_for


def _uploaded_images(request: HttpRequest, field: str = "image") -> list[ImageInput]:
    return [
        ImageInput(data=f.read(), name=f.name or "image", content_type=f.content_type or "")
        for f in request.FILES.getlist(field)
    ]


def _answer(prepare: Callable[[], PreparedCall]) -> tuple[int, dict[str, Any]]:
    """(status, body) of a flow, the body as the API renders it (the webcam script reads both)."""
    try:
        prepared = prepare()
        result = run_sync(prepared)
    except FlowError as exc:
        return exc.status, exc.body
    return result.status, RESULT_SERIALIZERS[prepared.call.kind](result).data


@console_view(roles.ENROLL_ROLES)
def enroll(request: HttpRequest, person_id: int) -> HttpResponse:
    person = person_or_404(request, person_id)
    result = None
    status = 200
    form = EnrollUploadForm()
    if request.method == "POST":
        if too_large(request):
            messages.error(
                request, f"The upload is larger than {settings.MAX_UPLOAD_BYTES // (1024 * 1024)} MB."
            )
            return redirect("console:enroll", person_id=person.pk)
        form = EnrollUploadForm(request.POST, request.FILES)
        if form.is_valid():
            caller = console_caller(request)
            status, result = _answer(
                lambda: prepare_enroll(
                    caller,
                    person=person,
                    images=_uploaded_images(request),
                    override=form.cleaned_data["override"],
                )
            )
            if status == 201:
                messages.success(request, f"{result['stored']} photo(s) enrolled.")
            else:
                messages.error(request, result.get("detail") or "Nothing enrolled.")
    return render_page(
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
    if too_large(request):
        return JsonResponse(
            {
                "reason": "too_large",
                "detail": "The frames are larger than the upload limit.",
                "limit_bytes": settings.MAX_UPLOAD_BYTES,
            },
            status=413,
        )
    images = _uploaded_images(request)
    for index, value in enumerate(request.POST.getlist("frame")):  # data: URLs from a canvas
        try:
            data, content_type = decode_image_text(value, index=index)
        except ContractError:
            return JsonResponse({"reason": "bad_image", "detail": "A frame is not valid base64."}, status=400)
        images.append(ImageInput(data=data, name=f"frame{index}.jpg", content_type=content_type))
    status, body = _answer(lambda: prepare(images))
    return JsonResponse(body, status=status)


@console_view(roles.ENROLL_ROLES, json=True)
@require_POST
def enroll_frames(request: HttpRequest, person_id: int) -> JsonResponse:
    """Webcam frames (multipart `image` blobs) -> per-frame pipeline feedback; good frames are stored."""
    person = person_or_404(request, person_id)
    return _json_flow(
        request, lambda images: prepare_enroll(console_caller(request), person=person, images=images)
    )


@console_view(roles.VERIFY_ROLES)
def verify(request: HttpRequest) -> HttpResponse:
    form = VerifyUploadForm(
        request.POST or None, request.FILES or None, initial={"person": request.GET.get("person", "")}
    )
    result, status = None, None
    if request.method == "POST":
        if too_large(request):
            messages.error(request, "The upload is larger than the limit.")
            return redirect("console:verify")
        if form.is_valid():
            caller, claim = console_caller(request), form.cleaned_data["person"]
            status, result = _answer(
                lambda: prepare_verify(caller, person_ref=claim, images=_uploaded_images(request))
            )
    policy = policy_for(request.organization)
    return render_page(
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
        request, lambda images: prepare_verify(console_caller(request), person_ref=person_ref, images=images)
    )
