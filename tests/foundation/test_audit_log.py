import threading

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction

from faceid import audit
from faceid.audit import AUDIT_TABLE, GENESIS_HASH, compute_row_hash, verify_chain
from faceid.models import AuditLogIsAppendOnly, VerificationAttempt
from tests.plugins.factories import tamper


def test_record_attempt_chains_rows_per_organization(org, other_org, record):
    first = record(org)
    second = record(org, decision="accept", similarity=0.93)
    elsewhere = record(other_org)

    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.seq, second.prev_hash) == (2, first.row_hash)
    assert (elsewhere.seq, elsewhere.prev_hash) == (1, GENESIS_HASH)
    for row in VerificationAttempt.objects.all():
        assert row.row_hash == compute_row_hash(row)


def test_every_column_except_id_and_row_hash_is_hashed():
    columns = {f.attname for f in VerificationAttempt._meta.concrete_fields}
    assert set(audit.HASHED_FIELDS) == columns - {"id", "row_hash"}


def test_the_orm_refuses_to_change_or_delete_audit_rows(org, record):
    attempt = record(org)

    attempt.decision = "accept"
    with pytest.raises(AuditLogIsAppendOnly):
        attempt.save()
    with pytest.raises(AuditLogIsAppendOnly):
        attempt.delete()
    qs = VerificationAttempt.objects.filter(pk=attempt.pk)
    with pytest.raises(AuditLogIsAppendOnly):
        qs.update(decision="accept")
    with pytest.raises(AuditLogIsAppendOnly):
        qs.delete()
    with pytest.raises(AuditLogIsAppendOnly):
        VerificationAttempt.objects.bulk_update([attempt], ["decision"])
    with pytest.raises(AuditLogIsAppendOnly):
        VerificationAttempt.objects.update_or_create(pk=attempt.pk, defaults={"decision": "accept"})

    assert VerificationAttempt.objects.get(pk=attempt.pk).decision == "reject"


def test_the_orm_refuses_audit_rows_written_around_record_attempt(org):
    with pytest.raises(AuditLogIsAppendOnly):
        VerificationAttempt.objects.create(organization=org, mode="verify", decision="accept", seq=1)
    with pytest.raises(AuditLogIsAppendOnly):
        VerificationAttempt.objects.bulk_create(
            [VerificationAttempt(organization=org, mode="verify", decision="accept")]
        )
    assert not VerificationAttempt.objects.exists()


@pytest.mark.parametrize(
    "sql",
    [
        f"UPDATE {AUDIT_TABLE} SET decision = 'accept'",
        f"DELETE FROM {AUDIT_TABLE}",
        f"TRUNCATE {AUDIT_TABLE} CASCADE",
    ],
)
def test_the_database_refuses_update_delete_and_truncate(org, record, sql):
    record(org)
    with connection.cursor() as cursor:
        # Django's foreign keys are deferred; TRUNCATE refuses to run while their checks are pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    assert VerificationAttempt.objects.filter(organization=org, decision="reject").count() == 1


def test_verify_chain_accepts_an_untouched_chain_of_varied_rows(
    org, make_person, make_api_key, make_user, record
):
    person = make_person(org, display_name="Zoë Ñúñez")
    api_key, _ = make_api_key(org)
    user = make_user(org)
    record(org, claimed_person=person, api_key=api_key, client_ip="2001:DB8::0001", similarity=0.1)
    record(org, claimed_person=person, user=user, client_ip="::ffff:10.1.2.3", similarity=np.float32(0.8125))
    record(org, mode="identify", decision="accept", matched_person=person, similarity=1 / 3, threshold=None)
    record(org, decision="no_face", similarity=None, threshold=None, masked=None, reason="ünïcødé \x00 and ☃")
    record(
        org, decision="error", similarity=float("nan"), latency_ms=12.5, client_ip="not an ip", masked=True
    )

    report = verify_chain(org)

    assert report.ok, report
    # Five attempts and the API key's creation (an audited event since issue 10).
    assert report.checked == 6 and report.head_seq == 6
    assert report.head_hash == VerificationAttempt.objects.get(organization=org, seq=6).row_hash


def test_a_row_altered_in_sql_is_reported_as_the_first_broken_link(org, other_org, record):
    rows = [record(org) for _ in range(5)]
    record(other_org)

    tamper(f"UPDATE {AUDIT_TABLE} SET decision = 'accept', similarity = 0.99 WHERE id = %s", [rows[2].pk])
    report = verify_chain(org)

    assert not report.ok
    assert (report.first_broken_id, report.first_broken_seq, report.checked) == (rows[2].pk, 3, 2)
    assert "altered" in report.reason
    assert verify_chain(other_org).ok  # another organization's chain is independent


def test_an_altered_row_with_a_recomputed_hash_breaks_the_next_link(org, record):
    rows = [record(org) for _ in range(4)]
    forged = VerificationAttempt.objects.get(pk=rows[1].pk)
    forged.decision = "accept"
    forged_hash = compute_row_hash(forged)

    tamper(
        f"UPDATE {AUDIT_TABLE} SET decision = 'accept', row_hash = %s WHERE id = %s",
        [forged_hash, rows[1].pk],
    )
    report = verify_chain(org)

    assert (report.ok, report.first_broken_id) == (False, rows[2].pk)
    assert "prev_hash" in report.reason


def test_a_row_deleted_in_sql_is_reported(org, record):
    rows = [record(org) for _ in range(4)]
    tamper(f"DELETE FROM {AUDIT_TABLE} WHERE id = %s", [rows[1].pk])

    report = verify_chain(org)

    assert (report.ok, report.first_broken_id, report.checked) == (False, rows[2].pk, 1)
    assert "sequence gap" in report.reason


def test_verify_audit_chain_command_prints_the_result_and_fails_on_a_break(org, record, capsys):
    rows = [record(org) for _ in range(3)]
    call_command("verify_audit_chain", org.slug)
    assert "acme: OK: 3 rows verified" in capsys.readouterr().out

    tamper(f"UPDATE {AUDIT_TABLE} SET reason = 'nothing to see' WHERE id = %s", [rows[1].pk])
    with pytest.raises(CommandError) as excinfo:
        call_command("verify_audit_chain", org.slug)

    assert excinfo.value.returncode == 1
    assert f"BROKEN at attempt id {rows[1].pk} (seq 2)" in capsys.readouterr().out


def test_verify_audit_chain_command_refuses_an_unknown_organization(db):
    with pytest.raises(CommandError, match="no organization: nope"):
        call_command("verify_audit_chain", "nope")


def test_record_attempt_snapshots_the_claimed_external_id_and_refuses_unknown_values(
    org, make_person, record
):
    person = make_person(org, external_id="E-77")
    assert record(org, claimed_person=person).claimed_external_id == "E-77"
    assert record(org, claimed_external_id="ghost").claimed_person is None
    with pytest.raises(ValueError):
        record(org, decision="maybe")
    with pytest.raises(ValueError):
        record(org, mode="guess")


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_the_chain_linear(make_org):
    org = make_org("busy")
    writers, per_writer = 4, 8
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(per_writer):
                audit_services.record_attempt(org, mode="verify", decision="reject", similarity=0.2)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert not errors, errors
    report = verify_chain(org)
    assert report.ok and report.checked == writers * per_writer
    seqs = list(
        VerificationAttempt.objects.filter(organization=org).order_by("seq").values_list("seq", flat=True)
    )
    assert seqs == list(range(1, writers * per_writer + 1))


from faceid import services as audit_services  # noqa: E402  (kept near its single use)
