from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import eventstore as es
from bank.domain import Account
from bank.services import accounts as svc
from bank.services.accounts import STREAM_TYPE
from projections.models import AccountBalance, TransactionHistory


def bulk_store(accounts: int, deposits_each: int) -> None:
    """A large store, written straight through the event store in big appends."""
    now = datetime.now(UTC)
    for i in range(accounts):
        account = Account.open(uuid.uuid4(), holder_name=f"Bulk {i}", currency="EUR")
        for _ in range(deposits_each):
            account.deposit(1, "bulk")
        es.append(
            account.id,
            [
                es.NewEvent(event_type=e.event_type, data=e.to_data(), occurred_at=now)
                for e in account.collect_events()
            ],
            stream_type=STREAM_TYPE,
            expected_version=0,
        )


def wait_until(predicate, what, timeout=120):
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


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
            "reverses_version",
            "reversed_by_version",
        )
    )


def expected_balances():
    """The balances a fresh replay of every account's events gives (other streams, such as
    the maker-checker requests', are no accounts)."""
    ids = {
        e.stream_id
        for e in es.read_all(after_position=0, limit=10**9)
        if e.stream_type == STREAM_TYPE
    }
    return {i: (s.balance_cents, s.status, s.version) for i in ids for s in [svc.get_account(i)]}


def read_model_balances():
    return {
        r.account_id: (r.balance_cents, r.status, r.version) for r in AccountBalance.objects.all()
    }
