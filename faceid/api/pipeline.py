"""What the views that run the face pipeline share: images in the request body, the pipeline rate
limit, ``?async=true``, and one audit row for every verify/identify call that fails before its flow."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from faceid.api.base import BaseAPIView, truthy
from faceid.api.errors import RequestTooLarge
from faceid.api.throttling import (
    CallerRateThrottle,
    OrganizationPipelineThrottle,
    PipelineRateThrottle,
    acquire_slot,
    release_slot,
)
from faceid.contracts import MAX_IMAGES, ContractError, decode_image_text
from faceid.flows import FlowError, ImageInput, PreparedCall, run_sync
from faceid.flows.common import record
from faceid.jobs import _deadline_seconds as job_deadline_seconds
from faceid.jobs import submit_job
from faceid.models import DecisionChoices

logger = logging.getLogger(__name__)

ASYNC_PARAM = OpenApiParameter(
    "async",
    OpenApiTypes.BOOL,
    OpenApiParameter.QUERY,
    description="true: answer 202 at once with a job URL to poll (GET /api/v1/jobs/{id}/).",
)


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "description": "Image files (multipart; repeat the field), or base64 text (JSON: one string or a "
        f"list; a data: URL prefix is accepted). At most {MAX_IMAGES}.",
    }
)
class ImagesField(serializers.Field):
    """Image files of a multipart body, or base64 text of a JSON body -> a list of ImageInput.

    Text that is not base64 is refused as ``bad_image`` (400) with the image's index, as the
    pipeline refuses bytes that are not an image: the same reason for the same mistake.
    """

    def get_value(self, dictionary: Any) -> Any:
        if hasattr(dictionary, "getlist"):  # multipart / form: the field repeats
            values = dictionary.getlist(self.field_name)
            return values if values else serializers.empty
        return dictionary.get(self.field_name, serializers.empty)

    def to_internal_value(self, data: Any) -> list[ImageInput]:
        values = data if isinstance(data, list | tuple) else [data]
        return [self._image(value, index) for index, value in enumerate(values)]

    def to_representation(self, value: Any) -> Any:  # pragma: no cover - input only
        raise NotImplementedError

    @staticmethod
    def _image(value: Any, index: int) -> ImageInput:
        if isinstance(value, UploadedFile):
            if value.size is not None and value.size > settings.MAX_UPLOAD_BYTES:
                raise RequestTooLarge()
            return ImageInput(value.read(), value.name or "image", value.content_type or "")
        try:
            data, content_type = decode_image_text(value, index=index)
        except ContractError as exc:
            detail = f"Image {index} is not valid base64."
            if not isinstance(value, str):
                detail = f"Image {index} must be a base64 string."
            raise FlowError(400, "bad_image", detail, image_reason=exc.reason, image_index=index) from None
        return ImageInput(data, f"image{index}", content_type)


class ImagesInputSerializer(serializers.Serializer):
    """The images of a pipeline call: `image` (files or base64) and/or `images` (base64 list)."""

    image = ImagesField(required=False)
    images = ImagesField(required=False, help_text="Several base64 images (JSON).")

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not hasattr(data, "get"):
            raise FlowError(400, "malformed_request", "The body must be a JSON object or a multipart form.")
        values = super().to_internal_value(data)
        values["images"] = values.pop("image", []) + values.get("images", [])
        return values


class JobAcceptedSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.CharField()
    url = serializers.URLField(help_text="Poll this URL (GET) for the result.")


class PipelineView(BaseAPIView):
    """A view that runs the face pipeline: pipeline rate limit, bounded wait, ?async=true.

    Subclasses set ``InputSerializer`` (parses the request) and ``OutputSerializer`` (renders the
    flow's typed result).
    """

    throttle_classes = [CallerRateThrottle, PipelineRateThrottle, OrganizationPipelineThrottle]
    slot: str | None = None  # the organization's in-flight slot this call holds (released at the end)
    audit_mode: str | None = None  # verify/identify: every call leaves exactly one audit row
    claim: str = ""  # what a verify call claimed, for the audit row of a refused request
    InputSerializer: type[serializers.Serializer] = ImagesInputSerializer
    OutputSerializer: type[serializers.Serializer]

    def initial(self, request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        if request.method == "POST":
            # After the rate limits, before the flow reserves anything: a refusal here costs nothing.
            lease = (
                job_deadline_seconds()
                if truthy(request.query_params.get("async", ""))
                else settings.PIPELINE_WAIT_SECONDS + 60
            )
            self.slot = acquire_slot(self.caller.organization.pk, lease_seconds=lease)

    def finalize_response(self, request, response, *args, **kwargs):
        release_slot(self.slot)  # an async job took it over (self.slot is None then)
        self.slot = None
        return super().finalize_response(request, response, *args, **kwargs)

    def parse(self) -> dict[str, Any]:
        parsed = self.InputSerializer(data=self.request.data)
        parsed.is_valid(raise_exception=True)
        return parsed.validated_data

    def run(self, prepared: PreparedCall) -> Response:
        if truthy(self.request.query_params.get("async", "")):
            job = submit_job(prepared, slot=self.slot)
            self.slot = None  # released when the job is finished (faceid.jobs.complete_job)
            url = self.request.build_absolute_uri(reverse("api:job-detail", args=[job["id"]]))
            accepted = JobAcceptedSerializer({"id": job["id"], "status": job["status"], "url": url})
            return Response(accepted.data, status=status.HTTP_202_ACCEPTED, headers={"Location": url})
        result = run_sync(prepared)
        return Response(self.OutputSerializer(result).data, status=result.status)

    def handle_exception(self, exc: Exception) -> Response:
        attempt_id = None
        already_audited = isinstance(exc, FlowError) and exc.audited
        if self.audit_mode and getattr(self, "authorized", False) and not already_audited:
            attempt_id = self._audit_refusal(exc)
        response = super().handle_exception(exc)
        if attempt_id is not None and isinstance(response.data, dict):
            response.data["attempt_id"] = attempt_id
        return response

    def _audit_refusal(self, exc: Exception) -> int | None:
        caller = self.caller
        if caller is None:
            return None
        refused_request = (
            RequestTooLarge,
            FlowError,
            exceptions.ParseError,
            exceptions.UnsupportedMediaType,
            exceptions.ValidationError,
        )
        if isinstance(exc, exceptions.Throttled):
            decision, reason = DecisionChoices.RATE_LIMITED, "rate limited"
        elif isinstance(exc, refused_request):
            decision, reason = DecisionChoices.BAD_IMAGE, f"request refused: {exc}"
        else:
            decision, reason = DecisionChoices.ERROR, f"request failed: {type(exc).__name__}"
        try:
            attempt = record(
                caller,
                started=getattr(self, "started", time.time()),
                mode=self.audit_mode,
                decision=decision,
                reason=reason,
                claimed_external_id=self.claim[:128],
            )
        except Exception:  # noqa: BLE001 - never let the audit of a refusal hide the refusal
            logger.exception("could not audit a refused %s", self.audit_mode)
            return None
        return attempt.pk
