"""API v1 views: thin. Parsing and answering here; the flows live in faceid.verification, reads in
faceid.selectors and writes in faceid.services, always with the caller's organization."""

from __future__ import annotations

import base64
import binascii
import time

from django.conf import settings
from django.db.models import Count
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import is_naive, make_aware
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from faceid import selectors, services
from faceid.api import serializers as s
from faceid.api.authentication import DEFAULT_AUTHENTICATION, caller_for
from faceid.api.errors import RequestTooLarge, api_exception_handler
from faceid.api.jobs import get_job, submit_job
from faceid.api.permissions import HasScope
from faceid.api.throttling import CallerRateThrottle, PipelineRateThrottle
from faceid.audit import attempt_csv_rows
from faceid.models import AttemptMode, DecisionChoices, Person
from faceid.verification import (
    FlowError,
    ImageInput,
    PipelineCall,
    prepare_enroll,
    prepare_identify,
    prepare_verify,
    record_refusal,
    run_sync,
)
from tenants.models import Scope
from tenants.selectors import api_keys_for

ERRORS = {
    code: OpenApiResponse(s.ErrorSerializer, description=text)
    for code, text in {
        400: "Bad request: `bad_image` (not an image, truncated, too many pixels), `no_image`, `invalid`.",
        401: "`not_authenticated` or `invalid_api_key` (unknown or revoked key).",
        403: "`missing_scope`: the key (or the user's role) lacks the scope.",
        404: "`not_found` / `unknown_person`: no such person here (erased or inactive included).",
        409: "`no_templates` (verify: nothing enrolled) or `duplicate_external_id`.",
        413: "`too_large`: the request body exceeds MAX_UPLOAD_BYTES (10 MB by default).",
        422: "The pipeline refused the image: `no_face`, `several_faces`, `face_too_small`, `too_blurred`, "
        "`pose_too_far`, `eyes_not_visible`, `masked`.",
        423: "`locked_out`: too many failed verifications of this person within the policy's window.",
        429: "`rate_limited`: too many calls for this key; see `retry_after`.",
        503: "`pipeline_unavailable`: the pipeline worker failed.",
        504: "`pipeline_timeout`: no answer from the pipeline within PIPELINE_WAIT_SECONDS.",
    }.items()
}


def errors(*codes: int) -> dict:
    return {code: ERRORS[code] for code in codes}


ASYNC_PARAM = OpenApiParameter(
    "async",
    OpenApiTypes.BOOL,
    OpenApiParameter.QUERY,
    description="true: answer 202 at once with a job URL to poll (GET /api/v1/jobs/{id}/).",
)


class BaseAPIView(APIView):
    authentication_classes = DEFAULT_AUTHENTICATION
    permission_classes = [HasScope]
    throttle_classes = [CallerRateThrottle]
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer]
    required_scopes: str | dict | None = None

    def get_exception_handler(self):
        return api_exception_handler

    def initial(self, request, *args, **kwargs):
        self.started = time.time()
        super().initial(request, *args, **kwargs)
        # Before the body is read: a declared size over the limit is refused without reading it.
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.MAX_UPLOAD_BYTES:
            raise RequestTooLarge(
                f"The request body ({length} bytes) exceeds the limit of {settings.MAX_UPLOAD_BYTES} bytes."
            )

    def check_permissions(self, request):
        super().check_permissions(request)
        self.authorized = True  # from here on, refusals of verify/identify are audited

    @property
    def caller(self):
        return caller_for(self.request)


def _truthy(value) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _b64_image(value: str, index: int) -> ImageInput:
    text = value.strip()
    content_type = ""
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        content_type = header[5:].split(";")[0]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FlowError(
            400,
            "bad_image",
            f"Image {index} is not valid base64.",
            image_reason="not_base64",
            image_index=index,
        ) from None
    return ImageInput(data=data, name=f"image{index}", content_type=content_type)


def request_fields(request):
    """The body as a mapping (multipart form or JSON object); anything else is a 400."""
    data = request.data
    if hasattr(data, "get"):
        return data
    raise FlowError(400, "malformed_request", "The body must be a JSON object or a multipart form.")


