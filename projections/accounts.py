"""The account read models: balances (one row per account) and transaction history."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Sequence

from django.db import connection
from django.db.models import Q

from bank.domain import (
    ERASED_NAME,
    EVENT_TYPES,
    STREAM_TYPE,
    AccountEvent,
    AccountOpened,
    MoneyDeposited,
    MoneyWithdrawn,
    PersonalDataErased,
    PostingReversed,
    TransferReceived,
    TransferSent,
    balance_change,
    status_after,
)
from bank.services import encryption
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
        case PostingReversed():
            return "reversal"
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
    _fields = (
        "holder_name",
        "holder_search",
        "balance_cents",
        "status",
        "version",
        "updated_at",
        "last_position",
    )

    def handle(self, events: Sequence[RecordedEvent]) -> None:
        relevant = [e for e in events if e.stream_type == STREAM_TYPE]
        if not relevant:
            return
        # Keyed by the ids' integers: a UUID hashes in Python, at every lookup.
        ids = {e.stream_id.int: e.stream_id for e in relevant}
        # The holders' data keys of this batch's openings, in one query (a rebuild opens
        # thousands of accounts).
        encryption.prefetch(
            e.stream_id for e in relevant if e.event_type == AccountOpened.event_type
        )
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
                # The stored name is a token under the holder's data key: the read model
                # keeps it readable (and searchable) until the holder is erased.
                name = encryption.reveal(change.holder_name, "holder_name")
                row = AccountBalance(
                    account_id=event.stream_id,
                    holder_name=name,
                    holder_search=search_key(name) if name != ERASED_NAME else "",
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
                if isinstance(change, PersonalDataErased):
                    row.holder_name, row.holder_search = ERASED_NAME, ""
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


def _newest_rows(ids: set[uuid.UUID]) -> list[tuple[uuid.UUID, int, int]]:
    """Each account's newest history row: (account, version, balance after).

    One statement: the newest version per account (an index-only range scan of
    ``history_account_version``), joined back to its row. A correlated "version = the
    newest" filter instead evaluates a subquery for every row of every account in the
    batch, which grows with the table: a rebuild of a 5,000,000-event store slowed to a
    crawl with it. The table name is unqualified, so a rebuild's shadow (search path on
    PostgreSQL, a TEMP table on SQLite) is the one read.
    """
    if not ids:
        return []
    table = connection.ops.quote_name(TransactionHistory._meta.db_table)
    field = TransactionHistory._meta.get_field("account_id")
    params = [field.get_db_prep_value(i, connection) for i in ids]
    marks = ", ".join(["%s"] * len(params))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT h.account_id, h.version, h.balance_after_cents FROM {table} h "  # noqa: S608
            f"JOIN (SELECT account_id, MAX(version) AS newest FROM {table} "
            f"WHERE account_id IN ({marks}) GROUP BY account_id) m "
            "ON h.account_id = m.account_id AND h.version = m.newest",
            params,
        )
        return [
            (value if isinstance(value, uuid.UUID) else uuid.UUID(value), version, balance)
            for value, version, balance in cursor.fetchall()
        ]


class HistoryProjection(Projection):
    """One row per money movement, reversals included.

    A ``PostingReversed`` adds a row of kind ``reversal`` (its signed amount, the balance
    after it, the reason as description, the transfer id, the original's counterparty and
    ``reverses_version``) and sets ``reversed_by_version`` on the original's row. That
    update is what keeps "reversed by v57" a column rather than a self-join in every reader
    (the timeline, its filter hiding reversed pairs, the CSV); it stays deterministic
    because the original and its reversal are in one stream, so the original's row is
    always written first (earlier, or earlier in the same batch, where the value goes into
    the row before it is inserted), and the value comes from the reversal event alone.
    Live following, redelivery and a rebuild therefore end with equal rows.
    """

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
        "reverses_version",
        "reversed_by_version",
    )
    _counterparty = columns.index("counterparty")
    _reversed_by = columns.index("reversed_by_version")

    def handle(self, events: Sequence[RecordedEvent]) -> None:
        relevant = [e for e in events if e.stream_type == STREAM_TYPE]
        if not relevant:
            return
        ids = {e.stream_id for e in relevant}
        # Keyed by the ids' integers: a UUID hashes in Python, at every lookup.
        latest: dict[int, int] = {}
        balances: dict[int, int] = {}
        for account_id, version, balance in _newest_rows(ids):
            latest[account_id.int], balances[account_id.int] = version, balance
        stored = self._reversed_originals(relevant, latest)
        new_rows: list[list[object]] = []
        written: dict[tuple[int, int], list[object]] = {}  # this batch's rows, by version
        marks: list[tuple[RecordedEvent, int]] = []  # stored originals to mark reversed
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
            reverses = None
            description = getattr(change, "description", "")
            if isinstance(change, PostingReversed):
                reverses, description = change.reversed_version, change.reason
                original = written.get((key, reverses))
                if original is not None:
                    original[self._reversed_by] = event.version  # not inserted yet
                    counterparty = original[self._counterparty]
                else:
                    marks.append((event, reverses))
                    counterparty = stored.get((key, reverses))
            row: list[object] = [
                event.stream_id,
                event.version,
                kind,
                delta,  # signed, as the admin and its CSV show it: money out is negative
                after,
                description,
                counterparty,
                getattr(change, "transfer_id", None),
                str(actor.get("username", ""))[:150],
                event.occurred_at,
                event.position,
                reverses,
                None,
            ]
            new_rows.append(row)
            written[(key, event.version)] = row
        insert_rows(TransactionHistory, self.columns, new_rows)
        for event, reverses in marks:
            TransactionHistory.objects.filter(account_id=event.stream_id, version=reverses).update(
                reversed_by_version=event.version
            )

    @staticmethod
    def _reversed_originals(
        events: Sequence[RecordedEvent], latest: dict[int, int]
    ) -> dict[tuple[int, int], object]:
        """The counterparties of the stored rows this batch's reversals undo (a transfer's
        reversal names the same other account as the transfer)."""
        wanted = Q()
        for event in events:
            if (
                event.event_type == PostingReversed.event_type
                and event.version > latest.get(event.stream_id.int, 0)
                and isinstance(change := decoded(event), PostingReversed)
                and change.reversed_version <= latest.get(event.stream_id.int, 0)
            ):
                wanted |= Q(account_id=event.stream_id, version=change.reversed_version)
        if not wanted:
            return {}
        return {
            (account_id.int, version): counterparty
            for account_id, version, counterparty in TransactionHistory.objects.filter(
                wanted
            ).values_list("account_id", "version", "counterparty")
        }
