"""One JSON shape for every API error: ``{"reason": <machine code>, "detail": <text>, ...}``.

* Django's RequestDataTooBig (a body over DATA_UPLOAD_MAX_MEMORY_SIZE) becomes 413, not 400/500.
* Django ValidationError (raised by the services) becomes 400 with the field errors.
* Http404 (including another organization's object) becomes 404.
* Anything unexpected is logged with its traceback and answered as JSON 500 with reason
  ``internal_error``; the tests make sure no refusal path ends there.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from faceid.flows.common import FlowError

logger = logging.getLogger(__name__)


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is larger than the limit."
    default_code = "too_large"


class PipelineUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The face pipeline is unavailable."
    default_code = "pipeline_unavailable"


_REASONS: list[tuple[type[exceptions.APIException], str]] = [
    (exceptions.NotAuthenticated, "not_authenticated"),
    (exceptions.AuthenticationFailed, "invalid_api_key"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "rate_limited"),
    (exceptions.ParseError, "malformed_request"),
    (exceptions.ValidationError, "invalid"),
]


def _flatten(detail) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_flatten(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return "; ".join(_flatten(item) for item in detail)
    return str(detail)


def _reason(exc: exceptions.APIException) -> str:
    code = getattr(exc.detail, "code", None)
    if isinstance(exc, exceptions.Throttled) and code and code != "throttled":
        return code  # e.g. organization_busy: a limit other than the caller's own rate
    if isinstance(exc, exceptions.PermissionDenied):
        return code if code and code != "permission_denied" else "forbidden"
    if isinstance(exc, exceptions.AuthenticationFailed) and code and code != "authentication_failed":
        return code
    for klass, reason in _REASONS:
        if isinstance(exc, klass):
            return reason
    return code or exc.default_code


def api_exception_handler(exc, context):
    if isinstance(exc, FlowError):
        return Response(exc.body, status=exc.status, headers=exc.headers)
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError(f"Malformed request: {exc}")

    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
        return Response(
            {"reason": "internal_error", "detail": "Internal error; it has been logged."},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    body = {"reason": _reason(exc), "detail": _flatten(exc.detail)}
    if isinstance(exc, exceptions.ValidationError):
        body["errors"] = exc.detail
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        body["retry_after"] = int(exc.wait) + 1
    if isinstance(exc, RequestTooLarge):
        from django.conf import settings

        body["limit_bytes"] = settings.MAX_UPLOAD_BYTES
    extra = getattr(exc, "extra", None)
    if isinstance(extra, dict):
        body.update(extra)
    response.data = body
    return response
