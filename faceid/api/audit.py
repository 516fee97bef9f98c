"""/api/v1/attempts/ and /api/v1/attempts.csv: the audit log, filtered, as JSON pages or CSV.

The query is faceid.filters.AuditFilterForm (the console's audit page parses the same one), the
columns and the CSV export are faceid.audit's.
"""

from __future__ import annotations

import io
from typing import Any

from django import forms
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer

from faceid import audit, selectors
from faceid.api.base import (
    PAGE_PARAMETERS,
    BaseAPIView,
    DefaultPagination,
    errors,
    paginated,
    paginated_response,
)
from faceid.events import Action, event_details, record_event
from faceid.filters import AuditFilterForm, attempt_filters
from faceid.models import VerificationAttempt
from tenants.models import Scope


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        # Only error bodies come through here; the CSV export itself streams.
        if isinstance(data, dict):
            out = io.StringIO()
            writer = audit.csv_writer(out)
            writer.writerow(["reason", "detail"])
            writer.writerow([audit.csv_cell(str(data.get(key, ""))) for key in ("reason", "detail")])
            return out.getvalue().encode()
        return b""


def _query_parameter(name: str, field: forms.Field) -> OpenApiParameter:
    if isinstance(field, forms.DateTimeField):
        kind = OpenApiTypes.DATETIME
    elif isinstance(field, forms.NullBooleanField):
        kind = OpenApiTypes.BOOL
    else:
        kind = OpenApiTypes.STR
    enum = [value for value, _ in field.choices if value] if isinstance(field, forms.ChoiceField) else None
    return OpenApiParameter(name, kind, description=str(field.help_text), enum=enum)


# The documented filters are the shared filter's fields, so the document cannot drift from the parser.
FILTER_PARAMETERS = [_query_parameter(name, field) for name, field in AuditFilterForm.base_fields.items()]
FORMAT_PARAMETER = OpenApiParameter(
    "format", str, enum=["json", "csv"], description="csv: the whole filtered log as CSV."
)


# The API's audit fields are the CSV's columns, a related row named by its relation (claimed_person
# for the column claimed_person_id) as everywhere in the API.
_RELATION_NAMES = {f.attname: f.name for f in VerificationAttempt._meta.concrete_fields if f.is_relation}


class AttemptListView(BaseAPIView):
    required_scopes = Scope.AUDIT_READ
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]

    class Pagination(DefaultPagination):
        max_page_size = 1000

    @extend_schema_serializer(component_name="Attempt")
    class OutputSerializer(serializers.ModelSerializer):
        api_key = serializers.SerializerMethodField()
        user = serializers.SerializerMethodField()
        matched_external_id = serializers.SerializerMethodField()
        details = serializers.SerializerMethodField(help_text="Events only: what the action changed.")

        # Event rows have no decision and verify/identify rows no action (""): documented, or a
        # client validating answers against the schema fails.
        decision = serializers.ChoiceField(
            choices=[("", "(event row)"), *VerificationAttempt._meta.get_field("decision").choices],
            read_only=True,
        )
        action = serializers.ChoiceField(
            choices=[
                ("", "(verify or identify row)"),
                *VerificationAttempt._meta.get_field("action").choices,
            ],
            read_only=True,
        )

        class Meta:
            model = VerificationAttempt
            fields = [_RELATION_NAMES.get(column, column) for column in audit.CSV_COLUMNS]
            read_only_fields = fields

        def get_api_key(self, attempt: VerificationAttempt) -> str | None:
            return audit.column_value(attempt, "api_key")

        def get_user(self, attempt: VerificationAttempt) -> str | None:
            return audit.column_value(attempt, "user")

        def get_matched_external_id(self, attempt: VerificationAttempt) -> str | None:
            return audit.column_value(attempt, "matched_external_id")

        def get_details(self, attempt: VerificationAttempt) -> dict[str, Any] | None:
            return event_details(attempt) if attempt.details else None

    @extend_schema(
        tags=["audit"],
        summary="The audit log",
        operation_id="attempts_list",
        description="Newest first, paginated. `?format=csv` (or /api/v1/attempts.csv) streams the "
        "whole filtered log as CSV.",
        parameters=[*FILTER_PARAMETERS, FORMAT_PARAMETER, *PAGE_PARAMETERS],
        responses={200: paginated(OutputSerializer, "AttemptPage"), **errors(400, 401, 403, 404)},
    )
    def get(self, request, format=None):
        organization = self.caller.organization
        attempts = selectors.attempts_for(organization, **attempt_filters(organization, request.query_params))
        if request.accepted_renderer.format == "csv":
            event = record_event(
                organization,
                action=Action.CSV_EXPORT,
                actor=self.caller.actor,
                details={"via": "api", "query": request.query_params.dict()},
            )
            # The export is the log as it was asked for: its own event row comes after it.
            rows = attempts.exclude(pk=event.pk)
            return audit.attempts_csv_response(rows, f"audit-{organization.slug}.csv")
        return paginated_response(
            attempts,
            pagination_class=self.Pagination,
            serializer_class=self.OutputSerializer,
            request=request,
            view=self,
        )


class AttemptCSVView(AttemptListView):
    """/api/v1/attempts.csv: the same filters as /api/v1/attempts/, always CSV."""

    @extend_schema(
        tags=["audit"],
        summary="The audit log as CSV",
        operation_id="attempts_csv",
        parameters=FILTER_PARAMETERS,
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="One row per attempt."),
            **errors(400, 401, 403),
        },
    )
    def get(self, request, format=None):
        return super().get(request, format=format)
