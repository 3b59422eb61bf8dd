"""Database-level immutability: UPDATE, DELETE and TRUNCATE on events and snapshots fail.

Hand-written rather than django-pgtrigger (which installs nothing on SQLite, does not cover
TRUNCATE and can be switched off per session). The PostgreSQL triggers are ENABLE ALWAYS,
so ``session_replication_role = replica`` does not silence them either. Both vendors
raise an integrity error class (``restrict_violation`` / ``RAISE(ABORT)``), which Django
reports as ``IntegrityError``.
"""

from __future__ import annotations

from django.db import migrations

TABLES = ("events", "snapshots")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION eventstore_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Stored events and snapshots never change; append a new event instead.';
END
$$;
"""

PG_TRIGGERS = """
CREATE TRIGGER {table}_refuse_update_delete BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION eventstore_refuse_change();
CREATE TRIGGER {table}_refuse_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore_refuse_change();
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_refuse_update_delete;
ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_refuse_truncate;
"""

PG_DROP = """
DROP TRIGGER IF EXISTS {table}_refuse_update_delete ON {table};
DROP TRIGGER IF EXISTS {table}_refuse_truncate ON {table};
"""

# SQLite has no TRUNCATE: "DELETE FROM t" without WHERE fires the DELETE trigger (the
# truncate optimisation is off when a table has triggers).
SQLITE_TRIGGERS = (
    "CREATE TRIGGER {table}_refuse_update BEFORE UPDATE ON {table} "
    "BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END",
    "CREATE TRIGGER {table}_refuse_delete BEFORE DELETE ON {table} "
    "BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE refused'); END",
)

SQLITE_DROP = (
    "DROP TRIGGER IF EXISTS {table}_refuse_update",
    "DROP TRIGGER IF EXISTS {table}_refuse_delete",
)


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        # params=None: psycopg would read the '%' of RAISE as a placeholder otherwise.
        schema_editor.execute(PG_FUNCTION, params=None)
        for table in TABLES:
            schema_editor.execute(PG_TRIGGERS.format(table=table), params=None)
    elif vendor == "sqlite":
        for table in TABLES:
            for sql in SQLITE_TRIGGERS:
                schema_editor.execute(sql.format(table=table), params=None)
    else:
        raise RuntimeError(f"the event store has no immutability triggers for {vendor}")


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for table in TABLES:
            schema_editor.execute(PG_DROP.format(table=table), params=None)
        schema_editor.execute("DROP FUNCTION IF EXISTS eventstore_refuse_change()", params=None)
    elif vendor == "sqlite":
        for table in TABLES:
            for sql in SQLITE_DROP:
                schema_editor.execute(sql.format(table=table), params=None)


class Migration(migrations.Migration):
    dependencies = [("eventstore", "0001_initial")]

    operations = [migrations.RunPython(install, uninstall)]
