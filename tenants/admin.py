from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from faceid.events import Actor
from tenants import services
from tenants.forms import PolicyForm
from tenants.models import ApiKey, Membership, Organization, OrganizationPolicy


class PolicyInline(admin.StackedInline):
    # The console's form: the model select offers the deployable models; OrganizationPolicy
    # validates the choice and resets the thresholds on a switch, here as everywhere.
    model = OrganizationPolicy
    form = PolicyForm
    can_delete = False
    readonly_fields = ("updated_at",)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)
    readonly_fields = ("created_at",)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("slug", "name")
    readonly_fields = ("created_at",)
    inlines = (PolicyInline, MembershipInline)

    def has_delete_permission(self, request: HttpRequest, obj: Organization | None = None) -> bool:
        # Organizations are deactivated, not deleted: their audit log must survive.
        return False

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not OrganizationPolicy:
            super().save_formset(request, form, formset, change)
            return
        # The policy goes through the service, like the console's: its change is audited with the
        # admin user as actor (the form has already checked the values against the same rules).
        actor = Actor(user=request.user, client_ip=request.META.get("REMOTE_ADDR"))
        # What the admin's change message reads from a saved formset.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for policy_form in formset.forms:
            changed = {
                name: policy_form.cleaned_data[name]
                for name in policy_form.changed_data
                if name in services.POLICY_FIELDS
            }
            if changed:
                policy = services.update_policy(form.instance, actor=actor, **changed)
                formset.changed_objects.append((policy, list(changed)))

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # Every organization has a policy, also one added here with the inline left empty.
        services.ensure_policy(form.instance)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created where the plaintext can be shown once (console, create_api_key command)."""

    list_display = ("name", "organization", "prefix", "scopes", "created_at", "last_used_at", "revoked_at")
    list_filter = ("organization", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "prefix", "organization__slug")
    readonly_fields = (
        "organization",
        "prefix",
        "scopes",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    fields = ("name", *readonly_fields)
    actions = ("revoke",)
    list_select_related = ("organization",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False  # audit rows refer to keys: revoke instead

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for api_key in queryset.select_related("organization"):
            if api_key.revoked_at is None:
                actor = Actor(user=request.user, client_ip=request.META.get("REMOTE_ADDR"))
                services.revoke_api_key(api_key.organization, api_key, actor=actor)
                count += 1
        self.message_user(request, f"Revoked {count} API keys.", messages.SUCCESS)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role", "organization")
    search_fields = ("user__username", "user__email", "organization__slug")
    autocomplete_fields = ("user", "organization")
    list_select_related = ("user", "organization")
