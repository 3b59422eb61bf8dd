"""The staff roles as groups: auditors (view only) and tellers (view and command)."""

from __future__ import annotations

from django.db import migrations

VIEW = [
    ("bank", "view_accounts"),
    ("eventstore", "view_event"),
    ("eventstore", "view_snapshot"),
    ("projections", "view_accountbalance"),
    ("projections", "view_transactionhistory"),
    ("projections", "view_checkpoint"),
]
ROLES = {
    "auditors": VIEW,
    "tellers": [*VIEW, ("bank", "issue_command")],
}


def create_roles(apps, schema_editor):
    # On a fresh database the default permissions do not exist yet during migrate (they
    # are created after it): create them first.
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name, wanted in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=name)
        for app_label, codename in wanted:
            group.permissions.add(
                permission_model.objects.get(content_type__app_label=app_label, codename=codename)
            )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("bank", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("eventstore", "0003_stream_occurred_index"),
        ("projections", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
