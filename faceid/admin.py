from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

from faceid import services
from faceid.audit import attempts_csv_response
from faceid.events import Action, Actor, record_event
from faceid.models import FaceTemplate, Person, StoredImage, VerificationAttempt
from tenants.models import Organization


def admin_actor(request: HttpRequest) -> Actor:
    """The staff user acting in the Django admin, as the audit log names them."""
    return Actor(user=request.user, client_ip=request.META.get("REMOTE_ADDR"))


class _ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class FaceTemplateInline(admin.TabularInline):
    model = FaceTemplate
    # The raw embedding is never shown: it is biometric data and useless to a human.
    fields = ("model_name", "model_version", "variant", "dim", "quality", "mask_probability", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    list_display = ("external_id", "display_name", "organization", "active", "created_at", "erased_at")
    list_filter = ("organization", "active", ("erased_at", admin.EmptyFieldListFilter))
    search_fields = ("external_id", "display_name")
    readonly_fields = ("organization", "created_at", "updated_at", "erased_at")
    list_select_related = ("organization",)
    inlines = (FaceTemplateInline,)

    def get_readonly_fields(self, request: HttpRequest, obj: Person | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("created_at", "updated_at", "erased_at")
        return self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: Person | None = None) -> bool:
        # Persons are erased (faceid.services.erase_person, console or API), not deleted: audit rows
        # refer to them.
        return False

    def save_model(self, request: HttpRequest, obj: Person, form: Any, change: bool) -> None:
        # Through the services, so that an external-id change or a (de)activation made here is
        # audited with the staff user like anywhere else.
        if not change:
            super().save_model(request, obj, form, change)  # creating a person is not audited
            return
        stored = Person.objects.get(pk=obj.pk)
        services.update_person(
            stored.organization,
            stored,
            external_id=obj.external_id,
            display_name=obj.display_name,
            active=obj.active,
            actor=admin_actor(request),
        )


@admin.register(FaceTemplate)
class FaceTemplateAdmin(_ReadOnlyAdmin):
    list_display = (
        "id",
        "person",
        "organization",
        "model_name",
        "model_version",
        "variant",
        "dim",
        "quality",
        "created_at",
    )
    list_filter = ("model_name", "variant", "organization")
    search_fields = ("person__external_id", "person__display_name", "source_sha256")
    fields = (
        "organization",
        "person",
        "model_name",
        "model_version",
        "variant",
        "dim",
        "quality",
        "mask_probability",
        "source_sha256",
        "created_at",
    )
    list_select_related = ("person", "organization")

    def get_queryset(self, request: HttpRequest) -> QuerySet[FaceTemplate]:
        return super().get_queryset(request).defer("embedding")


@admin.register(StoredImage)
class StoredImageAdmin(_ReadOnlyAdmin):
    list_display = (
        "id",
        "organization",
        "purpose",
        "person",
        "attempt",
        "size_bytes",
        "created_at",
        "expires_at",
    )
    list_filter = ("purpose", "organization")
    list_select_related = ("organization", "person")


@admin.register(VerificationAttempt)
class VerificationAttemptAdmin(_ReadOnlyAdmin):
    """The audit trail, for auditors: nobody can add, change or delete rows here."""

    list_display = (
        "created_at",
        "organization",
        "mode",
        "decision",
        "claimed_external_id",
        "matched_person",
        "similarity",
        "threshold",
        "masked",
        "mask_probability",
        "latency_ms",
        "api_key",
        "user",
        "client_ip",
    )
    list_filter = (
        "decision",
        "masked",
        "mode",
        ("created_at", admin.DateFieldListFilter),
        ("api_key", admin.RelatedOnlyFieldListFilter),
        "organization",
    )
    search_fields = (
        "claimed_external_id",
        "claimed_person__display_name",
        "matched_person__external_id",
        "matched_person__display_name",
    )
    date_hierarchy = "created_at"
    list_select_related = ("organization", "api_key", "user", "claimed_person", "matched_person")
    actions = ("export_csv",)
    show_full_result_count = False  # the log grows without bound; skip the extra COUNT(*)

    def get_fields(self, request: HttpRequest, obj: VerificationAttempt | None = None) -> list[str]:
        return [f.name for f in VerificationAttempt._meta.fields]

    @admin.action(description="Export selected attempts as CSV")
    def export_csv(
        self, request: HttpRequest, queryset: QuerySet[VerificationAttempt]
    ) -> StreamingHttpResponse:
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        # One csv_export event per organization whose rows leave, in that organization's chain.
        ids = list(queryset.values_list("pk", flat=True))
        for organization in Organization.objects.filter(attempts__pk__in=ids).distinct():
            record_event(
                organization,
                action=Action.CSV_EXPORT,
                actor=admin_actor(request),
                details={"via": "admin", "rows": queryset.filter(organization=organization).count()},
            )
        rows = VerificationAttempt.objects.filter(pk__in=ids).order_by("organization_id", "seq")
        return attempts_csv_response(rows, f"attempts-{stamp}.csv")
