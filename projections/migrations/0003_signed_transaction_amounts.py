"""The transaction history's amounts become signed: money out (withdrawals, outgoing
transfers) is negative, as the admin and its CSV show it, so that each row's
``balance_after_cents`` is the previous row's plus its amount.

Rows written before were all positive; this flips those of money out. Reversible. A
rebuild (``rebuild_projections transactions``) gives the same rows.
"""

from django.db import migrations
from django.db.models import F

MONEY_OUT = ("withdrawal", "transfer_out")


def sign(apps, schema_editor):
    history = apps.get_model("projections", "TransactionHistory")
    history.objects.filter(kind__in=MONEY_OUT, amount_cents__gt=0).update(
        amount_cents=-F("amount_cents")
    )


def unsign(apps, schema_editor):
    history = apps.get_model("projections", "TransactionHistory")
    history.objects.filter(kind__in=MONEY_OUT, amount_cents__lt=0).update(
        amount_cents=-F("amount_cents")
    )


class Migration(migrations.Migration):
    dependencies = [("projections", "0002_unknownevent_deadletter")]

    operations = [migrations.RunPython(sign, unsign, elidable=False)]
