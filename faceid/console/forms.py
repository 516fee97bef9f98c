from __future__ import annotations

from django import forms

from faceid.models import AttemptMode, DecisionChoices
from tenants.models import OrganizationPolicy, Scope
from tenants.services import POLICY_FIELDS


class PersonCreateForm(forms.Form):
    external_id = forms.CharField(
        max_length=128, label="External id", help_text="Your identifier for this person (employee number)."
    )
    display_name = forms.CharField(max_length=200, required=False, label="Name")


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    widget = MultipleFileInput

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/*", "multiple": True}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data]
        return [single(data, initial)] if data else []


class EnrollUploadForm(forms.Form):
    image = MultipleImageField(label="Photos", help_text="One or several photos, one face each, no mask.")


class VerifyUploadForm(forms.Form):
    person = forms.CharField(max_length=128, label="Claimed person", help_text="External id or id.")
    image = MultipleImageField(label="Photo(s)")


class ConfirmEraseForm(forms.Form):
    confirm = forms.CharField(max_length=128, label="Type the external id to confirm")

    def __init__(self, *args, expected: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.expected = expected

    def clean_confirm(self):
        value = self.cleaned_data["confirm"].strip()
        if value != self.expected:
            raise forms.ValidationError("This is not the person's external id.")
        return value


class PolicyForm(forms.ModelForm):
    class Meta:
        model = OrganizationPolicy
        fields = list(POLICY_FIELDS)
        widgets = {
            "threshold_unmasked": forms.NumberInput(attrs={"step": "0.0001"}),
            "threshold_masked": forms.NumberInput(attrs={"step": "0.0001"}),
            "target_far": forms.NumberInput(attrs={"step": "any"}),
            "mask_threshold": forms.NumberInput(attrs={"step": "0.01"}),
        }


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100, label="Name", help_text="Where the key is used (e.g. 'door 3 kiosk')."
    )
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=[Scope.VERIFY]
    )


class AuditFilterForm(forms.Form):
    since = forms.DateTimeField(
        required=False, label="From", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = forms.DateTimeField(
        required=False, label="Until", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    person = forms.CharField(required=False, max_length=128, label="Person")
    decision = forms.ChoiceField(required=False, choices=[("", "any")] + list(DecisionChoices.choices))
    mode = forms.ChoiceField(required=False, choices=[("", "any")] + list(AttemptMode.choices))
    masked = forms.ChoiceField(
        required=False, choices=[("", "any"), ("true", "masked"), ("false", "unmasked")]
    )
    key = forms.CharField(required=False, max_length=32, label="API key prefix")
