"""The transaction history carries reversals: a row of kind ``reversal`` per
``PostingReversed``, ``reverses_version`` on it and ``reversed_by_version`` on the posting it
undoes.

Schema only. ``PostingReversed`` arrived in the same release, so no history written by an
earlier one skipped a reversal; a database that followed reversals with a pre-release build
(its history has no ``reversal`` rows although reversals were appended) is put right by
``rebuild_projections transactions``.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("projections", "0003_signed_transaction_amounts")]

    operations = [
        migrations.AddField(
            model_name="transactionhistory",
            name="reverses_version",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="transactionhistory",
            name="reversed_by_version",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="transactionhistory",
            name="kind",
            field=models.CharField(
                choices=[
                    ("opening", "opening balance"),
                    ("deposit", "deposit"),
                    ("withdrawal", "withdrawal"),
                    ("transfer_in", "transfer in"),
                    ("transfer_out", "transfer out"),
                    ("reversal", "reversal"),
                ],
                max_length=20,
            ),
        ),
    ]
