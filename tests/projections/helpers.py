from __future__ import annotations

import eventstore as es
from bank.services import accounts as svc
from projections.models import AccountBalance, TransactionHistory


def balance_rows():
    return sorted(
        AccountBalance.objects.values_list(
            "account_id",
            "holder_name",
            "currency",
            "balance_cents",
            "status",
            "version",
            "opened_at",
            "updated_at",
            "last_position",
        )
    )


def history_rows():
    return sorted(
        TransactionHistory.objects.values_list(
            "account_id",
            "version",
            "kind",
            "amount_cents",
            "balance_after_cents",
            "description",
            "counterparty",
            "transfer_id",
            "actor",
            "occurred_at",
            "position",
        )
    )


def expected_balances():
    """The balances a fresh replay of every account's events gives."""
    ids = {e.stream_id for e in es.read_all(after_position=0, limit=10**9)}
    return {i: (s.balance_cents, s.status, s.version) for i in ids for s in [svc.get_account(i)]}


def read_model_balances():
    return {
        r.account_id: (r.balance_cents, r.status, r.version) for r in AccountBalance.objects.all()
    }