def images_from_request(request) -> list[ImageInput]:
    """Multipart `image` files (repeatable), or JSON `image` / `images` in base64."""
    images: list[ImageInput] = []
    files = request.FILES.getlist("image") if hasattr(request.FILES, "getlist") else []
    for upload in files:
        if upload.size is not None and upload.size > settings.MAX_UPLOAD_BYTES:
            raise RequestTooLarge()
        images.append(
            ImageInput(
                data=upload.read(), name=upload.name or "image", content_type=upload.content_type or ""
            )
        )
    if images:
        return images
    data = request_fields(request)
    values: list = []
    if hasattr(data, "getlist"):  # multipart/form without files: base64 text fields
        values = data.getlist("image") + data.getlist("images")
    elif isinstance(data, dict):
        if isinstance(data.get("image"), str):
            values.append(data["image"])
        if isinstance(data.get("images"), list):
            values.extend(data["images"])
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise FlowError(
                400, "bad_image", f"Image {index} must be a base64 string.", image_reason="not_base64"
            )
        images.append(_b64_image(value, index))
    return images


class PipelineView(BaseAPIView):
    """A view that runs the face pipeline: pipeline rate limit, bounded wait, ?async=true."""

    throttle_classes = [CallerRateThrottle, PipelineRateThrottle]
    audit_mode: str | None = None  # verify/identify: every call leaves exactly one audit row

    def run_call(self, call: PipelineCall, *, kind: str) -> Response:
        if _truthy(self.request.query_params.get("async", "")):
            job = submit_job(self.caller, call, kind=kind)
            url = self.request.build_absolute_uri(reverse("api:job-detail", args=[job["id"]]))
            return Response(
                {"id": job["id"], "status": job["status"], "url": url},
                status=status.HTTP_202_ACCEPTED,
                headers={"Location": url},
            )
        code, body = run_sync(call)
        return Response(body, status=code)

    def handle_exception(self, exc):
        attempt_id = None
        if (
            self.audit_mode
            and getattr(self, "authorized", False)
            and not (isinstance(exc, FlowError) and "attempt_id" in exc.extra)
        ):
            attempt_id = self._audit_refusal(exc)
        response = super().handle_exception(exc)
        if attempt_id is not None and isinstance(response.data, dict):
            response.data["attempt_id"] = attempt_id
        return response

    def _audit_refusal(self, exc) -> int | None:
        caller = self.caller
        if caller is None:
            return None
        if isinstance(exc, exceptions.Throttled):
            decision, reason = DecisionChoices.RATE_LIMITED, "rate limited"
        elif isinstance(
            exc, RequestTooLarge | FlowError | exceptions.ParseError | exceptions.UnsupportedMediaType
        ):
            decision, reason = DecisionChoices.BAD_IMAGE, f"request refused: {exc}"
        else:
            decision, reason = DecisionChoices.ERROR, f"request failed: {type(exc).__name__}"
        try:
            return record_refusal(
                caller,
                mode=self.audit_mode,
                decision=decision,
                reason=reason,
                started=getattr(self, "started", time.time()),
                claimed_external_id=getattr(self, "person_ref", "") or "",
            )
        except Exception:  # noqa: BLE001 - never let the audit of a refusal hide the refusal
            import logging

            logging.getLogger(__name__).exception("could not audit a refused %s", self.audit_mode)
            return None


# --- persons --------------------------------------------------------------------------------------


class PersonPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def _person_or_404(organization, person_id) -> Person:
    person = selectors.persons_for(organization).filter(pk=person_id).first()
    if person is None:
        raise exceptions.NotFound("No such person.")
    return person


