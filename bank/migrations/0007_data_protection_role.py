"""The data_protection role: view accounts and erase a holder's personal data."""

from __future__ import annotations

from django.db import migrations

PERMISSIONS = [
    ("bank", "view_accounts"),
    ("eventstore", "view_event"),
    ("projections", "view_accountbalance"),
    ("projections", "view_transactionhistory"),
    ("bank", "erase_personal_data"),
]


def create_role(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    group, _ = group_model.objects.get_or_create(name="data_protection")
    for app_label, codename in PERMISSIONS:
        group.permissions.add(
            permission_model.objects.get(content_type__app_label=app_label, codename=codename)
        )


def remove_role(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="data_protection").delete()


class Migration(migrations.Migration):
    dependencies = [("bank", "0006_personal_data_keys")]

    operations = [migrations.RunPython(create_role, remove_role)]
