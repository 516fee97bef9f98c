from __future__ import annotations

from django import forms

from tenants.models import Scope


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
    override = forms.BooleanField(
        required=False,
        label="Override the face match",
        help_text="Owners and admins only: store photos that do not match the person's enrolled face "
        "(audited).",
    )


class VerifyUploadForm(forms.Form):
    person = forms.CharField(
        max_length=128, label="Claimed person", help_text="External id, or id:<n> for the id."
    )
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


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100, label="Name", help_text="Where the key is used (e.g. 'door 3 kiosk')."
    )
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=[Scope.VERIFY]
    )
