"""faceid.calibration: pair scores, thresholds for a target FAR on its pairs, proposals, plots."""

from __future__ import annotations

import numpy as np
import pytest

from faceid import calibration as calib
from faceid import calibration_plots
from inference.thresholds import far_at, roc_points, threshold_for_far


def test_pair_scores_split_genuine_and_impostor_and_skip_same_photo():
    persons = np.array([1, 1, 1, 2])
    sources = np.array(["a", "a", "b", "c"], dtype=object)
    vectors = np.array([[1, 0], [1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32)
    genuine, impostor = calib.pair_scores(persons, sources, vectors)
    assert np.allclose(sorted(genuine), [0.8, 0.8])  # (0,2), (1,2); (0,1) share a photo
    assert np.allclose(sorted(impostor), [0.0, 0.0, 0.6])


@pytest.mark.parametrize("target", [0.1, 0.01, 0.001])
def test_threshold_search_finds_the_lowest_threshold_meeting_the_target(target):
    rng = np.random.default_rng(1)
    impostor = rng.normal(0.1, 0.12, size=20_000)
    t = threshold_for_far(impostor, target)
    assert far_at(impostor, t) <= target
    assert far_at(impostor, t - 2e-4) > target  # within the last grid step of the optimum
    exact = np.sort(impostor)[::-1][int(np.floor(target * impostor.size))]  # k+1-th highest score
    assert abs(t - exact) <= 2e-4


def test_proposal_says_when_the_far_cannot_be_measured():
    impostor = np.linspace(-0.2, 0.5, 50)
    genuine = np.linspace(0.6, 0.95, 20)
    proposal = calib.propose(genuine, impostor, 0.001)
    assert not proposal.resolved and "50 impostor pairs" in proposal.note
    assert proposal.threshold > 0.5 and proposal.far == 0.0 and proposal.tar == 1.0
    assert calib.propose(genuine, np.empty(0), 0.01).threshold is None


def test_plots_are_png():
    dist = calib.Distribution(
        "unmasked", "full", np.linspace(0.6, 0.95, 30), np.linspace(-0.2, 0.6, 300), 5, 15, 0.82
    )
    dist.proposal = calib.propose(dist.genuine, dist.impostor, 0.01)
    empty = calib.Distribution("masked", "masked_synthetic", np.empty(0), np.empty(0), 0, 0, 0.78)
    cal = calib.Calibration("dlib_resnet_v1", 0.01, [dist, empty])
    for png in (calibration_plots.histogram_png(cal), calibration_plots.roc_png(cal)):
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    far, tar = roc_points(dist.genuine, dist.impostor)
    assert far[0] == 1.0 and tar[0] == 1.0 and far[-1] == 0.0 and tar[-1] == 0.0


# --- sample sufficiency and floors (issue 10, item 4) ---------------------------------------------


def test_a_proposal_needs_three_impostor_pairs_per_one_over_the_target_far():
    rng = np.random.default_rng(2)
    genuine = rng.uniform(0.95, 0.99, 50)
    assert calib.impostor_pairs_needed(0.001) == 3000 and calib.impostor_pairs_needed(0.01) == 300
    short = calib.propose(genuine, rng.uniform(0.5, 0.92, 2999), 0.001, floor=0.91)
    assert not short.applicable and "2999 impostor pairs cannot support a FAR of 0.001" in short.refusal
    enough = calib.propose(genuine, rng.uniform(0.5, 0.92, 3000), 0.001, floor=0.91)
    assert enough.applicable and enough.refusal == "" and enough.threshold >= 0.91


def test_the_reviewed_case_252_impostor_pairs_proposing_029_is_refused_twice_over():
    impostor = np.linspace(-0.3, 0.2899, 252)
    proposal = calib.propose(np.linspace(0.6, 0.9, 30), impostor, 0.001, floor=0.91)
    assert proposal.threshold == 0.29 and not proposal.applicable
    assert "252 impostor pairs" in proposal.refusal and "below the model's floor 0.91" in proposal.refusal


def test_a_proposal_below_the_floor_is_refused_even_with_enough_pairs():
    impostor = np.random.default_rng(3).normal(0.1, 0.1, 5000)
    proposal = calib.propose(np.linspace(0.6, 0.9, 30), impostor, 0.01, floor=0.91)
    assert proposal.threshold < 0.91
    assert proposal.refusal == f"{proposal.threshold:.4f} is below the model's floor 0.91"
    assert calib.propose(np.linspace(0.6, 0.9, 30), impostor, 0.01).applicable  # no floor given


# --- pooled with the model's reference impostor distribution (issue 11, item 8) ---------------------


def test_pooling_with_the_shipped_reference_proposes_a_safer_threshold_than_the_few_own_pairs():
    from inference.openset import load_references

    reference = load_references("dlib_resnet_v1")["unmasked"]
    rng = np.random.default_rng(5)
    impostor = rng.normal(0.80, 0.03, 300)  # a small organization: 300 pairs, none above 0.92
    genuine = rng.uniform(0.96, 0.995, 40)
    alone = calib.propose(genuine, impostor, 1e-4, floor=0.91)
    pooled = calib.propose(genuine, impostor, 1e-4, floor=0.91, reference=reference)

    assert not alone.applicable and "300 impostor pairs cannot support" in alone.refusal
    assert pooled.applicable and pooled.pooled and pooled.pairs == 300 + reference.n
    assert pooled.threshold > alone.threshold + 0.02  # the reference's tail, not the 300 pairs' maximum
    assert pooled.threshold == pytest.approx(reference.threshold_for_far(1e-4).threshold, abs=2e-4)
    assert pooled.far <= 1e-4 and pooled.organization_threshold == alone.threshold
    assert pooled.supported_far == pytest.approx(1 / pooled.pairs)


def test_a_far_of_zero_is_reported_as_below_the_smallest_supported_far():
    proposal = calib.propose(np.linspace(0.6, 0.95, 20), np.linspace(-0.2, 0.5, 50), 0.001)
    assert proposal.far == 0.0 and proposal.supported_far == 1 / 50
    assert proposal.far_text == "< 0.02"
    measured = calib.propose(np.linspace(0.6, 0.95, 20), np.linspace(-0.2, 0.5, 5000), 0.01)
    assert measured.far_text == f"{measured.far:.3g}" and measured.far > 0


def test_the_proposal_carries_the_coarse_to_fine_search_within_a_fine_cell_of_the_exact_answer():
    rng = np.random.default_rng(6)
    proposal = calib.propose(rng.normal(0.7, 0.1, 500), rng.normal(0.2, 0.1, 20_000), 0.001)
    comparison = proposal.comparison
    assert 0.0 <= comparison.difference <= 0.001 + 1e-12 and comparison.search.far <= 0.001
    assert proposal.threshold == pytest.approx(comparison.exact_threshold, abs=1e-4)


PASSWORD = "Str0ng-pass-phrase!"


def _console(tenant):
    from django.test import Client

    from tenants.models import Role

    user = tenant.user("admin@example.com", Role.ADMIN)
    client = Client()
    assert client.login(username="admin@example.com", password=PASSWORD)
    return client, user


def _close_templates(tenant, persons=12, photos=3, spread=0.25, seed=0):
    """Persons whose full-face templates are all close (impostor pairs near 0.93-0.95): a proposal
    above dlib's floor, with 594 impostor pairs."""
    from faceid import services

    rng = np.random.default_rng(seed)

    def unit(v):
        return v / np.linalg.norm(v)

    base = unit(rng.normal(size=128))
    for p in range(persons):
        person = services.create_person(tenant.organization, external_id=f"close-{p}")
        centre = unit(base + spread * unit(rng.normal(size=128)))
        data = [
            services.TemplateData(
                model_name="dlib_resnet_v1",
                model_version="v",
                variant="full",
                embedding=unit(centre + 0.12 * unit(rng.normal(size=128))),
                source_sha256=f"{p:02d}{k:02d}".ljust(64, "0"),
            )
            for k in range(photos)
        ]
        services.store_templates(tenant.organization, person, data)


def _policy_events(organization):
    from faceid.events import Action, event_details
    from faceid.models import VerificationAttempt

    rows = VerificationAttempt.objects.filter(organization=organization, action=Action.POLICY_CHANGE)
    return [(row, event_details(row)["changes"]) for row in rows.order_by("pk")]


@pytest.mark.django_db
def test_the_console_refuses_to_apply_a_proposal_the_sample_cannot_support(tenant, monkeypatch):
    from tenants.selectors import policy_for

    # A model without a shipped reference distribution: the organization's own 594 pairs alone.
    monkeypatch.setattr(calib, "reference_for", lambda *a, **k: None)
    _close_templates(tenant)
    client, _ = _console(tenant)
    page = client.get("/console/policy/calibration/").content.decode()
    assert "Cannot apply: 594 impostor pairs cannot support a FAR of 0.001" in page
    assert 'name="apply_unmasked"' not in page
    before = policy_for(tenant.organization).threshold_unmasked
    events = len(_policy_events(tenant.organization))  # the organization's creation wrote one

    # Posted anyway (a stale page, a crafted form): refused on the server.
    response = client.post("/console/policy/calibration/", {"apply": "1", "apply_unmasked": "1"}, follow=True)

    assert "Nothing applied. Refused: unmasked: 594 impostor pairs" in response.content.decode()
    assert policy_for(tenant.organization).threshold_unmasked == before
    assert len(_policy_events(tenant.organization)) == events


@pytest.mark.django_db
def test_the_console_applies_a_supported_proposal_and_audits_it(tenant):
    from tenants.selectors import policy_for
    from tenants.services import update_policy

    _close_templates(tenant)
    update_policy(tenant.organization, target_far=0.01)  # 594 pairs >= 300
    client, user = _console(tenant)
    page = client.get("/console/policy/calibration/").content.decode()
    assert 'name="apply_unmasked"' in page

    response = client.post("/console/policy/calibration/", {"apply": "1", "apply_unmasked": "1"}, follow=True)

    assert "Applied: threshold_unmasked" in response.content.decode()
    threshold = policy_for(tenant.organization).threshold_unmasked
    assert 0.91 <= threshold != 0.92
    row, changes = _policy_events(tenant.organization)[-1]
    assert changes == {"threshold_unmasked": [0.92, threshold]} and row.user_id == user.pk


@pytest.mark.django_db
def test_the_console_policy_page_shows_the_floor_refuses_below_it_and_audits_a_change(tenant):
    from tenants.forms import PolicyForm
    from tenants.selectors import policy_for

    client, user = _console(tenant)
    page = client.get("/console/policy/").content.decode()
    assert "dlib_resnet_v1 0.91" in page and "dlib_resnet_v1 0.95" in page
    assert 'name="reveal_scores_on_reject"' in page
    form = PolicyForm(instance=policy_for(tenant.organization))
    data = {
        k: ("on" if v is True else v) for k, v in form.initial.items() if v is not None and v is not False
    }

    refused = client.post("/console/policy/", {**data, "threshold_unmasked": "0.5"})
    assert (
        refused.status_code == 200 and "below the floor of dlib_resnet_v1 (0.91)" in refused.content.decode()
    )
    assert policy_for(tenant.organization).threshold_unmasked == 0.92  # tests/portraits.py's value

    assert client.post("/console/policy/", {**data, "threshold_unmasked": "0.93"}).status_code == 302
    [(row, changes)] = [e for e in _policy_events(tenant.organization) if e[0].user_id == user.pk]
    assert changes == {"threshold_unmasked": [0.92, 0.93]} and row.client_ip == "127.0.0.1"


@pytest.mark.django_db
def test_the_console_pools_the_reference_and_shows_the_basis_supported_far_and_search(tenant):
    from tenants.selectors import policy_for

    _close_templates(tenant)  # the same 594 pairs, on dlib_resnet_v1, which ships a reference
    client, _ = _console(tenant)
    page = client.get("/console/policy/calibration/").content.decode()
    result = calib.calibrate(tenant.organization, policy_for(tenant.organization))
    unmasked = result.by_name("unmasked")
    proposal = unmasked.proposal
    assert proposal.pooled and proposal.pairs == 594 + unmasked.reference.n
    assert f"pooled: 594 own + {unmasked.reference.n:,} reference (unmasked)" in page
    assert f"{proposal.supported_far:.2g}" in page and 'id="calibration-search"' in page
    assert proposal.applicable and 'name="apply_unmasked"' in page  # the pooled sample supports 0.001
    # The pooled threshold is at least what the organization's own pairs alone would give.
    assert proposal.threshold >= proposal.organization_threshold
    assert proposal.far <= 0.001 and proposal.organization_far <= 0.001
    assert f"{proposal.comparison.search.threshold:.3f}" in page
