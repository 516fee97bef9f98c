"""The one definition of an audit-log query, shared by the API (/api/v1/attempts/, attempts.csv) and
the console's audit page: the same parameters give the same rows in both.

``AuditFilterForm`` parses since/until/person/decision/mode/masked/key (the console renders it as
its filter form) and turns them into the keyword arguments of ``selectors.attempts_for``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from faceid import selectors
from faceid.models import AttemptMode, AuditAction, DecisionChoices
from tenants.models import Organization
from tenants.selectors import api_key_by_id, api_keys_for

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# Matches no attempt: a key that is not the organization's must not widen the query to every key.
NO_SUCH_KEY = -1
_WHEN = "use an ISO 8601 date or date-time"
ATTEMPT_MODES = [AttemptMode.VERIFY, AttemptMode.IDENTIFY]


class DecisionsField(forms.Field):
    """One decision, or several separated by commas (`accept,no_match`); empty: any decision."""

    default_error_messages = {"invalid_choice": "unknown: %(value)s"}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Select(choices=[("", "any"), *DecisionChoices.choices]))
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> list[str]:
        return [item.strip() for item in str(value or "").split(",") if item.strip()]

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        unknown = [item for item in value if item not in DecisionChoices.values]
        if unknown:
            raise ValidationError(
                self.error_messages["invalid_choice"],
                code="invalid_choice",
                params={"value": ", ".join(unknown)},
            )


class YesNoField(forms.NullBooleanField):
    """true/false (also 1/0, yes/no, on/off); empty: either."""

    default_error_messages = {"invalid": "use true or false"}

    def __init__(self, *, yes: str, no: str, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Select(choices=[("", "any"), ("true", yes), ("false", no)]))
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> bool | None:
        text = str(value).strip().lower() if value is not None else ""
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        if text:
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return None


class _UTCDateTimeField(forms.DateTimeField):
    """ISO 8601 allows offsets PostgreSQL cannot store (beyond +/-15:59, a 500 when queried): the time
    is converted to UTC first, and one that cannot be (past year 9999) is invalid."""

    def to_python(self, value: Any) -> datetime | None:
        result = super().to_python(value)
        try:
            return result.astimezone(UTC) if result is not None else None
        except (OverflowError, ValueError):
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


def _when(label: str, help_text: str) -> forms.DateTimeField:
    return _UTCDateTimeField(
        required=False,
        label=label,
        help_text=help_text,
        error_messages={"invalid": _WHEN},
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )


class AuditFilterForm(forms.Form):
    since = _when("From", "From this time (inclusive), ISO 8601.")
    until = _when("Until", "Before this time, ISO 8601.")
    person = forms.CharField(
        required=False,
        max_length=128,
        label="Person",
        help_text="Claimed or matched person: external id, or id:<n> for the id.",
    )
    decision = DecisionsField(
        required=False,
        help_text="Decision(s), comma-separated: accept, reject, no_match, no_face, bad_image, "
        "locked_out, ...",
    )
    mode = forms.ChoiceField(
        required=False,
        choices=[("", "any"), *AttemptMode.choices],
        error_messages={"invalid_choice": " or ".join(AttemptMode.values)},
    )
    action = forms.ChoiceField(
        required=False,
        choices=[("", "any"), *AuditAction.choices],
        label="Event",
        help_text="Events only: this action (implies mode=event).",
        error_messages={"invalid_choice": "unknown action: %(value)s"},
    )
    masked = YesNoField(required=False, yes="masked", no="unmasked")
    key = forms.CharField(
        required=False, max_length=32, label="API key", help_text="API key: its public prefix, or id."
    )

    def selector_kwargs(self, organization: Organization) -> dict[str, Any]:
        """The keyword arguments of selectors.attempts_for for this filter (call is_valid() first)."""
        data = self.cleaned_data
        kwargs: dict[str, Any] = {"since": data["since"], "until": data["until"], "masked": data["masked"]}
        if data["decision"]:
            kwargs["decision"] = data["decision"]
        if data["action"]:
            kwargs["action"] = data["action"]
        if data["mode"]:
            kwargs["mode"] = data["mode"]
        else:
            # Without a mode the log lists what it always listed, the verify/identify attempts;
            # events (mode=event, or an action) are asked for.
            kwargs["mode"] = [AttemptMode.EVENT] if data["action"] else ATTEMPT_MODES
        if data["person"]:
            person = selectors.person_by_id_or_external_id(organization, data["person"], include_erased=True)
            if person is not None:
                kwargs["person"] = person
            else:
                kwargs["external_id"] = data["person"]  # a claim of nobody known is still searchable
        if data["key"]:
            ref = data["key"].strip()
            key = api_keys_for(organization).filter(prefix=ref).first() or api_key_by_id(organization, ref)
            kwargs["api_key"] = key if key is not None else NO_SUCH_KEY
        return kwargs


def attempt_filters(organization: Organization, params: Any) -> dict[str, Any]:
    """Query parameters -> selectors.attempts_for keyword arguments; ValidationError (per field) on bad
    values. Parameters the filter does not know (page, format) are ignored."""
    form = AuditFilterForm(params)
    if not form.is_valid():
        raise ValidationError(form.errors.as_data())
    return form.selector_kwargs(organization)
