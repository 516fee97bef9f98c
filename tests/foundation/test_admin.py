import csv
import io

import pytest
from django.urls import reverse

from faceid.models import VerificationAttempt


@pytest.fixture
def attempts(org, make_person, make_api_key, record):
    person = make_person(org, external_id="E-1", display_name="Ann Smith")
    api_key, _ = make_api_key(org)
    return [
        record(org, claimed_person=person, api_key=api_key, reason="=HYPERLINK(evil)"),
        record(org, decision="accept", claimed_person=person, masked=True, mask_probability=0.97),
    ]


def test_audit_changelist_filters_and_searches(admin_client, attempts):
    url = reverse("admin:faceid_verificationattempt_changelist")
    assert admin_client.get(url).status_code == 200
    queries = [
        "decision__exact=accept",
        "masked__exact=1",
        "mode__exact=verify",
        "q=E-1",
        "q=Ann",
        f"api_key__id__exact={attempts[0].api_key_id}",
        f"created_at__year={attempts[0].created_at.year}",
    ]
    for query in queries:
        response = admin_client.get(f"{url}?{query}")
        assert response.status_code == 200, query  # an unknown filter would redirect to ?e=1
        assert response.context["cl"].result_count >= 1, query


def test_audit_rows_cannot_be_added_changed_or_deleted_in_the_admin(admin_client, attempts):
    attempt = attempts[0]
    assert admin_client.get(reverse("admin:faceid_verificationattempt_add")).status_code == 403
    change_url = reverse("admin:faceid_verificationattempt_change", args=[attempt.pk])
    view = admin_client.get(change_url)
    assert view.status_code == 200 and b"Save" not in view.content  # view-only page
    assert admin_client.post(change_url, {"decision": "accept"}).status_code == 403
    delete_url = reverse("admin:faceid_verificationattempt_delete", args=[attempt.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    changelist = admin_client.get(reverse("admin:faceid_verificationattempt_changelist"))
    assert b"delete_selected" not in changelist.content
    assert VerificationAttempt.objects.get(pk=attempt.pk).decision == "reject"


def test_audit_csv_export_action(admin_client, attempts):
    response = admin_client.post(
        reverse("admin:faceid_verificationattempt_changelist"),
        {"action": "export_csv", "_selected_action": [a.pk for a in attempts]},
    )
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["id"] for r in rows] == [str(a.pk) for a in attempts]
    assert rows[0]["claimed_external_id"] == "E-1" and rows[1]["decision"] == "accept"
    assert rows[0]["reason"] == "'=HYPERLINK(evil)"  # no formula injection into spreadsheets
    assert rows[0]["api_key"] == attempts[0].api_key.prefix


def test_template_admin_never_shows_embeddings(admin_client, org, make_person, make_template, random_vector):
    vector = random_vector()
    template = make_template(org, make_person(org), vector=vector)
    needle = f"{float(vector[0]):.5f}"[:7].encode()
    for url in (
        reverse("admin:faceid_facetemplate_changelist"),
        reverse("admin:faceid_facetemplate_change", args=[template.pk]),
        reverse("admin:faceid_person_change", args=[template.person_id]),
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert b"embedding" not in response.content.lower().replace(b"embedding model", b"")
        assert needle not in response.content


def test_api_keys_are_not_created_or_deleted_in_the_admin(admin_client, org, make_api_key):
    api_key, _ = make_api_key(org)
    assert admin_client.get(reverse("admin:tenants_apikey_add")).status_code == 403
    assert (
        admin_client.post(
            reverse("admin:tenants_apikey_delete", args=[api_key.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    response = admin_client.post(
        reverse("admin:tenants_apikey_changelist"), {"action": "revoke", "_selected_action": [api_key.pk]}
    )
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None


def test_organization_admin_pages_render(admin_client, org):
    assert admin_client.get(reverse("admin:tenants_organization_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:tenants_organization_change", args=[org.pk])).status_code == 200
    assert admin_client.get(reverse("admin:tenants_organization_add")).status_code == 200
