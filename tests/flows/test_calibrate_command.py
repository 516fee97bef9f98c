"""`manage.py calibrate_thresholds`: pooled calibration of an organization's thresholds, its table and
pictures, --apply through the tenant service (audited), and its refusals."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from faceid import calibration as calib
from faceid import services
from faceid.events import Action, event_details
from faceid.models import VerificationAttempt
from inference.variants import MASK_STRATEGIES
from tenants.selectors import policy_for
from tests.plugins.factories import sha, unit

PNG = b"\x89PNG\r\n\x1a\n"


def _enroll(organization, persons: int = 12, photos: int = 3, seed: int = 0) -> None:
    """Persons whose templates (full and the policy's mask-aware variant) are close, as dlib's are:
    impostor pairs near 0.93, genuine pairs near 0.98, none above the reference's 1e-4 threshold."""
    rng = np.random.default_rng(seed)
    variant = MASK_STRATEGIES[policy_for(organization).mask_strategy]
    base = unit(rng.normal(size=128))
    for p in range(persons):
        person = services.create_person(organization, external_id=f"p{p}")
        centre = unit(base + 0.25 * unit(rng.normal(size=128)))
        services.store_templates(
            organization,
            person,
            [
                services.TemplateData(
                    model_name="dlib_resnet_v1",
                    model_version="v",
                    variant=name,
                    embedding=unit(centre + 0.12 * unit(rng.normal(size=128))),
                    source_sha256=f"{p:02d}{k:02d}".ljust(64, "0"),
                )
                for k in range(photos)
                for name in ("full", variant)
            ],
        )


def _policy_changes(organization) -> list[tuple[VerificationAttempt, dict]]:
    rows = VerificationAttempt.objects.filter(organization=organization, action=Action.POLICY_CHANGE)
    return [(row, event_details(row)["changes"]) for row in rows.order_by("pk")]


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("calibrate_thresholds", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def calibrated_org(make_org):
    organization = make_org("calib-co", "Calib Co")
    _enroll(organization)
    return organization


def test_the_command_prints_current_against_pooled_proposals_and_writes_pictures(calibrated_org, tmp_path):
    before = policy_for(calibrated_org)
    events = len(_policy_changes(calibrated_org))

    text = _run("calib-co", "--far", "1e-4", "--out", str(tmp_path / "out"))

    assert "target FAR 0.0001" in text and "supported FAR" in text and "coarse-to-fine" in text
    assert "unmasked: pooled: 594 own + 1,332,906 reference (unmasked)" in text
    assert "masked: pooled: 594 own" in text and "may be applied" in text
    assert "Nothing changed" in text
    for name in ("roc.png", "histograms.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data[:8] == PNG and len(data) > 5000
    assert "coarse-to-fine" in (tmp_path / "out" / "summary.txt").read_text()
    after = policy_for(calibrated_org)
    assert (after.threshold_unmasked, after.threshold_masked) == (
        before.threshold_unmasked,
        before.threshold_masked,
    )
    assert len(_policy_changes(calibrated_org)) == events


def test_apply_sets_both_thresholds_through_the_service_and_audits_them(calibrated_org, tmp_path):
    before = policy_for(calibrated_org)
    result = calib.calibrate(calibrated_org, before, target_far=1e-4)
    proposed = {d.name: d.proposal.threshold for d in result.distributions}

    text = _run("calib-co", "--far", "1e-4", "--apply", "--out", str(tmp_path))

    after = policy_for(calibrated_org)
    assert after.threshold_unmasked == proposed["unmasked"] >= after.floor_for(masked=False)
    assert after.threshold_masked == proposed["masked"] >= after.floor_for(masked=True)
    assert after.target_far == 1e-4 and "Applied" in text
    row, changes = _policy_changes(calibrated_org)[-1]
    assert changes == {
        "threshold_unmasked": [before.threshold_unmasked, proposed["unmasked"]],
        "threshold_masked": [before.threshold_masked, proposed["masked"]],
        "target_far": [before.target_far, 1e-4],
    }
    assert row.user_id is None  # a management command acts as nobody in particular


def test_apply_refuses_what_the_organizations_pairs_alone_cannot_support(
    calibrated_org, tmp_path, monkeypatch
):
    monkeypatch.setattr(calib, "reference_for", lambda *a, **k: None)  # a model with no shipped reference
    before = policy_for(calibrated_org).threshold_unmasked
    events = len(_policy_changes(calibrated_org))

    with pytest.raises(
        CommandError, match="Nothing applied. Refused: unmasked: 594 impostor pairs cannot support"
    ):
        _run("calib-co", "--far", "1e-4", "--apply", "--only", "unmasked", "--out", str(tmp_path))

    assert policy_for(calibrated_org).threshold_unmasked == before
    assert len(_policy_changes(calibrated_org)) == events


def test_apply_refuses_a_proposal_below_the_models_floor(make_org, tmp_path):
    organization = make_org("spread-co")
    rng = np.random.default_rng(1)
    for p in range(30):  # unrelated random faces: impostor scores near 0, far below dlib's floor
        person = services.create_person(organization, external_id=f"s{p}")
        data = services.TemplateData(
            model_name="dlib_resnet_v1",
            model_version="v",
            variant="full",
            embedding=unit(rng.normal(size=128)),
            source_sha256=sha(f"spread-{p}"),
        )
        services.store_templates(organization, person, [data])
    # Pooled with dlib's reference the proposal stays above the floor, so take the reference away.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(calib, "reference_for", lambda *a, **k: None)
        with pytest.raises(CommandError, match="below the model's floor 0.91"):
            _run("spread-co", "--far", "0.1", "--apply", "--only", "unmasked", "--out", str(tmp_path))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("no-such-org",), "No organization with the slug 'no-such-org'"),
        (("calib-co", "--far", "0"), "--far must lie between 0 and 1"),
        (("calib-co", "--far", "often"), "--far must be a number"),
    ],
)
def test_the_command_refuses_bad_input_with_a_reason(calibrated_org, tmp_path, args, message):
    with pytest.raises(CommandError, match=message):
        _run(*args, "--out", str(tmp_path))


def test_the_default_output_folder_is_named_after_the_organization(calibrated_org, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _run("calib-co")
    [folder] = list(Path(tmp_path).iterdir())
    assert folder.name.startswith("calibration-calib-co-") and (folder / "roc.png").is_file()
