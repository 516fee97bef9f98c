"""/api/v1/persons/: list, create, show, update and erase persons of the caller's organization.

Each view parses with its nested input serializers and answers with its OutputSerializer; the rules
(such as a unique external id) live in faceid.services, which this module only translates to HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from faceid import selectors, services
from faceid.api.base import (
    PAGE_PARAMETERS,
    BaseAPIView,
    errors,
    paginated,
    paginated_response,
)
from faceid.models import Person
from tenants.models import Organization, Scope


def person_or_404(organization: Organization, person_id: int) -> Person:
    person = selectors.persons_for(organization).filter(pk=person_id).first()
    if person is None:
        raise exceptions.NotFound("No such person.")
    return person


class DuplicateExternalId(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "A person with this external id exists."
    default_code = services.DUPLICATE_EXTERNAL_ID


@contextmanager
def duplicate_is_a_conflict() -> Iterator[None]:
    """The services' duplicate-external-id refusal answers 409; other ValidationErrors stay 400."""
    try:
        yield
    except DjangoValidationError as exc:
        for error in getattr(exc, "error_dict", {}).get("external_id", []):
            if error.code == services.DUPLICATE_EXTERNAL_ID:
                raise DuplicateExternalId(error.messages[0]) from exc
        raise


@extend_schema_serializer(component_name="Person")
class PersonOutputSerializer(serializers.ModelSerializer):
    """A person of the caller's organization."""

    templates = serializers.SerializerMethodField(help_text="Number of stored face templates (all variants).")

    class Meta:
        model = Person
        fields = ["id", "external_id", "display_name", "active", "created_at", "updated_at", "templates"]
        read_only_fields = fields

    def get_templates(self, person: Person) -> int:
        annotated = getattr(person, "template_count", None)
        return annotated if annotated is not None else person.templates.count()


class PersonListView(BaseAPIView):
    required_scopes = Scope.ENROLL
    OutputSerializer = PersonOutputSerializer

    class FilterSerializer(serializers.Serializer):
        search = serializers.CharField(
            required=False, allow_blank=True, help_text="Part of the external id or of the name."
        )
        active = serializers.BooleanField(
            required=False,
            allow_null=True,
            default=None,
            help_text="Only active (true) or inactive (false) persons.",
        )

    @extend_schema_serializer(component_name="PersonCreate")
    class InputSerializer(serializers.Serializer):
        external_id = serializers.CharField(
            max_length=128, help_text="Your identifier (employee number); unique."
        )
        display_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    @extend_schema(
        tags=["persons"],
        summary="List persons",
        operation_id="persons_list",
        parameters=[FilterSerializer, *PAGE_PARAMETERS],
        responses={200: paginated(OutputSerializer, "PersonPage"), **errors(400, 401, 403, 404)},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        persons = selectors.persons_for(
            self.caller.organization,
            search=filters.validated_data.get("search") or None,
            active=filters.validated_data["active"],
        ).annotate(template_count=Count("templates"))
        return paginated_response(
            persons,
            serializer_class=self.OutputSerializer,
            request=request,
            view=self,
        )

    @extend_schema(
        tags=["persons"],
        summary="Create a person",
        operation_id="persons_create",
        request=InputSerializer,
        responses={201: OutputSerializer, **errors(400, 401, 403, 409)},
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with duplicate_is_a_conflict():
            person = services.create_person(self.caller.organization, **data.validated_data)
        return Response(self.OutputSerializer(person).data, status=status.HTTP_201_CREATED)


class PersonDetailView(BaseAPIView):
    required_scopes = Scope.ENROLL
    OutputSerializer = PersonOutputSerializer

    @extend_schema_serializer(component_name="PersonUpdate")
    class InputSerializer(serializers.Serializer):
        external_id = serializers.CharField(max_length=128, required=False)
        display_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
        active = serializers.BooleanField(required=False, help_text="false deactivates (templates kept).")

    @extend_schema(
        tags=["persons"],
        summary="Show a person",
        operation_id="persons_retrieve",
        responses={200: OutputSerializer, **errors(401, 403, 404)},
    )
    def get(self, request, id: int):
        return Response(self.OutputSerializer(person_or_404(self.caller.organization, id)).data)

    @extend_schema(
        tags=["persons"],
        summary="Update or (de)activate a person",
        operation_id="persons_update",
        request=InputSerializer,
        responses={200: OutputSerializer, **errors(400, 401, 403, 404, 409)},
    )
    def patch(self, request, id: int):
        organization = self.caller.organization
        person = person_or_404(organization, id)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        with duplicate_is_a_conflict():
            person = services.update_person(
                organization, person, actor=self.caller.actor, **data.validated_data
            )
        return Response(self.OutputSerializer(person).data)

    @extend_schema(
        tags=["persons"],
        summary="Erase a person",
        operation_id="persons_erase",
        description="Removes the person's templates and kept images and blanks the name; audit rows "
        "(which hold no biometric data) stay. The person then answers 404.",
        responses={204: None, **errors(401, 403, 404)},
    )
    def delete(self, request, id: int):
        organization = self.caller.organization
        services.erase_person(organization, person_or_404(organization, id), actor=self.caller.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)
