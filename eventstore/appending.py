"""Appending events: optimistic concurrency, hash chains and seals, gap-free positions.

Gap-free global order (ARCHITECTURE.md, "Event store"): appends are serialised. On
PostgreSQL an append takes one transaction-scoped advisory lock right before its INSERT
and holds it until commit, so positions are handed out in commit order and a reader of
``position > p`` in one statement can never see ``p + 1`` while ``p`` is still in flight;
rolled-back appends leave holes that nobody waits for. Everything that can be done before
the lock (reading the stream heads, checking the expected versions, hashing, serialising)
is, so the lock is held for one INSERT and the commit. On SQLite the database's own write
lock does the same (``transaction_mode = IMMEDIATE``). The trade-off, measured in
``bench/``: one appender at a time, so appends/s is bounded by 1 / (INSERT + commit);
see the README. The INSERT itself, locks and all, is the backend's (``backends``).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from . import reading
from .backends import GUARD, ROWS_PER_STATEMENT, VersionMismatch, backend
from .errors import ConcurrencyError, EventIdReusedError, InvalidEventError, StoreUnavailableError
from .hashing import canonical_json, canonical_time, event_hash
from .records import AppendResult, NewEvent, RecordedEvent, StreamAppend, StreamHead
from .signing import keyring, seal_message
from .telemetry import events_appended, span
from .validation import check_appends, check_json


def append(
    stream_id: uuid.UUID,
    events: Sequence[NewEvent],
    *,
    stream_type: str,
    expected_version: int,
    metadata: dict[str, Any] | None = None,
) -> AppendResult:
    """Append events to one stream if it is at ``expected_version``.

    Args:
        stream_id: the stream (aggregate) id.
        events: the events, in order; they get versions ``expected_version + 1, ...``.
        stream_type: e.g. ``bank.account``.
        expected_version: the stream's current version; 0 means it must not exist yet.
        metadata: metadata common to all the events (each event's own wins).

    Returns:
        The events' global positions and the stream's new version.

    Raises:
        ConcurrencyError: the stream is at another version; nothing was written.
        EventIdReusedError: an event id is stored with other content; nothing was written.
        InvalidEventError: an event cannot be stored as given.
        StoreUnavailableError: the append lock or the database did not answer in time.
    """
    return append_streams(
        [
            StreamAppend(
                stream_id=stream_id,
                stream_type=stream_type,
                expected_version=expected_version,
                events=list(events),
            )
        ],
        metadata=metadata,
    )


def append_streams(
    appends: Sequence[StreamAppend],
    *,
    metadata: dict[str, Any] | None = None,
    savepoint: bool = True,
) -> AppendResult:
    """Append to several streams atomically: every stream is written, or none is.

    Re-appending events that are all stored already (same ids, same stream, type, schema
    version and data) writes nothing and returns their stored positions, whatever the
    expected versions say: a retried command is not a conflict.

    Args:
        appends: one entry per stream, each with its expected version and events.
        metadata: metadata common to all the events.
        savepoint: inside the caller's transaction, wrap the append in a savepoint (two
            more round trips on PostgreSQL) so that a refused append leaves the transaction
            usable and is resolved in full (idempotent replay, reused id, actual version).
            ``False`` is for callers that hold the streams' locks (``lock_streams``) and roll
            their transaction back whole on any error: the database can then only refuse
            the append if someone bypassed those locks, which raises ``ConcurrencyError``
            with ``actual=None`` and leaves the transaction to be rolled back. Outside a
            transaction, and on SQLite, it changes nothing.

    Returns:
        The events' global positions (in the order given) and each stream's new version.

    Raises:
        ConcurrencyError: a stream is not at its expected version; nothing was written.
        EventIdReusedError: an event id is stored with other content; nothing was written.
        InvalidEventError: the append is malformed; nothing was written.
        StoreUnavailableError: the append lock or the database did not answer in time.
    """
    common = dict(metadata or {})
    check_json(common, "metadata")
    check_appends(appends)
    # A deterministic order over streams: the same pair of streams is always handled in
    # the same order, whatever order the caller named them in.
    ordered = sorted(appends, key=lambda a: a.stream_id.int)
    count = sum(len(a.events) for a in appends)
    db = backend()
    with span(
        "event_store.append_events",
        "append",
        aggregate_id=str(appends[0].stream_id),
        expected_version=_expected(appends[0]),
        events_count=count,
        streams_count=len(appends),
    ):
        nested = not savepoint and db.savepoint_round_trips and connection.in_atomic_block
        try:
            result = _append_once(ordered, common, appends, nested=nested)
        except db.integrity_errors as exc:
            if nested:  # the caller's transaction is aborted: nothing more can be read
                first = ordered[0]
                raise ConcurrencyError(
                    stream_id=first.stream_id, expected=_expected(first), actual=None
                ) from exc
            return _resolve_conflict(ordered, appends)
        except VersionMismatch:
            return _resolve_conflict(ordered, appends)
        except db.operational_errors as exc:
            raise StoreUnavailableError(
                f"the event store did not accept the append in time ({exc}); retry later"
            ) from exc
    events_appended.add(event.event_type for a in appends for event in a.events)
    return result


def _expected(a: StreamAppend) -> int:
    e = a.expected_version
    return e.version if isinstance(e, StreamHead) else e


def _append_once(
    ordered: list[StreamAppend],
    common: dict[str, Any],
    given: Sequence[StreamAppend],
    *,
    nested: bool = False,
) -> AppendResult:
    db = backend()
    db_uuid, db_time = db.db_uuid, db.db_time
    keys = keyring()
    recorded_at = timezone.now()
    recorded_text = canonical_time(recorded_at)
    db_recorded = db_time(recorded_at)
    # Whether this append is a transaction of its own (one statement in autocommit, or one
    # the store opens here), holding nothing yet.
    own_transaction = not connection.in_atomic_block and connection.get_autocommit()
    # On PostgreSQL an append outside any transaction, whose heads are known, is one
    # statement in autocommit: a transaction of its own, all or nothing, in one round trip.
    # Otherwise it runs in a transaction (a savepoint inside the caller's, unless the
    # caller asked for none: ``nested``, see append_streams).
    single_statement = (
        db.autocommit_appends
        and own_transaction
        and sum(len(a.events) for a in ordered) <= ROWS_PER_STATEMENT
        and all(isinstance(a.expected_version, StreamHead) for a in ordered)
    )
    scope = contextlib.nullcontext() if single_statement or nested else transaction.atomic()
    with scope, db.cursor() as cursor:
        unknown = [a.stream_id for a in ordered if not isinstance(a.expected_version, StreamHead)]
        heads = reading.read_heads(cursor, unknown) if unknown else {}
        params: list[list[Any]] = []
        guards: list[str] = []
        guard_params: list[Any] = []
        versions: dict[uuid.UUID, int] = {}
        heads_after: dict[uuid.UUID, StreamHead] = {}
        for a in ordered:
            db_stream = db_uuid(a.stream_id)
            if isinstance(a.expected_version, StreamHead):
                version, previous = a.expected_version.version, a.expected_version.hash
            else:
                version, previous = heads[a.stream_id]
                if version != a.expected_version:
                    raise VersionMismatch
            first = version + 1
            if version > 0:
                # Checked after the lock, in the INSERT itself: the head the events chain
                # to is still there. UNIQUE(stream_id, version) refuses a stream that moved on.
                guards.append(GUARD)
                guard_params += [db_stream, version, previous]
            for event in a.events:
                version += 1
                event_metadata = {**common, **event.metadata} if event.metadata else common
                data_json = canonical_json(event.data)
                metadata_json = canonical_json(event_metadata)
                previous = event_hash(
                    previous_hash=previous,
                    event_id=event.event_id,
                    stream_id=a.stream_id,
                    stream_type=a.stream_type,
                    version=version,
                    event_type=event.event_type,
                    schema_version=event.schema_version,
                    data_json=data_json,
                    metadata_json=metadata_json,
                    occurred_text=canonical_time(event.occurred_at),
                    recorded_text=recorded_text,
                )
                params.append(
                    [
                        db_uuid(event.event_id),
                        db_stream,
                        a.stream_type,
                        version,
                        event.event_type,
                        event.schema_version,
                        data_json,
                        metadata_json,
                        db_time(event.occurred_at),
                        db_recorded,
                        previous,
                        None,
                        None,
                    ]
                )
            # The seal: one signature over the versions appended and the stream's new head,
            # on its last event.
            key_id, signature = keys.sign(seal_message(a.stream_id, first, version, previous))
            params[-1][-2:] = [signature, key_id]
            versions[a.stream_id] = version
            heads_after[a.stream_id] = StreamHead(version, previous)
        # An append that is a transaction of its own takes the streams' locks itself, before
        # the append lock; inside a caller's transaction the caller takes them
        # (lock_streams, load_streams(lock=True)) before anything else. So no transaction
        # ever waits for a stream's lock while holding the append lock (which two appends
        # in one transaction would otherwise do), and a command that loaded under a stream's
        # lock is never overtaken by an append made outside any transaction.
        lock_ids = [a.stream_id for a in ordered] if own_transaction else []
        by_id = db.insert_events(cursor, params, guards, guard_params, lock_ids)

    positions = [by_id[e.event_id] for a in given for e in a.events]
    return AppendResult(positions=positions, versions=versions, heads=heads_after)


def _same_content(event: NewEvent, stream_id: uuid.UUID, stored: RecordedEvent) -> bool:
    return (
        stored.stream_id == stream_id
        and stored.event_type == event.event_type
        and stored.schema_version == event.schema_version
        and canonical_json(stored.data) == canonical_json(event.data)
    )


def _resolve_conflict(ordered: list[StreamAppend], given: Sequence[StreamAppend]) -> AppendResult:
    """After a failed append: an idempotent replay, a reused id, or a version conflict."""
    wanted = {e.event_id: (e, a.stream_id) for a in given for e in a.events}
    stored = {e.event_id: e for e in reading.events_by_id(list(wanted))}
    for event_id, recorded in stored.items():
        event, stream_id = wanted[event_id]
        if not _same_content(event, stream_id, recorded):
            raise EventIdReusedError(
                event_id=event_id,
                stored_stream=recorded.stream_id,
                stored_version=recorded.version,
                stored_type=recorded.event_type,
            )
    if stored and len(stored) == len(wanted):
        return AppendResult(
            positions=[stored[e.event_id].position for a in given for e in a.events],
            versions={
                a.stream_id: max(stored[e.event_id].version for e in a.events) for a in given
            },
            replayed=True,
        )
    with connection.cursor() as cursor:
        heads = reading.read_heads(cursor, [a.stream_id for a in ordered])
    for a in ordered:
        actual = heads[a.stream_id][0]
        if actual != _expected(a):
            raise ConcurrencyError(stream_id=a.stream_id, expected=_expected(a), actual=actual)
        if isinstance(a.expected_version, StreamHead) and a.expected_version != StreamHead(
            *heads[a.stream_id]
        ):
            raise InvalidEventError(
                f"stream {a.stream_id}: the head given ({a.expected_version}) is not the stored "
                "one; read it with stream_head() or from the stream's last event"
            )
    if stored:
        raise InvalidEventError(
            "some of these events are stored already and others are not; an append is all "
            "or nothing, so retry it with exactly the events of the first attempt"
        )
    # The heads match again, so the failed INSERT lost a race that has since resolved
    # (a writer that bypassed the append lock): report it as the conflict it was.
    first = ordered[0]
    raise ConcurrencyError(
        stream_id=first.stream_id,
        expected=_expected(first),
        actual=heads[first.stream_id][0],
    )