class PersonListView(BaseAPIView):
    required_scopes = Scope.ENROLL

    @extend_schema(
        tags=["persons"],
        summary="List persons",
        operation_id="persons_list",
        parameters=[
            OpenApiParameter("search", str, description="Part of the external id or of the name."),
            OpenApiParameter("active", bool, description="Only active (true) or inactive (false) persons."),
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int),
        ],
        responses={200: s.PersonPageSerializer, **errors(401, 403)},
    )
    def get(self, request):
        active = request.query_params.get("active")
        qs = selectors.persons_for(
            self.caller.organization,
            search=request.query_params.get("search") or None,
            active=None if active in (None, "") else _truthy(active),
        ).annotate(template_count=Count("templates"))
        paginator = PersonPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(s.PersonSerializer(page, many=True).data)

    @extend_schema(
        tags=["persons"],
        summary="Create a person",
        operation_id="persons_create",
        request=s.PersonCreateSerializer,
        responses={201: s.PersonSerializer, **errors(400, 401, 403, 409)},
    )
    def post(self, request):
        data = s.PersonCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        organization = self.caller.organization
        external_id = data.validated_data["external_id"].strip()
        if selectors.persons_for(organization).filter(external_id=external_id).exists():
            raise FlowError(
                409, "duplicate_external_id", f"A person with external id {external_id!r} exists."
            )
        person = services.create_person(
            organization, external_id=external_id, display_name=data.validated_data.get("display_name", "")
        )
        return Response(s.PersonSerializer(person).data, status=status.HTTP_201_CREATED)


