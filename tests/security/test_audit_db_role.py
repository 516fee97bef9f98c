# ruff: noqa: F811  (the foundation fixtures, imported, are redefined as test parameters)
"""The application's database role can only INSERT and SELECT the audit table: no UPDATE, DELETE,
TRUNCATE, and no disabling of the append-only trigger."""

import pytest
from django.db import DatabaseError, connection, transaction

from faceid import services
from faceid.audit import AUDIT_TABLE, AUDIT_TRIGGER, verify_chain
from faceid.dbrole import APP_ROLE
from faceid.models import Person, VerificationAttempt


@pytest.fixture
def as_app_role(db):
    """Run the test's queries as the application role, as DATABASE_APP_ROLE makes the app do."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"SET ROLE {APP_ROLE}")
    yield
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")


@pytest.mark.parametrize(
    "sql",
    [
        f"UPDATE {AUDIT_TABLE} SET decision = 'accept'",
        f"DELETE FROM {AUDIT_TABLE}",
        f"TRUNCATE {AUDIT_TABLE} CASCADE",
        f"ALTER TABLE {AUDIT_TABLE} DISABLE TRIGGER {AUDIT_TRIGGER}",
        f"ALTER TABLE {AUDIT_TABLE} DISABLE TRIGGER ALL",
        f"DROP TRIGGER {AUDIT_TRIGGER} ON {AUDIT_TABLE}",
        f"ALTER TABLE {AUDIT_TABLE} OWNER TO {APP_ROLE}",
    ],
)
def test_the_app_role_cannot_change_the_audit_table(org, record, as_app_role, sql):
    record(org)  # the role may insert (and read, to chain)
    with pytest.raises(DatabaseError, match="permission denied|must be owner"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql)
    assert VerificationAttempt.objects.filter(organization=org, decision="reject").count() == 1
    assert verify_chain(org).ok


def test_the_app_role_runs_the_application_elsewhere(org, as_app_role):
    person = services.create_person(org, external_id="E-1")
    services.update_person(org, person, external_id="E-2")
    services.erase_person(org, person)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == APP_ROLE
    assert Person.objects.get(pk=person.pk).is_erased
    assert verify_chain(org).ok


@pytest.mark.django_db
def test_database_app_role_makes_new_connections_set_the_role(settings):
    settings.DATABASE_APP_ROLE = APP_ROLE
    other = connection.copy()
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone()[0] == APP_ROLE
    finally:
        other.close()
    settings.DATABASE_APP_ROLE = ""
    plain = connection.copy()
    try:
        with plain.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone()[0] != APP_ROLE
    finally:
        plain.close()
