"""The access log: its table, its immutability triggers, and the auditors' view permission.

The triggers are hand-written like eventstore's 0002: UPDATE, DELETE and
TRUNCATE refused on PostgreSQL (ENABLE ALWAYS, so a replica-mode session is refused too),
UPDATE and DELETE on SQLite; both raise an integrity error class (``IntegrityError``).
"""

from __future__ import annotations

from django.db import migrations, models

TABLE = "bank_access_log"

FIELDS = [
    ("id", models.BigAutoField(primary_key=True, serialize=False)),
    ("at", models.DateTimeField()),
    ("user_id", models.IntegerField(blank=True, null=True)),
    ("username", models.CharField(max_length=150)),
    ("account_id", models.UUIDField()),
    ("action", models.CharField(max_length=40)),
    ("address", models.CharField(blank=True, max_length=45)),
]


def options():
    return {
        "db_table": TABLE,
        "ordering": ["-id"],
        "default_permissions": ("view",),
        "verbose_name": "access log entry",
        "verbose_name_plural": "access log",
        "indexes": [
            models.Index(fields=["account_id", "-id"], name="access_log_account"),
            models.Index(fields=["at"], name="access_log_at"),
        ],
    }


def fields():
    return [(name, field.clone()) for name, field in FIELDS]


PG_FUNCTION = """
CREATE OR REPLACE FUNCTION bank_access_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'The access log never changes; views are only ever added.';
END
$$;
"""

PG_TRIGGERS = f"""
CREATE TRIGGER {TABLE}_refuse_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION bank_access_log_refuse_change();
CREATE TRIGGER {TABLE}_refuse_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION bank_access_log_refuse_change();
ALTER TABLE {TABLE} ENABLE ALWAYS TRIGGER {TABLE}_refuse_update_delete;
ALTER TABLE {TABLE} ENABLE ALWAYS TRIGGER {TABLE}_refuse_truncate;
"""

PG_DROP = f"""
DROP TRIGGER IF EXISTS {TABLE}_refuse_update_delete ON {TABLE};
DROP TRIGGER IF EXISTS {TABLE}_refuse_truncate ON {TABLE};
DROP FUNCTION IF EXISTS bank_access_log_refuse_change();
"""

# SQLite has no TRUNCATE: "DELETE FROM t" without WHERE fires the DELETE trigger.
SQLITE_TRIGGERS = (
    f"CREATE TRIGGER {TABLE}_refuse_update BEFORE UPDATE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: UPDATE refused'); END",
    f"CREATE TRIGGER {TABLE}_refuse_delete BEFORE DELETE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: DELETE refused'); END",
)

SQLITE_DROP = (
    f"DROP TRIGGER IF EXISTS {TABLE}_refuse_update",
    f"DROP TRIGGER IF EXISTS {TABLE}_refuse_delete",
)


def install_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        # params=None: psycopg would read the '%' of RAISE as a placeholder otherwise.
        schema_editor.execute(PG_FUNCTION, params=None)
        schema_editor.execute(PG_TRIGGERS, params=None)
    elif vendor == "sqlite":
        for sql in SQLITE_TRIGGERS:
            schema_editor.execute(sql, params=None)
    else:
        raise RuntimeError(f"the access log has no immutability triggers for {vendor}")


def uninstall_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_DROP, params=None)
    elif vendor == "sqlite":
        for sql in SQLITE_DROP:
            schema_editor.execute(sql, params=None)


def grant_auditors(apps, schema_editor):
    # The model's view permission does not exist yet during migrate on a fresh database.
    from django.contrib.auth.management import create_permissions

    # Also called by the tests (with the global registry) after a flush emptied the groups.
    app_config = apps.get_app_config("bank")
    models_module = getattr(app_config, "models_module", None)  # a stub's has none yet
    app_config.models_module = models_module or True
    try:
        create_permissions(app_config, apps=apps, verbosity=0)
    finally:
        app_config.models_module = models_module
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    permission = permission_model.objects.get(
        content_type__app_label="bank", codename="view_accesslogentry"
    )
    group, _ = group_model.objects.get_or_create(name="auditors")
    group.permissions.add(permission)


def revoke_auditors(apps, schema_editor):
    permission_model = apps.get_model("auth", "Permission")
    permission_model.objects.filter(
        content_type__app_label="bank", codename="view_accesslogentry"
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("bank", "0002_staff_roles")]

    operations = [
        migrations.CreateModel(name="AccessLogEntry", fields=fields(), options=options()),
        migrations.RunPython(install_triggers, uninstall_triggers),
        migrations.RunPython(grant_auditors, revoke_auditors),
    ]