class PersonDetailView(BaseAPIView):
    required_scopes = Scope.ENROLL

    @extend_schema(
        tags=["persons"],
        summary="Show a person",
        operation_id="persons_retrieve",
        responses={200: s.PersonSerializer, **errors(401, 403, 404)},
    )
    def get(self, request, id: int):
        return Response(s.PersonSerializer(_person_or_404(self.caller.organization, id)).data)

    @extend_schema(
        tags=["persons"],
        summary="Update or (de)activate a person",
        operation_id="persons_update",
        request=s.PersonUpdateSerializer,
        responses={200: s.PersonSerializer, **errors(400, 401, 403, 404, 409)},
    )
    def patch(self, request, id: int):
        organization = self.caller.organization
        person = _person_or_404(organization, id)
        data = s.PersonUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        new_id = fields.get("external_id")
        if (
            new_id is not None
            and new_id.strip() != person.external_id
            and selectors.persons_for(organization).filter(external_id=new_id.strip()).exists()
        ):
            raise FlowError(409, "duplicate_external_id", f"A person with external id {new_id!r} exists.")
        person = services.update_person(organization, person, **fields)
        return Response(s.PersonSerializer(person).data)

    @extend_schema(
        tags=["persons"],
        summary="Erase a person",
        operation_id="persons_erase",
        description="Removes the person's templates and kept images and blanks the name; audit rows "
        "(which hold "
        "no biometric data) stay. The person then answers 404.",
        responses={204: None, **errors(401, 403, 404)},
    )
    def delete(self, request, id: int):
        organization = self.caller.organization
        services.erase_person(organization, _person_or_404(organization, id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class PersonFacesView(PipelineView):
    required_scopes = Scope.ENROLL

    def get_throttles(self):
        if self.request.method != "POST":
            return [CallerRateThrottle()]
        return super().get_throttles()

    @extend_schema(
        tags=["enrollment"],
        summary="List a person's templates",
        operation_id="faces_list",
        responses={200: s.TemplateSerializer(many=True), **errors(401, 403, 404)},
    )
    def get(self, request, id: int):
        organization = self.caller.organization
        person = _person_or_404(organization, id)
        return Response(
            s.TemplateSerializer(selectors.templates_for_person(organization, person), many=True).data
        )

    @extend_schema(
        tags=["enrollment"],
        summary="Enroll photos of a person",
        operation_id="faces_enroll",
        description="Each photo goes through the pipeline; the answer says per photo what was stored "
        "(template "
        "ids per variant: full face and mask-aware) or why it was refused. 201 when at least one "
        "photo was stored, 422 when none was.",
        request={
            "multipart/form-data": s.ImagesMultipartSerializer,
            "application/json": s.ImagesJSONSerializer,
        },
        parameters=[ASYNC_PARAM],
        responses={
            201: s.EnrollResponseSerializer,
            202: s.JobAcceptedSerializer,
            422: OpenApiResponse(s.EnrollResponseSerializer, description=ERRORS[422].description),
            **errors(400, 401, 403, 404, 409, 413, 429, 503, 504),
        },
    )
    def post(self, request, id: int):
        organization = self.caller.organization
        person = _person_or_404(organization, id)
        call = prepare_enroll(
            self.caller, person=person, images=images_from_request(request), started=self.started
        )
        return self.run_call(call, kind="enroll")


# --- verify / identify ----------------------------------------------------------------------------


class VerifyView(PipelineView):
    required_scopes = Scope.VERIFY
    audit_mode = AttemptMode.VERIFY

    @extend_schema(
        tags=["matching"],
        summary="Verify (1:1): is this the claimed person?",
        operation_id="verify",
        description="A photo, or a short burst of camera frames (repeat `image`), and the claimed "
        "person. The "
        "probe's mask decision picks the masked or unmasked threshold of the organization's policy "
        "and the templates it is compared with. Every call writes exactly one audit row, refusals "
        "included (`attempt_id`).",
        request={
            "multipart/form-data": s.VerifyMultipartSerializer,
            "application/json": s.VerifyJSONSerializer,
        },
        parameters=[ASYNC_PARAM],
        responses={
            200: s.VerifyResponseSerializer,
            202: s.JobAcceptedSerializer,
            **errors(400, 401, 403, 404, 409, 413, 422, 423, 429, 503, 504),
        },
    )
    def post(self, request):
        data = request_fields(request)
        self.person_ref = str(data.get("person") or data.get("person_id") or data.get("external_id") or "")
        images = images_from_request(request)
        call = prepare_verify(self.caller, person_ref=self.person_ref, images=images, started=self.started)
        return self.run_call(call, kind="verify")


class IdentifyView(PipelineView):
    required_scopes = Scope.IDENTIFY
    audit_mode = AttemptMode.IDENTIFY

    @extend_schema(
        tags=["matching"],
        summary="Identify (1:N): who is this?",
        operation_id="identify",
        description="The best candidates at or above the policy's threshold (masked or unmasked by "
        "the probe), "
        "best first, at most `top_k`. An unknown face answers 200 with an empty `matches`.",
        request={
            "multipart/form-data": s.IdentifyMultipartSerializer,
            "application/json": s.IdentifyJSONSerializer,
        },
        parameters=[ASYNC_PARAM],
        responses={
            200: s.IdentifyResponseSerializer,
            202: s.JobAcceptedSerializer,
            **errors(400, 401, 403, 413, 422, 429, 503, 504),
        },
    )
    def post(self, request):
        raw = request_fields(request).get("top_k")
        top = s.TopKSerializer(data={"top_k": raw} if raw not in (None, "") else {})
        if not top.is_valid():
            raise FlowError(
                400, "invalid", "top_k: " + "; ".join(str(e) for e in top.errors.get("top_k", []))
            )
        images = images_from_request(request)
        call = prepare_identify(
            self.caller, images=images, top_k=top.validated_data["top_k"], started=self.started
        )
        return self.run_call(call, kind="identify")


# --- jobs -----------------------------------------------------------------------------------------


class JobView(BaseAPIView):
    required_scopes = None  # the submitter's organization only; the job id is unguessable

    @extend_schema(
        tags=["jobs"],
        summary="Poll an asynchronous call",
        operation_id="jobs_retrieve",
        responses={200: s.JobSerializer, **errors(401, 404)},
    )
    def get(self, request, id: str):
        job = get_job(self.caller, id)
        if job is None:
            raise exceptions.NotFound("No such job (or it expired).")
        return Response(job)


# --- audit log ------------------------------------------------------------------------------------


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        # Only error bodies come through here; the CSV export itself streams.
        if isinstance(data, dict):
            return ("reason,detail\r\n" + f'{data.get("reason", "")},"{data.get("detail", "")}"\r\n').encode()
        return b""


class _Echo:
    def write(self, value):
        return value


def _parse_when(value: str | None, name: str):
    if not value:
        return None
    when = parse_datetime(value)
    if when is None:
        day = parse_date(value)
        if day is None:
            raise exceptions.ValidationError({name: "use an ISO 8601 date or date-time"})
        from datetime import datetime
        from datetime import time as dtime

        when = datetime.combine(day, dtime.min)
    return make_aware(when) if is_naive(when) else when


def attempt_filters(organization, params) -> dict:
    """Query parameters -> selectors.attempts_for keyword arguments (400 on bad values)."""
    kwargs: dict = {
        "since": _parse_when(params.get("since"), "since"),
        "until": _parse_when(params.get("until"), "until"),
    }
    if params.get("decision"):
        decisions = [d.strip() for d in params["decision"].split(",") if d.strip()]
        unknown = [d for d in decisions if d not in DecisionChoices.values]
        if unknown:
            raise exceptions.ValidationError({"decision": f"unknown: {', '.join(unknown)}"})
        kwargs["decision"] = decisions
    if params.get("mode"):
        if params["mode"] not in AttemptMode.values:
            raise exceptions.ValidationError({"mode": "verify or identify"})
        kwargs["mode"] = params["mode"]
    if params.get("masked") not in (None, ""):
        kwargs["masked"] = _truthy(params["masked"])
    if params.get("person"):
        person = selectors.person_by_id_or_external_id(organization, params["person"], include_erased=True)
        if person is not None:
            kwargs["person"] = person
        else:
            kwargs["external_id"] = params["person"]  # a claim of nobody known is still searchable
    if params.get("key"):
        key_ref = params["key"].strip()
        keys = api_keys_for(organization)
        key = keys.filter(prefix=key_ref).first() or (
            keys.filter(pk=int(key_ref)).first() if key_ref.isdigit() else None
        )
        kwargs["api_key"] = key if key is not None else -1  # unknown key: nothing matches
    return kwargs


class AttemptPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 1000


ATTEMPT_FILTERS = [
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="From this time (inclusive), ISO 8601."),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="Before this time, ISO 8601."),
    OpenApiParameter("person", str, description="Claimed or matched person: external id or id."),
    OpenApiParameter(
        "decision",
        str,
        description="Decision(s), comma-separated: accept, reject, no_match, "
        "no_face, bad_image, locked_out, ...",
    ),
    OpenApiParameter("mode", str, enum=["verify", "identify"]),
    OpenApiParameter("masked", bool),
    OpenApiParameter("key", str, description="API key: its public prefix, or id."),
    OpenApiParameter("format", str, enum=["json", "csv"], description="csv: the whole filtered log as CSV."),
]


