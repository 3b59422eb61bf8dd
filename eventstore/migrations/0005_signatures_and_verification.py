"""Signatures on events and snapshots, where signing began, and verification records.

The new columns are nullable, so on both vendors they are added in place (no table
rebuild: the immutability triggers and the rows stay as they are). ``signing_epoch`` gets
one row: the first position and snapshot id written after this migration, and how many
events lie below. Everything below is the unsigned segment (README, "Tamper evidence"). The epoch row is as immutable as the events
(the same triggers), and the application role may only read it (config/app_role.sql).
"""

from django.db import migrations, models

PG_TRIGGERS = """
CREATE TRIGGER signing_epoch_refuse_update_delete BEFORE UPDATE OR DELETE ON signing_epoch
    FOR EACH ROW EXECUTE FUNCTION eventstore_refuse_change();
CREATE TRIGGER signing_epoch_refuse_truncate BEFORE TRUNCATE ON signing_epoch
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore_refuse_change();
ALTER TABLE signing_epoch ENABLE ALWAYS TRIGGER signing_epoch_refuse_update_delete;
ALTER TABLE signing_epoch ENABLE ALWAYS TRIGGER signing_epoch_refuse_truncate;
"""
SQLITE_TRIGGERS = (
    "CREATE TRIGGER signing_epoch_refuse_update BEFORE UPDATE ON signing_epoch "
    "BEGIN SELECT RAISE(ABORT, 'signing_epoch is append-only: UPDATE refused'); END",
    "CREATE TRIGGER signing_epoch_refuse_delete BEFORE DELETE ON signing_epoch "
    "BEGIN SELECT RAISE(ABORT, 'signing_epoch is append-only: DELETE refused'); END",
)


def record_epoch(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_TRIGGERS, params=None)
    else:
        for sql in SQLITE_TRIGGERS:
            schema_editor.execute(sql, params=None)
    schema_editor.execute(
        "INSERT INTO signing_epoch (events_from_position, snapshots_from_id, unsigned_events, "
        "created_at) SELECT (SELECT COALESCE(MAX(position), 0) + 1 FROM events), "
        "(SELECT COALESCE(MAX(id), 0) + 1 FROM snapshots), (SELECT COUNT(*) FROM events), "
        "CURRENT_TIMESTAMP",
        params=None,
    )


def forget_epoch(apps, schema_editor):
    # Dropping the table drops its triggers and its row.
    pass


class Migration(migrations.Migration):

    dependencies = [
        ('eventstore', '0004_only_the_indexes_queries_use'),
    ]

    operations = [
        migrations.CreateModel(
            name='SigningEpoch',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('events_from_position', models.BigIntegerField()),
                ('snapshots_from_id', models.BigIntegerField()),
                ('unsigned_events', models.BigIntegerField(default=0)),
                ('created_at', models.DateTimeField()),
            ],
            options={
                'db_table': 'signing_epoch',
            },
        ),
        migrations.CreateModel(
            name='StreamVerification',
            fields=[
                ('stream_id', models.UUIDField(primary_key=True, serialize=False)),
                ('version', models.PositiveIntegerField()),
                ('hash', models.CharField(max_length=64)),
                ('seal_from', models.PositiveIntegerField(default=0)),
                ('verified_at', models.DateTimeField()),
                ('problem_version', models.PositiveIntegerField(blank=True, null=True)),
                ('problem', models.TextField(blank=True)),
                ('snapshot_problem', models.TextField(blank=True)),
            ],
            options={
                'db_table': 'stream_verifications',
            },
        ),
        migrations.CreateModel(
            name='VerificationRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('started_at', models.DateTimeField()),
                ('finished_at', models.DateTimeField()),
                ('full', models.BooleanField()),
                ('ok', models.BooleanField()),
                ('streams', models.BigIntegerField(default=0)),
                ('events', models.BigIntegerField(default=0)),
                ('snapshots', models.BigIntegerField(default=0)),
                ('events_not_rechecked', models.BigIntegerField(default=0)),
                ('head_position', models.BigIntegerField(default=0)),
                ('snapshot_id_reached', models.BigIntegerField(default=0)),
                ('root', models.CharField(blank=True, max_length=64)),
                ('problems', models.JSONField(default=list)),
            ],
            options={
                'db_table': 'verification_runs',
                'ordering': ['-id'],
            },
        ),
        migrations.AddField(
            model_name='event',
            name='key_id',
            field=models.CharField(blank=True, max_length=40, null=True),
        ),
        migrations.AddField(
            model_name='event',
            name='signature',
            field=models.CharField(blank=True, max_length=100, null=True),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='anchor_hash',
            field=models.CharField(blank=True, max_length=64, null=True),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='key_id',
            field=models.CharField(blank=True, max_length=40, null=True),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='signature',
            field=models.CharField(blank=True, max_length=100, null=True),
        ),
        migrations.RunPython(record_epoch, forget_epoch),
    ]
