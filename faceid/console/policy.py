"""Console policy pages: the organization's matching policy and its calibration."""

from __future__ import annotations

import base64
import time

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from faceid import calibration as calib
from faceid import calibration_plots, calibration_report, model_switch
from faceid.api.authentication import client_ip
from faceid.console.access import console_view, render_page
from faceid.events import Actor
from faceid.flows.identify_thresholds import identify_thresholds
from tenants import roles
from tenants import services as tenant_services
from tenants.forms import PolicyForm
from tenants.selectors import policy_for


@console_view(roles.MANAGE_ROLES)
def policy(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    if request.method == "POST" and request.POST.get("resume_switch"):
        resumed = model_switch.resume_switch(organization)
        messages.info(request, "Model switch job sent again." if resumed else "No model switch is running.")
        return redirect("console:policy")
    current = policy_for(organization)
    form = PolicyForm(request.POST or None, instance=current)
    if request.method == "POST" and form.is_valid():
        changed = {name: form.cleaned_data[name] for name in form.changed_data}
        try:
            tenant_services.update_policy(organization=organization, actor=_actor(request), **changed)
        except ValidationError as exc:
            form.add_error(None, "; ".join(exc.messages))
        else:
            messages.success(request, "Policy saved." if changed else "Nothing changed.")
            return redirect("console:policy")
    switch = model_switch.latest_switch(organization)
    context = {
        "form": form,
        "policy": current,
        "switch": switch,
        # Who must enroll again after the latest model switch (no usable kept photo).
        "switch_progress": model_switch.progress(switch) if switch is not None else None,
        "needs_enrollment": model_switch.persons_needing_enrollment(organization, switch)[:500],
        # Identify's thresholds at today's gallery size (they rise as it grows).
        "identify": identify_thresholds(organization, current),
    }
    return render_page(request, "console/policy.html", context)


@console_view(roles.MANAGE_ROLES)
def calibration(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    current = policy_for(organization)
    # The same proposal as `manage.py calibrate_thresholds` (faceid.calibration.propose).
    result = calib.calibrate(organization, current)
    if request.method == "POST" and request.POST.get("apply"):
        # Decided here, on the calibration just recomputed, whatever the page offered: a proposal
        # whose sample cannot support the target FAR, or below the floor, is never applied.
        changes, refused = {}, []
        for dist in result.distributions:
            if not request.POST.get(f"apply_{dist.name}"):
                continue
            if dist.proposal is None or not dist.proposal.applicable:
                reason = dist.proposal.refusal if dist.proposal else "no proposal"
                refused.append(f"{dist.name}: {reason}")
            else:
                changes[f"threshold_{dist.name}"] = dist.proposal.threshold
        if refused:
            messages.error(request, "Nothing applied. Refused: " + "; ".join(refused))
        elif changes:
            try:
                tenant_services.update_policy(organization=organization, actor=_actor(request), **changes)
            except ValidationError as exc:
                messages.error(request, "Nothing applied: " + "; ".join(exc.messages))
            else:
                messages.success(
                    request, "Applied: " + ", ".join(f"{k} = {v:.4f}" for k, v in changes.items())
                )
        else:
            messages.info(request, "Nothing applied.")
        return redirect("console:calibration")
    started = time.perf_counter()
    hist = base64.b64encode(calibration_plots.histogram_png(result)).decode()
    roc = base64.b64encode(calibration_plots.roc_png(result)).decode()
    return render_page(
        request,
        "console/calibration.html",
        {
            "calibration": result,
            "rows": calibration_report.rows(result),
            "policy": current,
            "histogram_png": hist,
            "roc_png": roc,
            "plot_ms": round((time.perf_counter() - started) * 1000),
            "impostor_pairs_needed": calib.impostor_pairs_needed(current.target_far),
            "floors": {
                "unmasked": current.floor_for(masked=False),
                "masked": current.floor_for(masked=True),
            },
        },
    )


def _actor(request: HttpRequest) -> Actor:
    """Who changes the policy: the console's session user, from this address."""
    return Actor(user=request.user, client_ip=client_ip(request))
