"""The endpoints that run the face pipeline — enroll, verify (1:1), identify (1:N) — and the poll of
``?async=true`` jobs. Each parses with its InputSerializer, hands over to its flow
(faceid.flows), and renders the flow's typed result with its OutputSerializer."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from faceid import job_records, selectors
from faceid.api import serializers as s
from faceid.api.authentication import scopes_of
from faceid.api.base import ERRORS, BaseAPIView, errors
from faceid.api.permissions import MissingScope
from faceid.api.persons import person_or_404
from faceid.api.pipeline import ASYNC_PARAM, ImagesInputSerializer, JobAcceptedSerializer, PipelineView
from faceid.api.results import (
    EnrollResultSerializer,
    IdentifyResultSerializer,
    JobSerializer,
    VerifyResultSerializer,
)
from faceid.api.throttling import CallerRateThrottle
from faceid.flows import prepare_enroll, prepare_identify, prepare_verify
from faceid.flows.identify import DEFAULT_TOP_K, MAX_TOP_K
from faceid.jobs import get_job
from faceid.models import AttemptMode
from faceid.selectors import ID_PREFIX
from tenants.models import Scope


class PersonFacesView(PipelineView):
    required_scopes = Scope.ENROLL
    OutputSerializer = EnrollResultSerializer

    class InputSerializer(ImagesInputSerializer):
        class Meta:
            ref_name = "EnrollInput"

        override = serializers.BooleanField(
            required=False,
            default=False,
            help_text="Store photos that do not match the person's existing templates (audited). "
            "Only an organization owner or admin signed in to the console; API keys get 403.",
        )

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
        person = person_or_404(organization, id)
        return Response(
            s.TemplateSerializer(selectors.templates_for_person(organization, person), many=True).data
        )

    @extend_schema(
        tags=["enrollment"],
        summary="Enroll photos of a person",
        operation_id="faces_enroll",
        description="Each photo goes through the pipeline; the answer says per photo what was stored "
        "(template ids per variant: full face and mask-aware) or why it was refused. 201 when at "
        "least one photo was stored, 422 when none was.",
        request={"multipart/form-data": InputSerializer, "application/json": InputSerializer},
        parameters=[ASYNC_PARAM],
        responses={
            201: EnrollResultSerializer,
            202: JobAcceptedSerializer,
            422: OpenApiResponse(EnrollResultSerializer, description=ERRORS[422].description),
            **errors(400, 401, 403, 404, 409, 413, 429, 503, 504),
        },
    )
    def post(self, request, id: int):
        person = person_or_404(self.caller.organization, id)
        data = self.parse()
        return self.run(
            prepare_enroll(
                self.caller,
                person=person,
                images=data["images"],
                started=self.started,
                override=data.get("override", False),
            )
        )


class VerifyView(PipelineView):
    required_scopes = Scope.VERIFY
    audit_mode = AttemptMode.VERIFY
    OutputSerializer = VerifyResultSerializer

    class InputSerializer(ImagesInputSerializer):
        class Meta:
            ref_name = "VerifyInput"

        person = serializers.CharField(
            required=False,
            allow_blank=True,
            help_text="The claimed person: the external id; `id:<n>` for the person's id. A bare "
            "number that is nobody's external id is still read as an id (deprecated: write `id:<n>`).",
        )
        person_id = serializers.CharField(
            required=False, allow_blank=True, help_text="Deprecated: `person` with `id:<n>`. Always an id."
        )
        external_id = serializers.CharField(
            required=False, allow_blank=True, help_text="Deprecated: `person`."
        )

        def validate(self, attrs: dict) -> dict:
            # A missing claim is the flow's to refuse (audited, 400 person_required).
            person_id = attrs.pop("person_id", "").strip()
            explicit_id = f"{ID_PREFIX}{person_id.removeprefix(ID_PREFIX)}" if person_id else ""
            attrs["person"] = attrs.get("person") or explicit_id or attrs.pop("external_id", "")
            return attrs

    def claimed(self) -> str:
        """The claim as sent, read before parsing: a refused request is audited with it too."""
        data = self.request.data if hasattr(self.request.data, "get") else {}
        return str(data.get("person") or data.get("person_id") or data.get("external_id") or "")

    @extend_schema(
        tags=["matching"],
        summary="Verify (1:1): is this the claimed person?",
        operation_id="verify",
        description="A photo, or a short burst of camera frames (repeat `image`), and the claimed "
        "person. The probe's mask decision picks the masked or unmasked threshold of the "
        "organization's policy and the templates it is compared with. Every call writes exactly one "
        "audit row, refusals included (`attempt_id`).",
        request={"multipart/form-data": InputSerializer, "application/json": InputSerializer},
        parameters=[ASYNC_PARAM],
        responses={
            200: VerifyResultSerializer,
            202: JobAcceptedSerializer,
            **errors(400, 401, 403, 404, 409, 413, 422, 423, 429, 503, 504),
        },
    )
    def post(self, request):
        self.claim = self.claimed()
        data = self.parse()
        prepared = prepare_verify(
            self.caller, person_ref=data["person"], images=data["images"], started=self.started
        )
        return self.run(prepared)


class IdentifyView(PipelineView):
    required_scopes = Scope.IDENTIFY
    audit_mode = AttemptMode.IDENTIFY
    OutputSerializer = IdentifyResultSerializer

    class InputSerializer(ImagesInputSerializer):
        class Meta:
            ref_name = "IdentifyInput"

        top_k = serializers.IntegerField(
            required=False, min_value=1, max_value=MAX_TOP_K, default=DEFAULT_TOP_K
        )

    @extend_schema(
        tags=["matching"],
        summary="Identify (1:N): who is this?",
        operation_id="identify",
        description="The best candidates at or above identify's threshold (masked or unmasked by "
        "the probe), best first, at most `top_k`. An unknown face answers 200 with an empty `matches`. "
        "The threshold is chosen per search for the policy's `identify_fpir` (the share of searches by "
        "a face that is not enrolled that may return someone) at the number of persons searched "
        "(`candidates_searched`), never below the policy's 1:1 threshold: it rises as the gallery grows.",
        request={"multipart/form-data": InputSerializer, "application/json": InputSerializer},
        parameters=[ASYNC_PARAM],
        responses={
            200: IdentifyResultSerializer,
            202: JobAcceptedSerializer,
            **errors(400, 401, 403, 413, 422, 423, 429, 503, 504),
        },
    )
    def post(self, request):
        data = self.parse()
        prepared = prepare_identify(
            self.caller, images=data["images"], top_k=data["top_k"], started=self.started
        )
        return self.run(prepared)


# A job's answer is the answer of the call it ran: reading it takes the scope that call took.
JOB_SCOPES = {
    "enroll": Scope.ENROLL,
    "verify": Scope.VERIFY,
    "identify": Scope.IDENTIFY,
    "model_switch": Scope.AUDIT_READ,  # counts only, no biometric result (faceid.model_switch)
}


class JobView(BaseAPIView):
    # The submitter's organization only (the job id is unguessable), and the scope of the job's
    # kind, checked once the job is read: an audit-only key cannot read verify decisions here.
    required_scopes = None

    @extend_schema(
        tags=["jobs"],
        summary="Poll an asynchronous call",
        operation_id="jobs_retrieve",
        description="Needs the scope of the call that started the job (`enroll`, `verify` or `identify`).",
        responses={200: JobSerializer, **errors(401, 403, 404)},
    )
    def get(self, request, id: str):
        # Checked on a side-effect-free read first: a finished job is handed over (and deleted) by
        # get_job, which a caller without the scope must not be able to trigger.
        self.check_job_scope(request, id)
        job = get_job(self.caller, id)
        if job is None:
            raise exceptions.NotFound("No such job (or it expired).")
        return Response(JobSerializer(job).data)

    def check_job_scope(self, request, job_id: str) -> None:
        try:
            record = job_records.load(uuid.UUID(str(job_id)).hex)
        except ValueError:
            return  # not a job id: get_job answers 404
        if record is None or record.get("organization_id") != self.caller.organization.pk:
            return  # another organization's job, or none: 404, the same as an unknown id
        needed = JOB_SCOPES.get(record.get("kind"))
        if needed is None or needed not in scopes_of(request):
            raise MissingScope(f"Reading this job needs the `{needed or record.get('kind')}` scope.")
