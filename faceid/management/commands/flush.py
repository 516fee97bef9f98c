"""Django's flush, able to empty the append-only audit log of a *test* database.

The audit log's trigger refuses TRUNCATE, and flush truncates every table: without this override
every TransactionTestCase / pytest ``transactional_db`` / ``live_server`` test would fail at
teardown. The guard is lifted only for the flush's own transaction and only in a database whose
name marks it as a test database; anywhere else flush fails on the trigger, which is what an
append-only audit log should do.
"""

from typing import Any

from django.core.management.commands.flush import Command as DjangoFlushCommand
from django.db import connections, transaction
from django.db.backends.base.creation import TEST_DATABASE_PREFIX

from faceid.audit import AUDIT_TABLE, AUDIT_TRIGGER


def _is_test_database(settings_dict: dict[str, Any]) -> bool:
    name = settings_dict.get("NAME") or ""
    return name.startswith(TEST_DATABASE_PREFIX) or name == (settings_dict.get("TEST") or {}).get("NAME")


class Command(DjangoFlushCommand):
    def handle(self, **options: Any) -> None:
        connection = connections[options["database"]]
        if connection.vendor != "postgresql" or not _is_test_database(connection.settings_dict):
            return super().handle(**options)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = to_regclass(%s)",
                [AUDIT_TRIGGER, AUDIT_TABLE],
            )
            guarded = cursor.fetchone() is not None
        if not guarded:
            return super().handle(**options)
        # ALTER TABLE is transactional in PostgreSQL: the trigger is back on when this block ends,
        # whether the flush succeeded or not.
        with transaction.atomic(using=options["database"]):
            with connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {AUDIT_TABLE} DISABLE TRIGGER {AUDIT_TRIGGER}")
            super().handle(**options)
            with connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {AUDIT_TABLE} ENABLE TRIGGER {AUDIT_TRIGGER}")
