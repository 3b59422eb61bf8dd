"""The account read models: balances (one row per account) and transaction history."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from django.db.models import OuterRef, Subquery

from bank.domain import (
    EVENT_TYPES,
    STREAM_TYPE,
    AccountEvent,
    AccountOpened,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferReceived,
    TransferSent,
    balance_change,
    status_after,
)
from eventstore import RecordedEvent

from .base import Projection, ProjectionError, insert_rows
from .models import AccountBalance, TransactionHistory


def search_key(text: str) -> str:
    """How holder names are matched: NFC-normalised and case-folded."""
    return unicodedata.normalize("NFC", text).casefold()


def _to_domain(event: RecordedEvent) -> AccountEvent | None:
    cls = EVENT_TYPES.get(event.event_type)
    return cls.from_data(event.data) if cls is not None else None


def decoded(event: RecordedEvent) -> AccountEvent | None:
    """The domain's event for a stored one, or None for a type this code does not know
    (a newer release's event: the read models leave it to that release). Decoded once per
    event: both account projections handle the same batch."""
    return event.decoded_with(_to_domain)


def transaction_kind(event: AccountEvent) -> str | None:
    """The transaction history's kind of an event, or None when it moves no money."""
    match event:
        case AccountOpened():
            return "opening"
        case MoneyDeposited():
            return "deposit"
        case MoneyWithdrawn():
            return "withdrawal"
        case TransferReceived():
            return "transfer_in"
        case TransferSent():
            return "transfer_out"
        case _:
            return None


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
            change = decoded(event)
            if isinstance(change, AccountOpened):
                row = AccountBalance(
                    account_id=event.stream_id,
                    holder_name=change.holder_name,
                    holder_search=search_key(change.holder_name),
                    currency=change.currency,
                    balance_cents=0,
                    status="",
                    version=0,
                    opened_at=event.occurred_at,
                    updated_at=event.occurred_at,
                    last_position=event.position,
                )
                rows[key] = created[key] = row
            else:
                assert row is not None
                if key not in created:
                    changed.add(key)
            if change is not None:
                row.balance_cents += balance_change(change)
                row.status = status_after(change) or row.status
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
            change = decoded(event)
            if change is None or (kind := transaction_kind(change)) is None:
                continue  # status changes (and types this code does not know) move no money
            delta = balance_change(change)
            if kind == "opening" and delta == 0:
                balances[key] = 0
                continue
            after = balances.get(key, 0) + delta
            balances[key] = after
            actor = event.metadata.get("actor") or {}
            counterparty = getattr(change, "to_account", None) or getattr(
                change, "from_account", None
            )
            new_rows.append(
                (
                    event.stream_id,
                    event.version,
                    kind,
                    delta,  # signed, as the admin and its CSV show it: money out is negative
                    after,
                    getattr(change, "description", ""),
                    counterparty,
                    getattr(change, "transfer_id", None),
                    str(actor.get("username", ""))[:150],
                    event.occurred_at,
                    event.position,
                )
            )
        insert_rows(TransactionHistory, self.columns, new_rows)
