"""The application's database role (faceid.dbrole): INSERT and SELECT only on the audit table.

Creates the NOLOGIN role ``faceid_app`` when the migrating role may (superuser or CREATEROLE; roles
belong to the whole cluster, so several databases share it), grants it the usual rights on every
table and sequence of the schema, now and for the tables later migrations create, and takes back
UPDATE, DELETE, TRUNCATE, REFERENCES and TRIGGER on the audit table. The audit table stays owned by
the migrating role. Without the right to create roles the migration says so (NOTICE) and skips; a
deployment then creates the role itself (README, Security).
"""

from django.db import migrations

FORWARD = """
DO $$
DECLARE
    may_create boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'faceid_app') THEN
        SELECT rolsuper OR rolcreaterole INTO may_create FROM pg_roles WHERE rolname = current_user;
        IF NOT may_create THEN
            RAISE NOTICE 'role faceid_app does not exist and % may not create it: grants skipped',
                current_user;
            RETURN;
        END IF;
        BEGIN
            CREATE ROLE faceid_app NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by a migration of another database of the cluster
        END;
    END IF;
    -- SET ROLE needs membership unless the login role is a superuser.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT faceid_app TO %I', current_user);
    END IF;
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO faceid_app', current_database());
    GRANT USAGE ON SCHEMA public TO faceid_app;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO faceid_app;
    GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO faceid_app;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public
        GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO faceid_app;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO faceid_app;
    REVOKE ALL ON faceid_verificationattempt FROM faceid_app;
    GRANT SELECT, INSERT ON faceid_verificationattempt TO faceid_app;
    REVOKE ALL ON faceid_verificationattempt FROM PUBLIC;
END
$$;
"""

REVERSE = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'faceid_app') THEN
        ALTER DEFAULT PRIVILEGES IN SCHEMA public
            REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM faceid_app;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE, SELECT, UPDATE ON SEQUENCES FROM faceid_app;
        REVOKE ALL ON ALL TABLES IN SCHEMA public FROM faceid_app;
        REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM faceid_app;
        REVOKE ALL ON SCHEMA public FROM faceid_app;
        EXECUTE format('REVOKE ALL ON DATABASE %I FROM faceid_app', current_database());
    END IF;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("faceid", "0005_audit_events")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
