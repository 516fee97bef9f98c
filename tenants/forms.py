"""The policy form, shared by the console and the Django admin."""

from __future__ import annotations

from typing import Any

from django import forms

from inference.embedders import deployable_embedders, embedder_spec
from tenants.models import OrganizationPolicy
from tenants.services import POLICY_FIELDS


def embedding_model_choices(current: str | None = None) -> list[tuple[str, str]]:
    """The models a policy may be set to: the deployable ones, and the one it already has.

    A policy whose model lost its weights keeps it on offer (marked), so that saving any other
    field does not switch the organization's model, and with it every enrolled template, away.
    """
    choices = [(name, f"{name} ({embedder_spec(name).dim}-d)") for name in deployable_embedders()]
    if current and current not in dict(choices):
        choices.append((current, f"{current} (weights not installed: cannot run until they are)"))
    return choices


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields.get("embedding_model")
        if field is not None:
            # A select, not a choice field: which value is allowed (deployable, or unchanged) is
            # decided once, in OrganizationPolicy.clean(), for the form and the services alike.
            field.widget = forms.Select(choices=embedding_model_choices(self.instance.embedding_model))
        models = [name for name, _ in embedding_model_choices(self.instance.embedding_model)]
        for kind, masked in (("unmasked", False), ("masked", True)):
            threshold = self.fields.get(f"threshold_{kind}")
            if threshold is not None:
                threshold.help_text = f"{threshold.help_text} {floors_text(models, masked=masked)}"


def floors_text(models: list[str], *, masked: bool) -> str:
    """The floors below which the policy refuses a threshold, per model on offer."""
    floors = ", ".join(f"{name} {embedder_spec(name).floor_for(masked=masked):g}" for name in models)
    return f"Lowest allowed (floor, per model): {floors}."
