"""The account read models: balances (one row per account) and transaction history."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Sequence

from django.db.models import OuterRef, Subquery

from eventstore import RecordedEvent

from .base import Projection, ProjectionError, insert_rows
from .models import AccountBalance, TransactionHistory

STREAM_TYPE = "bank.account"

_DELTA_SIGN = {
    "MoneyDeposited": 1,
    "TransferReceived": 1,
    "MoneyWithdrawn": -1,
    "TransferSent": -1,
}


def search_key(text: str) -> str:
    """How holder names are matched: NFC-normalised and case-folded."""
    return unicodedata.normalize("NFC", text).casefold()


_STATUS = {"AccountFrozen": "frozen", "AccountUnfrozen": "active", "AccountClosed": "closed"}
_KIND = {
    "MoneyDeposited": "deposit",
    "MoneyWithdrawn": "withdrawal",
    "TransferReceived": "transfer_in",
    "TransferSent": "transfer_out",
}


def _gap(projection: str, event: RecordedEvent, have: int) -> ProjectionError:
    return ProjectionError(
        f"projection {projection}: event at position {event.position} is version "
        f"{event.version} of {event.stream_id}, but the read model has version {have}; "
        "an event is missing: rebuild the projection (rebuild_projections "
        f"{projection}) and check verify_events"
    )


class BalanceProjection(Projection):
    name = "balances"
    models = (AccountBalance,)
    _fields = ("holder_name", "balance_cents", "status", "version", "updated_at", "last_position")

    def handle(self, events: Sequence[RecordedEvent]) -> None:
        relevant = [e for e in events if e.stream_type == STREAM_TYPE]
        if not relevant:
            return
        # Keyed by the ids' integers: a UUID hashes in Python, at every lookup.
        ids = {e.stream_id.int: e.stream_id for e in relevant}
        rows: dict[int, AccountBalance] = {
            row.account_id.int: row
            for row in AccountBalance.objects.filter(account_id__in=ids.values())
        }
        created: dict[int, AccountBalance] = {}
        changed: set[int] = set()
        for event in relevant:
            key = event.stream_id.int
            row = rows.get(key)
            have = row.version if row is not None else 0
            if event.version <= have:
                continue  # applied already (a redelivered batch)
            if event.version != have + 1:
                raise _gap(self.name, event, have)
            data = event.data  # a property (decoded once, then kept): read it once
            if event.event_type == "AccountOpened":
                row = AccountBalance(
                    account_id=event.stream_id,
                    holder_name=data["holder_name"],
                    holder_search=search_key(data["holder_name"]),
                    currency=data["currency"],
                    balance_cents=data["initial_balance_cents"],
                    status="active",
                    version=0,
                    opened_at=event.occurred_at,
                    updated_at=event.occurred_at,
                    last_position=event.position,
                )
                rows[key] = created[key] = row
            else:
                assert row is not None
                sign = _DELTA_SIGN.get(event.event_type)
                if sign is not None:
                    row.balance_cents += sign * data["amount_cents"]
                elif event.event_type in _STATUS:
                    row.status = _STATUS[event.event_type]
                if key not in created:
                    changed.add(key)
            row.version = event.version
            row.updated_at = event.occurred_at
            row.last_position = event.position
        touched = [*created.values(), *(rows[i] for i in changed)]
        if touched:
            # One upsert for new and changed rows alike (INSERT ... ON CONFLICT DO UPDATE).
            AccountBalance.objects.bulk_create(
                touched,
                batch_size=1000,
                update_conflicts=True,
                unique_fields=["account_id"],
                update_fields=self._fields,
            )


class HistoryProjection(Projection):
    name = "transactions"
    models = (TransactionHistory,)
    columns = (
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

    def handle(self, events: Sequence[RecordedEvent]) -> None:
        relevant = [e for e in events if e.stream_type == STREAM_TYPE]
        if not relevant:
            return
        ids = {e.stream_id for e in relevant}
        newest = (
            TransactionHistory.objects.filter(account_id=OuterRef("account_id"))
            .order_by("-version")
            .values("version")[:1]
        )
        # Keyed by the ids' integers: a UUID hashes in Python, at every lookup.
        latest: dict[int, int] = {}
        balances: dict[int, int] = {}
        for account_id, version, balance in TransactionHistory.objects.filter(
            account_id__in=ids, version=Subquery(newest)
        ).values_list("account_id", "version", "balance_after_cents"):
            latest[account_id.int], balances[account_id.int] = version, balance
        new_rows = []
        for event in relevant:
            key = event.stream_id.int
            if event.version <= latest.get(key, 0):
                continue  # applied already (a redelivered batch)
            data = event.data  # a property (decoded once, then kept): read it once
            if event.event_type == "AccountOpened":
                amount = data["initial_balance_cents"]
                kind, counterparty = "opening", None
                if amount == 0:
                    balances[key] = 0
                    continue
            elif event.event_type in _KIND:
                kind = _KIND[event.event_type]
                amount = data["amount_cents"]
                counterparty = data.get("to_account") or data.get("from_account")
            else:
                continue  # status changes move no money
            before = balances.get(key, 0)
            after = (
                before + amount
                if kind in ("opening", "deposit", "transfer_in")
                else before - amount
            )
            balances[key] = after
            actor = event.metadata.get("actor") or {}
            transfer_id = data.get("transfer_id")
            new_rows.append(
                (
                    event.stream_id,
                    event.version,
                    kind,
                    amount,
                    after,
                    data.get("description", ""),
                    uuid.UUID(counterparty) if counterparty else None,
                    uuid.UUID(transfer_id) if transfer_id else None,
                    str(actor.get("username", ""))[:150],
                    event.occurred_at,
                    event.position,
                )
            )
        insert_rows(TransactionHistory, self.columns, new_rows)
