"""The accounts' repository: the only code that turns streams into accounts and back.

``load`` rebuilds accounts from the event store (the newest valid snapshot plus the events
after it, in two statements per account and one round trip for all of them); ``save``
appends what the accounts recorded, all of them in one multi-stream append, and stores the
snapshots that came due.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError

import eventstore as es
from bank.domain import (
    EVENT_TYPES,
    STREAM_TYPE,
    Account,
    AccountEvent,
    AccountOpened,
    AccountSnapshot,
    event_from_data,
)

from . import encryption
from .context import CommandContext
from .errors import AccountNotFound, UnreadableStream
from .telemetry import trace_metadata

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Loaded:
    """An account as loaded, and where its stream stood then.

    Attributes:
        account: the rebuilt account (its commands record new events on it).
        head: the stream's head at load (an append is accepted only there).
        version: the account's version at load (a snapshot is due when a multiple of
            ``SNAPSHOT_INTERVAL`` lies between it and the version after the append).
    """

    account: Account
    head: es.StreamHead | int
    version: int


def load(
    account_ids: Sequence[uuid.UUID], *, up_to_version: int | None = None, lock: bool = False
) -> list[Loaded]:
    """Load accounts in one round trip, in the order given.

    Args:
        up_to_version: the state at this version (every account), not the current one.
        lock: first take the accounts' stream locks, until the end of the current
            transaction (which must be open).

    Raises:
        AccountNotFound: one of them does not exist.
    """
    streams = es.load_streams(
        account_ids,
        snapshot_schema_version=Account.SNAPSHOT_SCHEMA_VERSION,
        up_to_version=up_to_version,
        lock=lock,
    )
    return [
        _rebuild(account_id, stream, up_to_version)
        for account_id, stream in zip(account_ids, streams, strict=True)
    ]


def load_one(account_id: uuid.UUID, *, up_to_version: int | None = None) -> Account:
    """One account, current or at ``up_to_version`` (no lock).

    Raises:
        AccountNotFound: it does not exist.
    """
    return load([account_id], up_to_version=up_to_version)[0].account


def _rebuild(account_id: uuid.UUID, stream: es.LoadedStream, up_to_version: int | None) -> Loaded:
    if stream.head is None:
        raise AccountNotFound(account_id)
    base = None
    if stream.snapshot is not None:
        base = AccountSnapshot(stream.snapshot.version, stream.snapshot.state)
    try:
        account = Account.from_events(
            account_id,
            (event_from_data(e.event_type, e.data) for e in stream.events),
            snapshot=base,
        )
    except (KeyError, TypeError, ValueError) as exc:
        _raise_if_unreadable(account_id, stream.events, exc)
        if base is None:
            raise
        # A snapshot this code cannot read is never trusted: replay everything instead.
        (stream,) = es.load_streams(
            [account_id], snapshot_schema_version=None, up_to_version=up_to_version
        )
        try:
            account = Account.from_events(
                account_id, (event_from_data(e.event_type, e.data) for e in stream.events)
            )
        except (KeyError, TypeError, ValueError) as again:
            _raise_if_unreadable(account_id, stream.events, again)
            raise
    return Loaded(account, stream.head or account.version, account.version)


def _raise_if_unreadable(
    account_id: uuid.UUID, events: Sequence[es.EventData], error: Exception
) -> None:
    """Raise ``UnreadableStream`` for the first event that does not decode (the replay
    failed with ``error``); return when every event decodes (the snapshot was the problem)."""
    for event in events:
        try:
            event_from_data(event.event_type, event.data)
        except (KeyError, TypeError, ValueError) as exc:
            reason = "unknown type" if event.event_type not in EVENT_TYPES else repr(exc)
            raise UnreadableStream(account_id, event.event_type, event.version, reason) from error


def save(
    changed: Sequence[Loaded],
    context: CommandContext,
    command: str,
    *,
    locked: bool = False,
    snapshots: bool = True,
    extra: Sequence[es.StreamAppend] = (),
) -> es.AppendResult:
    """Append the accounts' new events (and the snapshots that are due, unless not asked).

    Args:
        locked: the caller holds the streams' locks and retries its whole transaction on
            a conflict, so the append needs no savepoint of its own (two round trips fewer).
        snapshots: store the snapshots that came due, in the append's transaction.
        extra: appends to other streams that commit with these (an approval's decision).

    Raises:
        eventstore.ConcurrencyError: a stream is no longer at its loaded head.
    """
    occurred_at = context.clock()
    appends = [
        es.StreamAppend(
            stream_id=loaded.account.id,
            stream_type=STREAM_TYPE,
            expected_version=loaded.head,
            events=[
                _new_event(loaded.account, event, occurred_at)
                for event in loaded.account.collect_events()
            ],
        )
        for loaded in changed
    ]
    result = es.append_streams(
        [*appends, *extra],
        metadata={**context.metadata(command), **trace_metadata()},
        savepoint=not locked,
    )
    if snapshots:
        for loaded in changed:
            _snapshot_if_due(loaded, result)
    return result


def _new_event(account: Account, event: AccountEvent, occurred_at: datetime) -> es.NewEvent:
    data = event.to_data()
    if isinstance(event, AccountOpened):
        # The holder's name is stored encrypted under the account's data key; from here on
        # the account (and its snapshots) carry the token, as a load from the events would.
        data = encryption.protect_event_data(event.event_type, account.id, data)
        account.holder_name = data["holder_name"]
    return es.NewEvent(
        event_type=event.event_type,
        schema_version=event.schema_version,
        data=data,
        occurred_at=occurred_at,
    )


def snapshot_after_commit(loaded: Loaded, result: es.AppendResult) -> None:
    """Store the account's snapshot if it came due, after its events committed.

    From there on nothing may fail the command (its caller would retry a deposit that
    happened): a snapshot is only a shortcut for later loads, so a failure is logged.
    """
    try:
        _snapshot_if_due(loaded, result)
    except (DatabaseError, es.EventStoreError) as exc:
        logger.warning(
            "account %s: the snapshot at version %s was not stored (%r); loads replay "
            "from the previous one until the next is due",
            loaded.account.id,
            loaded.account.version,
            exc,
        )


def _snapshot_if_due(loaded: Loaded, result: es.AppendResult) -> None:
    account = loaded.account
    interval = settings.SNAPSHOT_INTERVAL
    if account.version // interval > loaded.version // interval:
        snapshot = account.to_snapshot()
        head = result.heads.get(account.id)
        # The anchor: the hash of the account's newest event, when this append wrote it.
        anchor = head.hash if head is not None and head.version == account.version else None
        es.save_snapshot(
            account.id,
            stream_type=STREAM_TYPE,
            version=snapshot.version,
            schema_version=Account.SNAPSHOT_SCHEMA_VERSION,
            state=snapshot.state,
            anchor=anchor,
        )


def replay_snapshot_state(
    account_id: uuid.UUID, base: es.SnapshotData | None, events: list[es.EventData]
) -> dict[str, Any]:
    """The snapshot state an account has after ``events`` (verification checks stored
    snapshots against it)."""
    account = Account.from_events(
        account_id,
        (event_from_data(e.event_type, e.data) for e in events),
        snapshot=AccountSnapshot(base.version, base.state) if base is not None else None,
    )
    return account.to_snapshot().state
