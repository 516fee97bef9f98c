"""What every API view shares: authentication, scopes, rate limits, the size limit, the documented
error responses, and pages of results (one shape for every list)."""

from __future__ import annotations

import time

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from faceid.api.authentication import DEFAULT_AUTHENTICATION, caller_for
from faceid.api.errors import RequestTooLarge, api_exception_handler
from faceid.api.permissions import HasScope
from faceid.api.throttling import CallerRateThrottle


class ErrorSerializer(serializers.Serializer):
    reason = serializers.CharField(help_text="Machine-readable reason code, e.g. `no_face`, `missing_scope`.")
    detail = serializers.CharField(help_text="Human-readable explanation.")
    attempt_id = serializers.IntegerField(required=False, help_text="Audit row written for this refusal.")
    retry_after = serializers.IntegerField(required=False, help_text="Seconds to wait (429, 423).")
    errors = serializers.DictField(required=False, help_text="Field errors (reason `invalid`).")


ERRORS = {
    code: OpenApiResponse(ErrorSerializer, description=text)
    for code, text in {
        400: "Bad request: `bad_image` (not an image, a format other than JPEG/PNG/WebP, truncated, too many "
        "pixels: `image_reason`), `no_image`, `invalid`, `malformed_request`.",
        401: "`not_authenticated` or `invalid_api_key` (unknown or revoked key).",
        403: "`missing_scope`: the key (or the user's role) lacks the scope.",
        404: "`not_found` / `unknown_person`: no such person here (erased or inactive included), "
        "or no such `page` of a list.",
        409: "`no_templates` (verify: nothing enrolled) or `duplicate_external_id`.",
        413: "`too_large`: the request body exceeds MAX_UPLOAD_BYTES (10 MB by default).",
        422: "The pipeline refused the image: `no_face`, `several_faces`, `face_too_small`, `too_blurred`, "
        "`pose_too_far`, `eyes_not_visible`, `masked`.",
        423: "`locked_out`: too many failed verifications of this person within the policy's window.",
        429: "`rate_limited`: too many calls for this key or organization; `organization_busy`: too many of "
        "the organization's pipeline calls in flight; see `retry_after`.",
        503: "`pipeline_unavailable`: the pipeline worker failed.",
        504: "`pipeline_timeout`: no answer from the pipeline within PIPELINE_WAIT_SECONDS.",
    }.items()
}


def errors(*codes: int) -> dict:
    return {code: ERRORS[code] for code in codes}


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


def truthy(value) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


# --- pages ----------------------------------------------------------------------------------------


class DefaultPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


PAGE_PARAMETERS = [OpenApiParameter("page", int), OpenApiParameter("page_size", int)]


def paginated(serializer_class: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """The documented shape of a page: count, next, previous, results."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer_class(many=True),
        },
    )


def paginated_response(
    queryset: QuerySet,
    *,
    serializer_class: type[serializers.Serializer],
    request: Request,
    view: APIView,
    pagination_class: type[PageNumberPagination] = DefaultPagination,
) -> Response:
    """One page of the queryset, rendered by serializer_class (the shape `paginated` documents)."""
    paginator = pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)
