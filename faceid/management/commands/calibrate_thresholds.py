"""python manage.py calibrate_thresholds <org-slug> [--far 1e-4] [--apply] [--only NAME] [--out DIR]

Calibrates the organization's unmasked and masked thresholds for a target false-accept rate from its
own enrolled templates, pooled with the model's shipped reference impostor distribution (the same
proposal as the console's calibration page: faceid.calibration.propose), prints current against
proposed, writes the ROC and the score histograms as PNG, and with --apply sets the proposed
thresholds through the tenant service, which writes the policy_change audit row. A proposal the
sample cannot support, or below the model's floor, is refused and nothing is applied.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from faceid import calibration, calibration_plots, calibration_report
from faceid.events import Actor
from tenants import services as tenant_services
from tenants.models import Organization
from tenants.selectors import policy_for

NAMES = ("unmasked", "masked")


def _target_far(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"--far must be a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise CommandError(f"--far must lie between 0 and 1 (exclusive), got {text}")
    return value


class Command(BaseCommand):
    help = (
        "Calibrate an organization's thresholds for a target FAR on its templates pooled with the "
        "model's reference impostor distribution; write the ROC and histograms; --apply sets them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization", help="the organization's slug")
        parser.add_argument("--far", default=None, help="target false-accept rate (default: the policy's)")
        parser.add_argument("--apply", action="store_true", help="set the proposed thresholds (audited)")
        parser.add_argument(
            "--only", choices=NAMES, default=None, help="apply only this threshold (default: both)"
        )
        parser.add_argument(
            "--out",
            default=None,
            help="folder for roc.png, histograms.png and summary.txt "
            "(default: ./calibration-<slug>-<UTC time>)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug = options["organization"]
        organization = Organization.objects.filter(slug=slug).first()
        if organization is None:
            raise CommandError(f"No organization with the slug {slug!r}.")
        policy = policy_for(organization)
        target = policy.target_far if options["far"] is None else _target_far(str(options["far"]))
        result = calibration.calibrate(organization, policy, target_far=target)

        table = calibration_report.text_table(result)
        self.stdout.write(f"{organization.name} ({slug})\n{table}")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = Path(options["out"] or f"calibration-{slug}-{stamp}")
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / "roc.png").write_bytes(calibration_plots.roc_png(result))
            (out / "histograms.png").write_bytes(calibration_plots.histogram_png(result))
            (out / "summary.txt").write_text(f"{organization.name} ({slug})\n{table}\n", encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot write the pictures to {out}: {exc.strerror or exc}") from None
        self.stdout.write(f"\nWrote {out / 'roc.png'}, {out / 'histograms.png'} and {out / 'summary.txt'}.")

        if options["apply"]:
            self._apply(organization, policy.target_far, result, options["only"])
        else:
            self.stdout.write("Nothing changed (add --apply to set the proposed thresholds).")

    def _apply(
        self, organization: Organization, policy_far: float, result: calibration.Calibration, only: str | None
    ) -> None:
        changes: dict[str, float] = {}
        refused = []
        for dist in result.distributions:
            if only is not None and dist.name != only:
                continue
            proposal = dist.proposal
            if proposal is None or not proposal.applicable:
                reason = proposal.refusal if proposal is not None else "no impostor pairs: enroll two persons"
                refused.append(f"{dist.name}: {reason}")
            else:
                changes[f"threshold_{dist.name}"] = proposal.threshold
        if refused:
            raise CommandError("Nothing applied. Refused: " + "; ".join(refused))
        if result.target_far != policy_far:
            # The thresholds hold this FAR now: the policy says so too (one audit row for all).
            changes["target_far"] = result.target_far
        try:
            tenant_services.update_policy(organization, actor=Actor(), **changes)
        except ValidationError as exc:
            raise CommandError("Nothing applied: " + "; ".join(exc.messages)) from None
        self.stdout.write(
            "Applied (audited as policy_change): " + ", ".join(f"{k} = {v:g}" for k, v in changes.items())
        )