class AttemptListView(BaseAPIView):
    required_scopes = Scope.AUDIT_READ
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]

    @extend_schema(
        tags=["audit"],
        summary="The audit log",
        operation_id="attempts_list",
        description="Newest first, paginated. `?format=csv` (or /api/v1/attempts.csv) streams the "
        "whole filtered "
        "log as CSV.",
        parameters=ATTEMPT_FILTERS + [OpenApiParameter("page", int), OpenApiParameter("page_size", int)],
        responses={200: s.AttemptPageSerializer, **errors(400, 401, 403)},
    )
    def get(self, request, format=None):
        organization = self.caller.organization
        qs = selectors.attempts_for(organization, **attempt_filters(organization, request.query_params))
        if getattr(request.accepted_renderer, "format", None) == "csv":
            import csv

            writer = csv.writer(_Echo())
            response = StreamingHttpResponse(
                (writer.writerow(row) for row in attempt_csv_rows(qs.iterator(chunk_size=2000))),
                content_type="text/csv; charset=utf-8",
            )
            response["Content-Disposition"] = f'attachment; filename="audit-{organization.slug}.csv"'
            return response
        paginator = AttemptPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(s.AttemptSerializer(page, many=True).data)


class AttemptCSVView(AttemptListView):
    """/api/v1/attempts.csv: the same filters as /api/v1/attempts/, always CSV."""

    @extend_schema(
        tags=["audit"],
        summary="The audit log as CSV",
        operation_id="attempts_csv",
        parameters=ATTEMPT_FILTERS[:-1],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="One row per attempt."),
            **errors(400, 401, 403),
        },
    )
    def get(self, request, format=None):
        return super().get(request, format=format)
