from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from tenants.models import Organization, OrganizationPolicy, Role
from tenants.selectors import membership_for
from tenants.services import authenticate_api_key


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_organization_creates_org_policy_and_owner(db):
    out = _run("create_organization", "acme", "--name", "Acme Inc", "--admin-email", "Boss@Acme.test",
               "--admin-password", "correct-horse-battery-9")  # fmt: skip

    org = Organization.objects.get(slug="acme")
    user = get_user_model().objects.get(username="Boss@acme.test")
    assert org.name == "Acme Inc" and OrganizationPolicy.objects.filter(organization=org).exists()
    assert membership_for(user, org).role == Role.OWNER
    assert user.check_password("correct-horse-battery-9")
    assert not user.is_staff  # the Django admin is cross-tenant: owners do not get it by default
    assert "Created organization 'acme'" in out and "owner" in out


def test_create_organization_refuses_an_existing_slug_unless_asked_not_to(db):
    _run("create_organization", "acme", "--name", "Acme", "--admin-email", "boss@acme.test")
    with pytest.raises(CommandError, match="already exists"):
        _run("create_organization", "acme", "--name", "Acme", "--admin-email", "boss@acme.test")
    out = _run(
        "create_organization", "acme", "--name", "Acme", "--admin-email", "boss@acme.test", "--if-not-exists"
    )
    assert "already exists" in out
    assert Organization.objects.count() == 1


def test_create_organization_reuses_an_existing_user_and_keeps_their_password(db):
    _run("create_organization", "one", "--name", "One", "--admin-email", "boss@x.test",
         "--admin-password", "first-Password-123")  # fmt: skip
    out = _run("create_organization", "two", "--name", "Two", "--admin-email", "boss@x.test",
               "--admin-password", "other-Password-456")  # fmt: skip
    user = get_user_model().objects.get(username="boss@x.test")
    assert user.check_password("first-Password-123") and "password unchanged" in out
    assert user.memberships.count() == 2


def test_create_organization_refuses_a_weak_password_and_leaves_nothing_behind(db):
    with pytest.raises(CommandError, match="password"):
        _run(
            "create_organization",
            "acme",
            "--name",
            "Acme",
            "--admin-email",
            "boss@acme.test",
            "--admin-password",
            "123",
        )
    assert not Organization.objects.exists()
    assert not get_user_model().objects.exists()


def test_create_api_key_prints_the_key_alone_on_the_last_line(org):
    out = _run("create_api_key", org.slug, "--scopes", "verify,enroll,identify", "--name", "door")

    key = out.rstrip("\n").splitlines()[-1]
    assert key == key.strip() and " " not in key
    api_key = authenticate_api_key(key)
    assert api_key.organization == org and api_key.name == "door"
    assert sorted(api_key.scopes) == ["enroll", "identify", "verify"]
    assert api_key.prefix in out.splitlines()[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (("nope", "--scopes", "verify"), "no active organization"),
        (("acme", "--scopes", "verify,root"), "unknown scopes"),
    ],
)
def test_create_api_key_refuses_bad_input(org, args, message):
    with pytest.raises(CommandError, match=message):
        _run("create_api_key", *args)
