"""Migration 0003 signs the transaction history's amounts already written (money out < 0)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from bank.services import Actor
from bank.services import accounts as svc
from projections import runner
from projections.models import TransactionHistory
from tests.projections.helpers import history_rows

pytestmark = pytest.mark.django_db(transaction=True)

ACTOR = Actor.system("tests")
BEFORE = [("projections", "0002_unknownevent_deadletter")]
AFTER = [("projections", "0003_signed_transaction_amounts")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def test_rows_written_unsigned_are_signed_and_equal_a_rebuild():
    a = svc.open_account(holder_name="Ann", initial_balance_cents=1000, actor=ACTOR)
    b = svc.open_account(holder_name="Bob", actor=ACTOR)
    svc.withdraw(account_id=a.id, amount_cents=100, actor=ACTOR)
    svc.transfer(from_account=a.id, to_account=b.id, amount_cents=300, actor=ACTOR)
    runner.catch_up()
    rebuilt = history_rows()
    with connection.cursor() as cursor:  # the rows as the release before wrote them
        cursor.execute(
            "UPDATE read_transaction_history SET amount_cents = -amount_cents "
            "WHERE amount_cents < 0"
        )
    _migrate(BEFORE)
    try:
        _migrate(AFTER)
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    assert history_rows() == rebuilt
    signed = dict(
        TransactionHistory.objects.filter(account_id=a.id).values_list("kind", "amount_cents")
    )
    assert signed == {"opening": 1000, "withdrawal": -100, "transfer_out": -300}
