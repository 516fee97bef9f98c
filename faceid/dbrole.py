"""The database role the application runs as (settings.DATABASE_APP_ROLE), and the role's grants.

Migration 0006 creates a NOLOGIN role ``faceid_app`` that may SELECT, INSERT, UPDATE and DELETE the
application's tables but only SELECT and INSERT the audit table, which it does not own (its owner is
the role the migrations run as). With DATABASE_APP_ROLE set, every new connection of the process
runs ``SET ROLE`` to it, so the application's own SQL cannot UPDATE, DELETE or TRUNCATE audit rows,
nor disable the append-only trigger (ALTER TABLE needs the owner). Migrations run as the login role:
the pre_migrate signal resets the role on the connection that migrates.

What this does not protect against: the connection's login role is still the owner, and any code
running in the process can ``RESET ROLE``. The separation holds against the application's own
queries (a bug, an injected SQL fragment that cannot run a second statement), not against code
execution in the process. A deployment gets the real separation by giving the application its own
LOGIN role with these grants (see the README), and keeping the owner's credentials for migrations.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.backends.signals import connection_created
from django.db.models.signals import pre_migrate

APP_ROLE = "faceid_app"


def _quoted(connection: Any, role: str) -> str:
    return connection.ops.quote_name(role)


def on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    role = getattr(settings, "DATABASE_APP_ROLE", "") or ""
    if not role or connection.vendor != "postgresql" or getattr(connection, "_faceid_owner", False):
        return
    with connection.cursor() as cursor:
        # Before migration 0006 the role may not exist yet (a fresh database being migrated).
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cursor.fetchone() is not None:
            cursor.execute(f"SET ROLE {_quoted(connection, role)}")


def on_pre_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    from django.db import connections

    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    # Migrations run as the login role, which owns the tables; later connections of this process too.
    connection._faceid_owner = True
    if connection.connection is not None:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")


def connect() -> None:
    """Called once by faceid.apps.FaceidConfig.ready()."""
    connection_created.connect(on_connection_created, dispatch_uid="faceid.dbrole.connection_created")
    pre_migrate.connect(on_pre_migrate, dispatch_uid="faceid.dbrole.pre_migrate")
