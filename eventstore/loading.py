"""Loading streams to rebuild aggregates: each one's newest snapshot and the events after it.

One statement per stream reads its snapshot and the events after it, so the two always
agree. A command that will append loads under the streams' locks (``lock=True``, or
``lock_streams`` first): on PostgreSQL the locks and those statements are sent at once
(psycopg's pipeline mode) and answered in one round trip (``backends.postgres``).
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection

from .backends import Load, backend
from .records import EventData, LoadedStream, SnapshotData, StreamHead
from .rows import py_json
from .snapshots import trusted_snapshot
from .telemetry import span
from .upcasting import has_upcasters, upcast

# One statement reads the newest usable snapshot and the events after it, so the two always
# agree (separate statements could straddle a concurrent snapshot: events after v200 applied
# to the state at v100). The snapshot row (event_type NULL) carries the hash of the event at
# its version: the head to append at when no event follows it. The same SQL runs on both
# vendors. Unsigned snapshots from before signing began (ids below the epoch's) are passed
# over; any other is checked on the client (``snapshots.trusted_snapshot``) and, failing,
# rejected (the stream is then read again without it). No ORDER BY: the server would sort
# the rows, payloads and all (a fifth of a long replay's time); they arrive nearly in order
# and are sorted by version on the client (``load_streams``), the snapshot's first (its
# version is below every event's).
_LOAD_SQL = (
    "WITH s AS (SELECT version, schema_version, state, anchor_hash, signature, key_id "
    "FROM snapshots "
    "WHERE stream_id = %s AND schema_version = %s{up} AND (signature IS NOT NULL OR id >= "
    "COALESCE((SELECT MIN(snapshots_from_id) FROM signing_epoch), 0)) "
    "ORDER BY version DESC LIMIT 1) "
    "SELECT s.version, CAST(NULL AS varchar(100)), s.schema_version, s.state, "
    "(SELECT hash FROM events WHERE stream_id = %s AND version = s.version), "
    "s.anchor_hash, s.signature, s.key_id FROM s "
    "UNION ALL "
    "SELECT version, event_type, schema_version, data, hash, NULL, NULL, NULL FROM events "
    "WHERE stream_id = %s AND version > COALESCE((SELECT version FROM s), 0){up}"
)
_LOAD_SQL_UP_TO = _LOAD_SQL.format(up=" AND version <= %s")
_LOAD_SQL = _LOAD_SQL.format(up="")
_EVENTS_SQL = (
    "SELECT version, event_type, schema_version, data, hash FROM events "
    "WHERE stream_id = %s AND version > %s{up}"
)
_EVENTS_SQL_UP_TO = _EVENTS_SQL.format(up=" AND version <= %s")
_EVENTS_SQL = _EVENTS_SQL.format(up="")
_by_version = operator.itemgetter(0)


def load_streams(
    stream_ids: Sequence[uuid.UUID],
    *,
    snapshot_schema_version: int | None,
    up_to_version: int | None = None,
    lock: bool = False,
) -> list[LoadedStream]:
    """Load streams for rebuilding aggregates: each one's newest snapshot and the events after it.

    One statement per stream reads its snapshot and the events after it (so the two always
    agree). On PostgreSQL the streams' locks and those statements are sent at once
    (psycopg's pipeline mode) and answered in one round trip; when the transaction starts
    here, psycopg sends BEGIN first and waits for it on its own. The server runs the
    statements in order, and each one (READ COMMITTED) sees what was committed before it
    started, so the loads see every event written by the locks' previous holders. The
    pipeline ends with a Sync before anything else runs, so the session is then "idle in
    transaction" as usual and ``idle_in_transaction_session_timeout`` still guards it.

    Args:
        stream_ids: the streams, distinct.
        snapshot_schema_version: the snapshot state's schema version the caller can read;
            None to ignore snapshots (full replay).
        up_to_version: only up to this version (the state then), for every stream.
        lock: first take the streams' locks (``lock_streams``) until the end of the
            current transaction, in one fixed order.

    Returns:
        One ``LoadedStream`` per stream id, in the order given. Events are upcasted.

    Raises:
        RuntimeError: ``lock`` outside a transaction (the locks would end at once).
        StoreUnavailableError: a lock was not granted within ``lock_timeout``, or the
            database did not answer.
    """
    if lock and not connection.in_atomic_block:
        raise RuntimeError("load_streams(lock=True) must be called inside transaction.atomic()")
    db = backend()
    loads = [_load_statement(s, snapshot_schema_version, up_to_version) for s in stream_ids]
    with span(
        "snapshot_store.load"
        if snapshot_schema_version is not None
        else "event_store.load_events",
        "snapshot" if snapshot_schema_version is not None else "replay",
        aggregate_id=str(stream_ids[0]) if stream_ids else "",
    ) as current:
        # One round trip for every stream: this span carries the database's time; the
        # per-stream spans below carry the decoding.
        results = db.run_loads(loads, stream_ids if lock else ())
        for rows in results:
            rows.sort(key=_by_version)  # linear on rows that arrive in order
        if snapshot_schema_version is not None:
            current.set_attribute("event_sourcing.optimization", "snapshot")
            first = results[0][0] if results and results[0] else None
            snapshot_version = first[0] if first is not None and first[1] is None else 0
            current.set_attribute("snapshot_version", snapshot_version)
    loaded = [_loaded_stream(s, rows) for s, rows in zip(stream_ids, results, strict=True)]
    rejected = [i for i, stream in enumerate(loaded) if stream is None]
    if rejected:
        # A snapshot that failed its check is never used: those streams are replayed whole.
        again = db.run_loads(
            [_load_statement(stream_ids[i], None, up_to_version) for i in rejected], ()
        )
        for i, rows in zip(rejected, again, strict=True):
            rows.sort(key=_by_version)
            loaded[i] = _loaded_stream(stream_ids[i], rows)
    return loaded  # type: ignore[return-value]


def lock_streams(stream_ids: Iterable[uuid.UUID]) -> None:
    """Serialise, until the end of the current transaction, with writers of these streams.

    Optimistic concurrency stays the guard; this only spares a hot stream's writers the
    wasted work of losing races and retrying. Take them before the transaction's first
    append: an append holds the global append lock until commit, and waiting for a
    stream's lock while holding it could deadlock with an append in autocommit (which takes
    the stream's lock, then the append lock). On PostgreSQL it takes one advisory lock per
    stream, in a fixed order (so two writers locking the same pair cannot deadlock); on
    SQLite the database's write lock already serialises every writer.

    Raises:
        RuntimeError: called outside a transaction (the locks would end at once).
        StoreUnavailableError: a lock was not granted within ``lock_timeout``.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("lock_streams() must be called inside transaction.atomic()")
    backend().lock_streams(stream_ids)


def _load_statement(
    stream_id: uuid.UUID, snapshot_schema_version: int | None, up_to_version: int | None
) -> Load:
    db_stream = backend().db_uuid(stream_id)
    if snapshot_schema_version is None:
        if up_to_version is None:
            return _EVENTS_SQL, [db_stream, 0]
        return _EVENTS_SQL_UP_TO, [db_stream, 0, up_to_version]
    if up_to_version is None:
        return _LOAD_SQL, [db_stream, snapshot_schema_version, db_stream, db_stream]
    return _LOAD_SQL_UP_TO, [
        db_stream,
        snapshot_schema_version,
        up_to_version,
        db_stream,
        db_stream,
        up_to_version,
    ]


def _loaded_stream(stream_id: uuid.UUID, rows: list[Any]) -> LoadedStream | None:
    """The rows of one stream's load, sorted by version (the snapshot's row first).

    None when the snapshot fails its check (the caller replays the stream without it).
    """
    snapshot = None
    head = None
    if rows and rows[0][1] is None:
        version, _, schema_version, state, hash_, anchor, signature, key_id = rows[0]
        state = py_json(state)
        if not trusted_snapshot(
            stream_id, version, schema_version, state, hash_, anchor, signature, key_id
        ):
            return None
        snapshot = SnapshotData(version, schema_version, state)
        head = StreamHead(version, hash_)
        rows = rows[1:]
    with span(
        "event_store.load_events_from_version",
        "replay",
        aggregate_id=str(stream_id),
        from_version=snapshot.version if snapshot else 0,
    ) as current:
        events = _event_data(rows)
        current.set_attribute("events_count", len(events))
    if rows:
        last = rows[-1]
        head = StreamHead(last[0], last[4])
    return LoadedStream(snapshot, events, head)


def _event_data(rows: Sequence[Sequence[Any]]) -> list[EventData]:
    loads = py_json
    if has_upcasters():
        return [EventData(r[0], r[1], *upcast(r[1], r[2], loads(r[3]))) for r in rows]
    return [EventData(r[0], r[1], r[2], loads(r[3])) for r in rows]
