import hashlib
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from tenants import roles, services
from tenants.models import ApiKey, Role, Scope


def test_create_returns_the_plaintext_once_and_stores_only_its_sha256(org):
    api_key, plaintext = services.create_api_key(org, name="door 1", scopes=["verify"])

    assert plaintext.startswith(f"fid_{api_key.prefix}_")
    assert len(plaintext.split("_", 2)[2]) >= 40  # 256 random bits
    assert api_key.secret_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    secret = plaintext.split("_", 2)[2]
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(k)::text FROM tenants_apikey k WHERE id = %s", [api_key.pk])
        (row_json,) = cursor.fetchone()
    assert secret not in row_json and plaintext not in row_json
    assert api_key.prefix in row_json  # the visible part is kept in clear


def test_each_key_gets_its_own_prefix_and_secret(org):
    keys = [services.create_api_key(org, name=f"k{i}", scopes=["verify"]) for i in range(5)]
    assert len({k.prefix for k, _ in keys}) == 5
    assert len({p for _, p in keys}) == 5


def test_the_key_authenticates_and_loads_its_organization(org, django_assert_max_num_queries):
    api_key, plaintext = services.create_api_key(org, name="kiosk", scopes=["verify"])

    with django_assert_max_num_queries(2):  # the lookup, and the first last_used_at write
        found = services.authenticate_api_key(plaintext)

    assert found == api_key
    assert found.organization == org


def test_a_wrong_secret_with_a_valid_prefix_fails(org):
    api_key, plaintext = services.create_api_key(org, name="kiosk", scopes=["verify"])
    tampered = plaintext[:-2] + ("aa" if not plaintext.endswith("aa") else "bb")
    assert services.authenticate_api_key(tampered) is None


@pytest.mark.parametrize(
    "candidate",
    [
        None,
        "",
        "fid_",
        "fid__",
        "Bearer fid_abc_def",
        "xyz_abcdefgh_secret",
        "fid_nosuchpx_" + "a" * 43,
        "f" * 500,
    ],
)
def test_malformed_or_unknown_keys_fail(org, candidate):
    services.create_api_key(org, name="kiosk", scopes=["verify"])
    assert services.authenticate_api_key(candidate) is None


def test_a_revoked_key_fails_and_revoking_is_idempotent(org):
    api_key, plaintext = services.create_api_key(org, name="kiosk", scopes=["verify"])

    services.revoke_api_key(org, api_key)
    first_revoked_at = ApiKey.objects.get(pk=api_key.pk).revoked_at
    services.revoke_api_key(org, api_key)

    assert services.authenticate_api_key(plaintext) is None
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at == first_revoked_at
    assert not api_key.has_scope(Scope.VERIFY)


def test_a_key_of_a_deactivated_organization_fails(org):
    _, plaintext = services.create_api_key(org, name="kiosk", scopes=["verify"])
    services.update_organization(org, active=False)
    assert services.authenticate_api_key(plaintext) is None


def test_scopes_are_checked(org):
    api_key, plaintext = services.create_api_key(org, name="kiosk", scopes=["verify", "verify", " identify "])

    found = services.authenticate_api_key(plaintext)

    assert found.scopes == ["identify", "verify"]
    assert found.has_scope(Scope.VERIFY) and found.has_scope(Scope.IDENTIFY)
    assert not found.has_scope(Scope.ENROLL)
    assert not found.has_scope(Scope.AUDIT_READ)


@pytest.mark.parametrize("scopes", [[], ["admin"], ["verify", "delete"]])
def test_unknown_or_missing_scopes_are_refused(org, scopes):
    with pytest.raises(ValidationError):
        services.create_api_key(org, name="kiosk", scopes=scopes)
    assert not ApiKey.objects.exists()


def test_last_used_at_is_set_on_use_and_written_at_most_once_a_minute(org, django_assert_num_queries):
    api_key, plaintext = services.create_api_key(org, name="kiosk", scopes=["verify"])
    assert api_key.last_used_at is None

    services.authenticate_api_key(plaintext)
    first = ApiKey.objects.get(pk=api_key.pk).last_used_at
    assert first is not None

    with django_assert_num_queries(1):  # the lookup only: no write within the interval
        services.authenticate_api_key(plaintext)
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == first

    stale = timezone.now() - timedelta(minutes=5)
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=stale)
    services.authenticate_api_key(plaintext)
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at > stale + timedelta(minutes=4)


def test_roles_map_onto_capabilities_and_scopes():
    assert all(roles.can_enroll(r) and roles.can_verify(r) for r in (Role.OWNER, Role.ADMIN, Role.OPERATOR))
    assert not roles.can_enroll(Role.AUDITOR) and not roles.can_verify(Role.AUDITOR)
    assert roles.can_manage(Role.OWNER) and roles.can_manage(Role.ADMIN)
    assert not roles.can_manage(Role.OPERATOR) and not roles.can_manage(Role.AUDITOR)
    assert all(roles.can_read_audit(r) for r in Role.values)
    assert not roles.can_read_audit(None) and not roles.can_enroll("superhero")
    assert roles.scopes_for_role(Role.AUDITOR) == {Scope.AUDIT_READ}
    assert roles.scopes_for_role(Role.OWNER) == set(Scope.values)
    assert roles.scopes_for_role(None) == frozenset()
