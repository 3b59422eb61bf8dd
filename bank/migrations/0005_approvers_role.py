"""The approvers role: view everything tellers see, and decide maker-checker requests."""

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
APPROVERS = [*VIEW, ("bank", "view_approvalrequest"), ("bank", "decide_approval")]
# Tellers and auditors see the queue (what waits, and what was decided) but decide nothing.
QUEUE_VIEWERS = ("tellers", "auditors")


def create_role(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")

    def permission(app_label, codename):
        return permission_model.objects.get(
            content_type__app_label=app_label, codename=codename
        )

    group, _ = group_model.objects.get_or_create(name="approvers")
    for app_label, codename in APPROVERS:
        group.permissions.add(permission(app_label, codename))
    for name in QUEUE_VIEWERS:
        for viewer in group_model.objects.filter(name=name):
            viewer.permissions.add(permission("bank", "view_approvalrequest"))


def remove_role(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="approvers").delete()


class Migration(migrations.Migration):
    dependencies = [("bank", "0004_approval_requests")]

    operations = [migrations.RunPython(create_role, remove_role)]
