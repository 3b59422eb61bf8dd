"""Loading streams to rebuild aggregates: each one's newest snapshot and the events after it.

Two statements per stream: the newest usable snapshot, and the events after it. On
PostgreSQL every stream's statements (and the streams' locks, for a command that will
append) are sent at once (psycopg's pipeline mode) and answered in one round trip
(``backends.postgres``); each statement has its client span, under its store span
(``snapshot_store.load``, ``event_store.load_events_from_version``).
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.db import connection

from .backends import Load, backend
from .records import EventData, LoadedStream, SnapshotData, StreamHead
from .rows import py_json
from .snapshots import trusted_snapshot
from .telemetry import ActiveSpan, span
from .upcasting import has_upcasters, upcast

# The newest usable snapshot of a stream: unsigned snapshots from before signing began (ids
# below the epoch's) are passed over; any other is checked on the client
# (``snapshots.trusted_snapshot``) and, failing, rejected (the stream is then replayed
# without it). The same SQL runs on both vendors.
_NEWEST_SNAPSHOT = (
    "FROM snapshots WHERE stream_id = %s AND schema_version = %s{up} AND (signature IS NOT "
    "NULL OR id >= COALESCE((SELECT MIN(snapshots_from_id) FROM signing_epoch), 0)) "
    "ORDER BY version DESC LIMIT 1"
)
_SNAPSHOT_SQL = "SELECT version, schema_version, state, anchor_hash, signature, key_id " + (
    _NEWEST_SNAPSHOT
)
# The events from the newest snapshot's version on, the event at that version included
# (its hash is the snapshot's anchor, and the head to append at when no event follows).
# The two statements are sent together, so this one finds the snapshot again instead of
# taking the other's answer. At READ COMMITTED each statement sees what was committed
# before it started: a snapshot saved between the two makes this one start later than the
# state it is paired with (events from v200 for the state at v100). The loader sees it (the
# first row is past the snapshot's version) and reads again from the snapshot it has
# (``_StreamLoad``); that happens only in that race.
_FROM_SNAPSHOT_SQL = (
    "SELECT version, event_type, schema_version, data, hash FROM events "
    "WHERE stream_id = %s AND version >= COALESCE((SELECT version "
    + _NEWEST_SNAPSHOT
    + "), 0){up}"
)
# The events from a known version on. No ORDER BY in any of these: the server would sort
# the rows, payloads and all (a fifth of a long replay's time); they arrive nearly in order
# and are sorted by version on the client.
_EVENTS_SQL = (
    "SELECT version, event_type, schema_version, data, hash FROM events "
    "WHERE stream_id = %s AND version >= %s{up}"
)
_UP = " AND version <= %s"
_SNAPSHOT_SQL_UP_TO = _SNAPSHOT_SQL.format(up=_UP)
_SNAPSHOT_SQL = _SNAPSHOT_SQL.format(up="")
_FROM_SNAPSHOT_SQL_UP_TO = _FROM_SNAPSHOT_SQL.format(up=_UP)
_FROM_SNAPSHOT_SQL = _FROM_SNAPSHOT_SQL.format(up="")
_EVENTS_SQL_UP_TO = _EVENTS_SQL.format(up=_UP)
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

    Two statements per stream (one without snapshots). On PostgreSQL the streams' locks and
    every statement are sent at once (psycopg's pipeline mode) and answered in one round
    trip; when the transaction starts here, psycopg sends BEGIN first and waits for it on
    its own. The server runs the statements in order, and each one (READ COMMITTED) sees
    what was committed before it started, so the loads see every event written by the
    locks' previous holders. The pipeline ends with a Sync before anything else runs, so
    the session is then "idle in transaction" as usual and
    ``idle_in_transaction_session_timeout`` still guards it.

    A snapshot saved between a stream's two statements, or one that fails its check, costs
    one more round trip: the events after the snapshot used (all of them, without one).

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
    loads: list[_StreamLoad] = []
    try:
        for stream_id in stream_ids:
            loads.append(_StreamLoad(stream_id, snapshot_schema_version, up_to_version))
        statements = [statement for load in loads for statement in load.statements()]
        results = iter(backend().run_loads(statements, stream_ids if lock else ()))
        for load in loads:
            load.receive(results)
        # At most twice: after a snapshot saved in between, and after a rejected snapshot.
        while again := [load for load in loads if load.reload is not None]:
            statements = [load.reload for load in again if load.reload is not None]
            answers = backend().run_loads(statements, ())
            for load, rows in zip(again, answers, strict=True):
                load.received(rows, load.reload_from)
        return [load.finish() for load in loads]
    except BaseException as exc:
        for load in loads:
            load.close(exc)
        raise


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


class _StreamLoad:
    """One stream's load: its store spans, its statements, and what they answered."""

    __slots__ = (
        "stream_id",
        "schema_version",
        "up_to",
        "snapshot_span",
        "events_span",
        "candidate",
        "snapshot",
        "head",
        "rows",
        "reload",
        "reload_from",
        "ended",
    )

    def __init__(
        self, stream_id: uuid.UUID, schema_version: int | None, up_to: int | None
    ) -> None:
        self.stream_id = stream_id
        self.schema_version = schema_version
        self.up_to = up_to
        aggregate_id = str(stream_id)
        self.snapshot_span: ActiveSpan | None = None
        if schema_version is not None:
            self.snapshot_span = span(
                "snapshot_store.load",
                "snapshot",
                aggregate_id=aggregate_id,
                **{"event_sourcing.optimization": "snapshot"},
            )
        self.events_span = span(
            "event_store.load_events_from_version", "replay", aggregate_id=aggregate_id
        )
        self.candidate: Any = None  # the snapshot's row, before its check
        self.snapshot: SnapshotData | None = None
        self.head: StreamHead | None = None
        self.rows: list[Any] = []
        self.reload: Load | None = None  # the statement to run again, when one must be
        self.reload_from = 0  # the version it reads from
        self.ended = False

    def statements(self) -> list[Load]:
        """The statements to send: the snapshot and the events from it, or all events."""
        if self.snapshot_span is None:
            return [self._events_from(0)]
        db_stream = backend().db_uuid(self.stream_id)
        up = [] if self.up_to is None else [self.up_to]
        newest = [db_stream, self.schema_version, *up]
        return [
            Load(
                _SNAPSHOT_SQL if self.up_to is None else _SNAPSHOT_SQL_UP_TO,
                newest,
                "snapshots",
                self.snapshot_span.span,
            ),
            Load(
                _FROM_SNAPSHOT_SQL if self.up_to is None else _FROM_SNAPSHOT_SQL_UP_TO,
                [db_stream, *newest, *up],
                "events",
                self.events_span.span,
            ),
        ]

    def _events_from(self, version: int) -> Load:
        up = [] if self.up_to is None else [self.up_to]
        return Load(
            _EVENTS_SQL if self.up_to is None else _EVENTS_SQL_UP_TO,
            [backend().db_uuid(self.stream_id), version, *up],
            "events",
            self.events_span.span,
        )

    def _read_again_from(self, version: int) -> None:
        self.reload = self._events_from(version)
        self.reload_from = version

    def receive(self, results: Iterator[list[Any]]) -> None:
        """Take this load's answers from the round trip's (in the order ``statements`` sent)."""
        if self.snapshot_span is not None:
            snapshot_rows = next(results)
            self.candidate = snapshot_rows[0] if snapshot_rows else None
        self.received(next(results))

    def received(self, rows: list[Any], read_from: int | None = None) -> None:
        """The events' rows: from the pipelined statement (``read_from`` None: from the
        snapshot's version, the event there included, or from the first), or read again
        from ``read_from``. When they do not reach back far enough, ``reload`` says what
        to read."""
        rows.sort(key=_by_version)  # linear on rows that arrive in order
        self.reload = None
        self.rows = rows
        if self.candidate is None:
            if read_from is None and rows and rows[0][0] != 1:
                # The second statement found a snapshot the first did not (saved between).
                self._read_again_from(0)
            # No rows at all is taken for an empty stream. Only a snapshot past the head
            # (forged: none is saved there) committed between the two statements could
            # make a stream with events look so; telling them apart would cost every load
            # of an unknown id a round trip, and an append at that head is refused anyway.
            return
        version, schema_version, state, anchor, signature, key_id = self.candidate
        at = version - rows[0][0] if rows else -1  # a stream's versions are contiguous
        found = 0 <= at < len(rows) and rows[at][0] == version
        if not found and read_from is None:
            # A snapshot saved between the statements: the second read from a later one.
            self._read_again_from(version)
            return
        self.candidate = None
        event_hash = rows[at][4] if found else None  # None: no event at its version
        state = py_json(state)
        if event_hash is not None and trusted_snapshot(
            self.stream_id, version, schema_version, state, event_hash, anchor, signature, key_id
        ):
            self.snapshot = SnapshotData(version, schema_version, state)
            self.head = StreamHead(version, event_hash)
            self.rows = rows[at + 1 :]
            return
        if event_hash is None:  # counted and logged as any rejected snapshot
            trusted_snapshot(
                self.stream_id, version, schema_version, state, None, anchor, signature, key_id
            )
        if not rows or rows[0][0] != 1:  # never used: the stream is replayed without it
            self._read_again_from(0)

    def finish(self) -> LoadedStream:
        """The stream loaded (its events decoded and upcasted); its spans end."""
        rows = self.rows
        if self.snapshot_span is not None:
            self.snapshot_span.span.set_attribute(
                "snapshot_version", self.snapshot.version if self.snapshot else 0
            )
            self.snapshot_span.close()
            self.snapshot_span = None
        current = self.events_span.span
        current.set_attribute("from_version", self.snapshot.version if self.snapshot else 0)
        events = _event_data(rows)
        current.set_attribute("events_count", len(events))
        self.ended = True
        self.events_span.close()
        head = self.head
        if rows:
            last = rows[-1]
            head = StreamHead(last[0], last[4])
        return LoadedStream(self.snapshot, events, head)

    def close(self, exc: BaseException) -> None:
        """End the spans still open of a load that failed, with the failure recorded."""
        if self.ended:
            return
        self.ended = True
        if self.snapshot_span is not None:
            self.snapshot_span.close(exc)
        self.events_span.close(exc)


def _event_data(rows: Sequence[Sequence[Any]]) -> list[EventData]:
    loads = py_json
    if has_upcasters():
        return [EventData(r[0], r[1], *upcast(r[1], r[2], loads(r[3]))) for r in rows]
    return [EventData(r[0], r[1], r[2], loads(r[3])) for r in rows]
