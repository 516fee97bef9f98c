"""The audit log refuses UPDATE, DELETE and TRUNCATE at the database level.

The ORM refuses them too (faceid.models); this trigger covers raw SQL, other clients and bugs.
A superuser or the table owner can still disable it: tamper evidence (the hash chain, see
faceid.audit) is what catches that.
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION faceid_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'faceid_verificationattempt is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit rows are written once, by faceid.services.record_attempt, and never changed';
END;
$$;

CREATE TRIGGER faceid_attempt_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON faceid_verificationattempt
    FOR EACH STATEMENT EXECUTE FUNCTION faceid_audit_refuse_change();
"""

REVERSE = """
DROP TRIGGER IF EXISTS faceid_attempt_append_only ON faceid_verificationattempt;
DROP FUNCTION IF EXISTS faceid_audit_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [("faceid", "0002_pgvector_storage_and_indexes")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
