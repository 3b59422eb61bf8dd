"""Appending to and reading from the event store.

Gap-free global order (ARCHITECTURE.md, "Event store"): appends are serialised. On
PostgreSQL an append takes one transaction-scoped advisory lock right before its INSERT
and holds it until commit, so positions are handed out in commit order and a reader of
``position > p`` in one statement can never see ``p + 1`` while ``p`` is still in flight;
rolled-back appends leave holes that nobody waits for. Everything that can be done before
the lock (reading the stream heads, checking the expected versions, hashing, serialising)
is, so the lock is held for one INSERT and the commit. On SQLite the database's own write
lock does the same (``transaction_mode = IMMEDIATE``). The trade-off, measured in
``bench/``: one appender at a time, so appends/s is bounded by 1 / (INSERT + commit);
see the README.
"""

from __future__ import annotations

import contextlib
import logging
import math
import operator
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from . import jsoncodec
from .errors import (
    ConcurrencyError,
    EventIdReusedError,
    InvalidEventError,
    StoreUnavailableError,
)
from .hashing import GENESIS_HASH, canonical_json, canonical_time, chain, content_text
from .records import (
    AppendResult,
    EventData,
    LoadedStream,
    NewEvent,
    RecordedEvent,
    SnapshotData,
    StoredSnapshot,
    StreamAppend,
    StreamData,
    StreamHead,
)
from .signing import UnknownKeyError, keyring, seal_message, snapshot_message
from .telemetry import events_appended, snapshots_rejected, span, statements
from .upcasting import has_upcasters, needs_upcast, upcast

security_log = logging.getLogger("eventstore.security")

# The advisory lock that serialises appends on PostgreSQL ("es" + "append" as a number).
APPEND_LOCK_KEY = 0x6573_6170_7065_6E64
MAX_TYPE_LENGTH = 100
# Every append on PostgreSQL notifies this channel (delivered at commit, payload-less), so
# followers can wake at once instead of polling. Appends are serialised already, so the
# lock NOTIFY takes at commit costs them little.
APPEND_CHANNEL = "eventstore_appended"

_EVENT_COLUMNS = (
    "position, event_id, stream_id, stream_type, version, event_type, schema_version, "
    "data, metadata, occurred_at, recorded_at, commit_id, hash"
)


class _VersionMismatch(Exception):
    """Internal: a stream head differs from the expected version (resolved after rollback)."""


# --- the hot path's cursor -----------------------------------------------------------

try:  # PostgreSQL's driver; absent where only SQLite is used
    import psycopg

    _DRIVER_INTEGRITY_ERRORS: tuple[type[Exception], ...] = (psycopg.IntegrityError,)
    _DRIVER_OPERATIONAL_ERRORS: tuple[type[Exception], ...] = (psycopg.OperationalError,)
    _DRIVER_ERRORS: tuple[type[Exception], ...] = (psycopg.Error,)
except ImportError:  # pragma: no cover
    psycopg = None  # type: ignore[assignment]
    _DRIVER_INTEGRITY_ERRORS = ()
    _DRIVER_OPERATIONAL_ERRORS = ()
    _DRIVER_ERRORS = ()


def _prepared_statements() -> bool:
    return bool(getattr(settings, "EVENTSTORE_PREPARED_STATEMENTS", True))


def _prepare() -> bool | None:
    """psycopg's ``prepare`` argument: None lets the connection's ``prepare_threshold``
    decide (a statement is prepared on its third run on one connection, so a connection
    made for one request never pays for a Parse it will not reuse); False never prepares.
    """
    return None if _prepared_statements() else False


def _pg_connection() -> Any:
    """Django's own psycopg connection (same session, same transaction as the ORM's)."""
    connection.ensure_connection()
    return connection.connection


def _cursor() -> Any:
    """A cursor for the append path.

    On PostgreSQL a server-side-binding psycopg cursor on Django's own connection (same
    session, same transaction), so that the few statements every command runs are parsed
    and planned once per connection (prepared) instead of every time. Django's cursors bind
    on the client and never prepare. Set ``EVENTSTORE_PREPARED_STATEMENTS = False`` behind
    a pooler that cannot keep prepared statements (PgBouncer before 1.22 in transaction
    mode).
    """
    if connection.vendor == "postgresql" and _prepared_statements():
        return psycopg.Cursor(_pg_connection())
    return connection.cursor()


def _traced(cursor: Any, *described: tuple[str, str, str]) -> Any:
    """The client spans of statements run on ``cursor``: the store's own, unless the cursor
    is Django's on PostgreSQL, whose statements the psycopg instrumentation traces already
    (psycopg's own cursors, which the store uses on the hot path, it does not see)."""
    if connection.vendor == "postgresql" and not (
        psycopg is not None and type(cursor) is psycopg.Cursor
    ):
        return contextlib.nullcontext()
    return statements(*described)


def _execute(cursor: Any, sql: str, params: Sequence[Any], *, binary: bool = False) -> None:
    """Run a statement; on the prepared path, optionally with binary results (UUIDs, times
    and JSON then load in psycopg's C loaders rather than through text).

    Statements are prepared only because settings give the connection a
    ``prepare_threshold`` (Django's default, None, makes psycopg never prepare);
    tests/eventstore/test_round_trips.py checks ``pg_prepared_statements``.
    """
    if psycopg is not None and type(cursor) is psycopg.Cursor:
        cursor.execute(sql, params, prepare=_prepare(), binary=binary)
    else:
        cursor.execute(sql, params)


# --- validation -----------------------------------------------------------------------


def _check_json(value: Any, where: str) -> None:
    """Refuse what either backend would store differently or not at all."""
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidEventError(f"{where}: NUL characters cannot be stored")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidEventError(
                f"{where}: lone surrogate characters cannot be stored"
            ) from exc
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidEventError(f"{where}: NaN and Infinity are not JSON")
        # PostgreSQL's jsonb keeps numbers as numeric: -0.0 comes back as 0.0, and a float
        # written with an exponent of 16 or more (1e+16, all of them whole) as an integer,
        # so the value read back would not be the one hashed and the event would look
        # tampered with. Refused on both vendors, so that a store moves between them.
        if (value == 0.0 and math.copysign(1.0, value) < 0) or (
            abs(value) >= 1e16 and value.is_integer()
        ):
            raise InvalidEventError(
                f"{where}: {value!r} would not read back as written (store it as an "
                "integer or a string)"
            )
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidEventError(f"{where}: object keys must be strings, got {key!r}")
            _check_json(key, where)
            _check_json(item, f"{where}.{key}")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
        return
    raise InvalidEventError(f"{where}: {type(value).__name__} is not a JSON value")


def _check_event(event: NewEvent, where: str) -> None:
    if not isinstance(event, NewEvent):
        raise InvalidEventError(f"{where}: expected a NewEvent, got {type(event).__name__}")
    if not event.event_type or len(event.event_type) > MAX_TYPE_LENGTH:
        raise InvalidEventError(f"{where}: event_type must be 1 to {MAX_TYPE_LENGTH} characters")
    if not isinstance(event.schema_version, int) or event.schema_version < 1:
        raise InvalidEventError(f"{where}: schema_version must be a positive integer")
    if not isinstance(event.data, dict):
        raise InvalidEventError(f"{where}: data must be a JSON object")
    if timezone.is_naive(event.occurred_at):
        raise InvalidEventError(f"{where}: occurred_at must be timezone-aware")
    _check_json(event.event_type, f"{where}.event_type")
    _check_json(event.data, f"{where}.data")
    _check_json(event.metadata, f"{where}.metadata")


# --- database adaptation --------------------------------------------------------------


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _db_uuid(value: uuid.UUID) -> Any:
    return value if connection.features.has_native_uuid_field else value.hex


def _db_time(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _py_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def _py_time(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value


_loads = jsoncodec.loads


def _py_json(value: Any) -> Any:
    return _loads(value) if isinstance(value, str | bytes) else value


def _to_recorded(row: Sequence[Any], *, upcasted: bool = True) -> RecordedEvent:
    """A RecordedEvent from a row of a Django cursor (text results, both vendors)."""
    event = RecordedEvent(
        position=row[0],
        event_id=_py_uuid(row[1]),
        stream_id=_py_uuid(row[2]),
        stream_type=row[3],
        version=row[4],
        event_type=row[5],
        schema_version=row[6],
        data_json=row[7],
        metadata_json=row[8],
        occurred_at=_py_time(row[9]),
        recorded_at=_py_time(row[10]),
        commit_id=row[11],
        hash=row[12],
    )
    return _upcast_recorded(event) if upcasted else event


def _upcast_recorded(event: RecordedEvent) -> RecordedEvent:
    if not needs_upcast(event.event_type, event.schema_version):
        return event
    schema_version, data = upcast(event.event_type, event.schema_version, event.data)
    return event._replace(schema_version=schema_version, data_json=data)


# --- append ---------------------------------------------------------------------------


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
    _check_json(common, "metadata")
    if not appends:
        raise InvalidEventError("an append needs at least one stream")
    seen_streams: set[uuid.UUID] = set()
    seen_events: set[uuid.UUID] = set()
    for a in appends:
        if a.stream_id in seen_streams:
            raise InvalidEventError(f"stream {a.stream_id} is named twice in one append")
        seen_streams.add(a.stream_id)
        expected = a.expected_version
        if isinstance(expected, StreamHead):
            if expected.version < 0 or (expected.version == 0) != (expected.hash == GENESIS_HASH):
                raise InvalidEventError(f"stream {a.stream_id}: {expected} is not a stream head")
        elif not isinstance(expected, int) or isinstance(expected, bool) or expected < 0:
            raise InvalidEventError(f"stream {a.stream_id}: expected_version must be >= 0")
        if not a.events:
            raise InvalidEventError(f"stream {a.stream_id}: an append needs at least one event")
        if not a.stream_type or len(a.stream_type) > MAX_TYPE_LENGTH:
            raise InvalidEventError(f"stream {a.stream_id}: stream_type must be 1 to 100 chars")
        for i, event in enumerate(a.events):
            _check_event(event, f"stream {a.stream_id} event {i}")
            if event.event_id in seen_events:
                raise InvalidEventError(f"event {event.event_id} is given twice in one append")
            seen_events.add(event.event_id)
    # A deterministic order over streams: the same pair of streams is always handled in
    # the same order, whatever order the caller named them in.
    ordered = sorted(appends, key=lambda a: a.stream_id.int)
    count = sum(len(a.events) for a in appends)
    with span(
        "event_store.append_events",
        "append",
        aggregate_id=str(appends[0].stream_id),
        expected_version=_expected(appends[0]),
        events_count=count,
        streams_count=len(appends),
    ):
        nested = not savepoint and _is_postgres() and connection.in_atomic_block
        try:
            result = _append_once(ordered, common, appends, nested=nested)
        except (IntegrityError, *_DRIVER_INTEGRITY_ERRORS) as exc:
            if nested:  # the caller's transaction is aborted: nothing more can be read
                first = ordered[0]
                raise ConcurrencyError(
                    stream_id=first.stream_id, expected=_expected(first), actual=None
                ) from exc
            return _resolve_conflict(ordered, appends)
        except _VersionMismatch:
            return _resolve_conflict(ordered, appends)
        except (OperationalError, *_DRIVER_OPERATIONAL_ERRORS) as exc:
            raise StoreUnavailableError(
                f"the event store did not accept the append in time ({exc}); retry later"
            ) from exc
    events_appended.add(event.event_type for a in appends for event in a.events)
    return result


def _read_heads(cursor: Any, stream_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, str]]:
    heads: dict[uuid.UUID, tuple[int, str]] = {}
    sql = "SELECT version, hash FROM events WHERE stream_id = %s ORDER BY version DESC LIMIT 1"
    for stream_id in stream_ids:
        with _traced(cursor, ("SELECT", "events", sql)):
            _execute(cursor, sql, [_db_uuid(stream_id)])
            row = cursor.fetchone()
        heads[stream_id] = (row[0], row[1]) if row else (0, GENESIS_HASH)
    return heads


def _expected(a: StreamAppend) -> int:
    e = a.expected_version
    return e.version if isinstance(e, StreamHead) else e


_INSERT_COLUMNS = (
    "event_id, stream_id, stream_type, version, event_type, schema_version, data, metadata, "
    "occurred_at, recorded_at, hash, signature, key_id, commit_id"
)
_PG_ROW = (
    "(%s::uuid, %s::uuid, %s, %s::integer, %s, %s::smallint, %s::jsonb, %s::jsonb, "
    "%s::timestamptz, %s::timestamptz, %s, %s::text, %s::text)"
)
_SQLITE_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
# All events written by one transaction share a commit id: PostgreSQL's transaction id;
# on SQLite the store's head position + 1 under the write lock (fresh: BEGIN IMMEDIATE).
# Appends larger than this are written in several statements of one transaction.
ROWS_PER_STATEMENT = 1000
_GUARD = "EXISTS (SELECT 1 FROM events WHERE stream_id = %s AND version = %s AND hash = %s)"


def _append_once(
    ordered: list[StreamAppend],
    common: dict[str, Any],
    given: Sequence[StreamAppend],
    *,
    nested: bool = False,
) -> AppendResult:
    postgres = _is_postgres()
    keys = keyring()
    recorded_at = timezone.now()
    recorded_text = canonical_time(recorded_at)
    db_recorded = _db_time(recorded_at)
    # On PostgreSQL an append outside any transaction, whose heads are known, is one
    # statement in autocommit: a transaction of its own, all or nothing, in one round trip.
    # Otherwise it runs in a transaction (a savepoint inside the caller's, unless the
    # caller asked for none: ``nested``, see append_streams).
    total_rows = sum(len(a.events) for a in ordered)
    single_statement = (
        postgres
        and not connection.in_atomic_block
        and connection.get_autocommit()
        and total_rows <= ROWS_PER_STATEMENT
        and all(isinstance(a.expected_version, StreamHead) for a in ordered)
    )
    # Whether this append is a transaction of its own (one statement in autocommit, or one
    # the store opens here), holding nothing yet.
    own_transaction = not connection.in_atomic_block and connection.get_autocommit()
    scope = contextlib.nullcontext() if single_statement or nested else transaction.atomic()
    with scope, _cursor() as cursor:
        unknown = [a.stream_id for a in ordered if not isinstance(a.expected_version, StreamHead)]
        heads = _read_heads(cursor, unknown) if unknown else {}
        params: list[list[Any]] = []
        guards: list[str] = []
        guard_params: list[Any] = []
        versions: dict[uuid.UUID, int] = {}
        heads_after: dict[uuid.UUID, StreamHead] = {}
        for a in ordered:
            db_stream = _db_uuid(a.stream_id)
            if isinstance(a.expected_version, StreamHead):
                version, previous = a.expected_version.version, a.expected_version.hash
            else:
                version, previous = heads[a.stream_id]
                if version != a.expected_version:
                    raise _VersionMismatch
            first = version + 1
            if version > 0:
                # Checked after the lock, in the INSERT itself: the head the events chain
                # to is still there. UNIQUE(stream_id, version) refuses a stream that moved on.
                guards.append(_GUARD)
                guard_params += [db_stream, version, previous]
            for event in a.events:
                version += 1
                event_metadata = {**common, **event.metadata} if event.metadata else common
                data_json = canonical_json(event.data)
                metadata_json = canonical_json(event_metadata)
                previous = chain(
                    previous,
                    content_text(
                        event_id=event.event_id,
                        stream_id=a.stream_id,
                        stream_type=a.stream_type,
                        version=version,
                        event_type=event.event_type,
                        schema_version=event.schema_version,
                        data_json=data_json,
                        metadata_json=metadata_json,
                        occurred_at=event.occurred_at,
                        recorded_text=recorded_text,
                    ),
                )
                params.append(
                    [
                        _db_uuid(event.event_id),
                        db_stream,
                        a.stream_type,
                        version,
                        event.event_type,
                        event.schema_version,
                        data_json,
                        metadata_json,
                        _db_time(event.occurred_at),
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
        lock_keys = (
            sorted({_stream_lock_key(a.stream_id) for a in ordered}) if own_transaction else []
        )
        by_id = _insert(cursor, params, guards, guard_params, lock_keys, postgres=postgres)

    positions = [by_id[e.event_id] for a in given for e in a.events]
    return AppendResult(positions=positions, versions=versions, heads=heads_after)


def _insert(
    cursor: Any,
    rows: list[list[Any]],
    guards: list[str],
    guard_params: list[Any],
    lock_keys: list[int],
    *,
    postgres: bool,
) -> dict[uuid.UUID, int]:
    """INSERT the rows, at most ROWS_PER_STATEMENT per statement; return their positions."""
    by_id: dict[uuid.UUID, int] = {}
    commit_id: list[Any] = []
    if not postgres:
        # SQLite: BEGIN IMMEDIATE already holds the database's write lock, so the head
        # position read here is final; every statement of this append shares it.
        head_sql = "SELECT COALESCE(MAX(position), 0) + 1 FROM events"
        with _traced(cursor, ("SELECT", "events", head_sql)):
            cursor.execute(head_sql)
            commit_id = [cursor.fetchone()[0]]
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        values = ", ".join([_PG_ROW if postgres else _SQLITE_ROW] * len(chunk))
        params = [value for row in chunk for value in row]
        first = start == 0
        if postgres and first:
            # One statement takes the append lock (in its FROM clause, evaluated left to
            # right, so no row, and no position, exists before the lock is held), notifies
            # followers and inserts. As a transaction of its own it first takes the streams'
            # locks, in key order as lock_streams() takes them: a command that loaded under
            # them cannot be overtaken by one that loaded without, which waits here and is
            # then refused. The guards may be judged on a snapshot from before the locks: they
            # test immutable rows, and a stream that moved on meanwhile is refused by
            # UNIQUE(stream_id, version).
            stream_locks = "pg_advisory_xact_lock(%s), " * len(lock_keys)
            sql = (
                f"INSERT INTO events ({_INSERT_COLUMNS}) "
                "SELECT v.*, pg_current_xact_id()::text::bigint "
                f"FROM (SELECT {stream_locks}pg_advisory_xact_lock(%s), pg_notify(%s, '')) "
                f"AS append_lock, (VALUES {values}) AS v"
            )
            params[:0] = [*lock_keys, APPEND_LOCK_KEY, APPEND_CHANNEL]
        elif postgres:  # later statements of a large append: the lock is held already
            sql = (
                f"INSERT INTO events ({_INSERT_COLUMNS}) "
                f"SELECT v.*, pg_current_xact_id()::text::bigint FROM (VALUES {values}) AS v"
            )
        else:
            sql = f"INSERT INTO events ({_INSERT_COLUMNS}) SELECT v.*, %s FROM (VALUES {values}) AS v"
            params[:0] = commit_id
        if first and guards:
            sql += " WHERE " + " AND ".join(guards)
            params += guard_params
        sql += " RETURNING position, event_id"
        with _traced(cursor, ("INSERT", "events", sql)):
            _execute(cursor, sql, params)
            returned = cursor.fetchall()
        if len(returned) != len(chunk):
            raise _VersionMismatch
        by_id.update((_py_uuid(event_id), position) for position, event_id in returned)
    return by_id


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
    stored = {e.event_id: e for e in _events_by_id(list(wanted))}
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
        heads = _read_heads(cursor, [a.stream_id for a in ordered])
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


# --- reads ----------------------------------------------------------------------------


def _events_by_id(event_ids: list[uuid.UUID]) -> list[RecordedEvent]:
    if not event_ids:
        return []
    marks = ", ".join(["%s"] * len(event_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id IN ({marks})",
            [_db_uuid(i) for i in event_ids],
        )
        return [_to_recorded(row, upcasted=False) for row in cursor.fetchall()]


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
    if not _is_postgres():
        return
    keys = sorted({_stream_lock_key(stream_id) for stream_id in stream_ids})
    if not keys:
        return
    try:
        with _cursor() as cursor, _traced(cursor, ("SELECT", "", _LOCK_SQL)):
            _execute(cursor, _LOCK_SQL, [keys])
    except (OperationalError, *_DRIVER_OPERATIONAL_ERRORS) as exc:
        raise StoreUnavailableError(
            f"a stream lock was not granted in time ({exc}); retry later"
        ) from exc


def _stream_lock_key(stream_id: uuid.UUID) -> int:
    folded = (stream_id.int >> 64) ^ (stream_id.int & 0xFFFF_FFFF_FFFF_FFFF)
    key = folded - (1 << 64) if folded >= 1 << 63 else folded
    # Never the append lock's key: that one is always taken last, by appends.
    return key if key != APPEND_LOCK_KEY else key - 1


def stream_head(stream_id: uuid.UUID) -> StreamHead:
    """Return the stream's newest version and hash, to append at (0 and "" when empty)."""
    with _cursor() as cursor:
        return StreamHead(*_read_heads(cursor, [stream_id])[stream_id])


def stream_version(stream_id: uuid.UUID) -> int:
    """Return the stream's current version (0 when it has no events)."""
    sql = "SELECT MAX(version) FROM events WHERE stream_id = %s"
    with _cursor() as cursor, _traced(cursor, ("SELECT", "events", sql)):
        _execute(cursor, sql, [_db_uuid(stream_id)])
        row = cursor.fetchone()
    return row[0] or 0


def read_stream(
    stream_id: uuid.UUID,
    *,
    after_version: int = 0,
    up_to_version: int | None = None,
    upcasted: bool = True,
) -> list[RecordedEvent]:
    """Return a stream's events in version order.

    Args:
        stream_id: the stream.
        after_version: only events with a version above this.
        up_to_version: only events at or below this version.
        upcasted: apply registered upcasters (False gives the rows as stored).
    """
    sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE stream_id = %s AND version > %s"
    params: list[Any] = [_db_uuid(stream_id), after_version]
    if up_to_version is not None:
        sql += " AND version <= %s"
        params.append(up_to_version)
    sql += " ORDER BY version"
    with (
        span("event_store.load_events", "replay", aggregate_id=str(stream_id)) as current,
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, params)
        events = [_to_recorded(row, upcasted=upcasted) for row in cursor.fetchall()]
        current.set_attribute("events_count", len(events))
        return events


def read_stream_data(
    stream_id: uuid.UUID, *, after_version: int = 0, up_to_version: int | None = None
) -> StreamData:
    """Return a stream's events as lean, upcasted tuples, for rebuilding an aggregate.

    Reads only what a replay needs (no metadata, no times), so a long replay costs little
    more than fetching the rows. ``head`` is the last event's (version, hash): append at it.

    Args:
        stream_id: the stream.
        after_version: only events with a version above this (e.g. a snapshot's).
        up_to_version: only events at or below this version.
    """
    with span(
        "event_store.load_events_from_version",
        "replay",
        aggregate_id=str(stream_id),
        from_version=after_version,
    ) as current:
        data = _read_stream_data(stream_id, after_version, up_to_version)
        current.set_attribute("events_count", len(data.events))
        return data


def _read_stream_data(
    stream_id: uuid.UUID, after_version: int, up_to_version: int | None
) -> StreamData:
    sql = (
        "SELECT version, event_type, schema_version, data, hash FROM events "
        "WHERE stream_id = %s AND version > %s"
    )
    params: list[Any] = [_db_uuid(stream_id), after_version]
    if up_to_version is not None:
        sql += " AND version <= %s"
        params.append(up_to_version)
    sql += " ORDER BY version"
    with _cursor() as cursor, _traced(cursor, ("SELECT", "events", sql)):
        _execute(cursor, sql, params)
        rows = cursor.fetchall()
    if not rows:
        return StreamData([], None)
    loads = _loads
    if has_upcasters():
        events = [
            EventData(row[0], row[1], *upcast(row[1], row[2], loads(row[3]))) for row in rows
        ]
    else:
        events = [EventData(row[0], row[1], row[2], loads(row[3])) for row in rows]
    last = rows[-1]
    return StreamData(events, StreamHead(last[0], last[4]))


# One statement reads the newest usable snapshot and the events after it, so the two always
# agree (separate statements could straddle a concurrent snapshot: events after v200 applied
# to the state at v100). The snapshot row (event_type NULL) carries the hash of the event at
# its version: the head to append at when no event follows it. The same SQL runs on both
# vendors. Unsigned snapshots from before signing began (ids below the epoch's) are passed
# over; any other is checked on the client (``snapshot_problem``) and, failing, rejected
# (the stream is then read again without it). No ORDER BY: the server would sort the rows,
# payloads and all (a fifth of a long replay's time); they arrive nearly in order and are
# sorted by version on the client (``load_streams``), the snapshot's first (its version is
# below every event's).
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
_LOCK_SQL = "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k ORDER BY k"


def _load_statement(
    stream_id: uuid.UUID, snapshot_schema_version: int | None, up_to_version: int | None
) -> tuple[str, list[Any]]:
    db_stream = _db_uuid(stream_id)
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
        results = _run_loads(loads, stream_ids if lock else ())
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
        again = _run_loads(
            [_load_statement(stream_ids[i], None, up_to_version) for i in rejected], ()
        )
        for i, rows in zip(rejected, again, strict=True):
            rows.sort(key=_by_version)
            loaded[i] = _loaded_stream(stream_ids[i], rows)
    return loaded  # type: ignore[return-value]


def _run_loads(
    loads: list[tuple[str, list[Any]]], lock_ids: Sequence[uuid.UUID]
) -> list[list[Any]]:
    if not _is_postgres():
        with connection.cursor() as cursor:
            results = []
            for sql, params in loads:
                with statements(("SELECT", "events", sql)):
                    cursor.execute(sql, params)
                    results.append(cursor.fetchall())
            return results
    conn = _pg_connection()
    prepare = _prepare()
    if len(loads) == 1 and not lock_ids:
        # One statement needs no pipeline (whose result handling costs more on long reads).
        try:
            with psycopg.Cursor(conn) as cursor, statements(("SELECT", "events", loads[0][0])):
                cursor.execute(*loads[0], prepare=prepare)
                return [cursor.fetchall()]
        except _DRIVER_OPERATIONAL_ERRORS as exc:
            raise StoreUnavailableError(
                f"the event store did not answer in time ({exc}); retry later"
            ) from exc
    # psycopg's own Cursor: server-side binding, so it can be prepared (the connection's
    # default cursor is Django's client-binding one).
    cursors = [psycopg.Cursor(conn) for _ in range(len(loads) + 1)]
    sent = [("SELECT", "", _LOCK_SQL)] if lock_ids else []
    sent += [("SELECT", "events", sql) for sql, _ in loads]
    try:
        with statements(*sent):  # one round trip: every statement's span covers it
            with conn.pipeline():
                if lock_ids:
                    keys = sorted({_stream_lock_key(stream_id) for stream_id in lock_ids})
                    cursors[-1].execute(_LOCK_SQL, [keys], prepare=prepare)
                for cursor, (sql, params) in zip(cursors, loads, strict=False):
                    cursor.execute(sql, params, prepare=prepare)
            # Leaving the block synced the pipeline: every result is here, no more waiting.
            return [cursor.fetchall() for cursor in cursors[:-1]]
    except _DRIVER_OPERATIONAL_ERRORS as exc:
        raise StoreUnavailableError(
            f"the event store did not answer in time ({exc}); retry later"
        ) from exc
    finally:
        for cursor in cursors:
            cursor.close()


def _loaded_stream(stream_id: uuid.UUID, rows: list[Any]) -> LoadedStream | None:
    """The rows of one stream's load, sorted by version (the snapshot's row first).

    None when the snapshot fails its check (the caller replays the stream without it).
    """
    snapshot = None
    head = None
    if rows and rows[0][1] is None:
        version, _, schema_version, state, hash_, anchor, signature, key_id = rows[0]
        state = _py_json(state)
        problem = snapshot_problem(
            stream_id, version, schema_version, state, hash_, anchor, signature, key_id
        )
        if problem is not None:
            _reject_snapshot(stream_id, version, problem)
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


# Snapshots whose check passed in this process, by everything the check covered: a stored
# snapshot is loaded again and again (until the next one), and an Ed25519 verification
# costs more than the rest of its load. Bounded; emptied when full or when keys change.
_verified_snapshots: dict[tuple[Any, ...], bool] = {}
_VERIFIED_SNAPSHOTS_MAX = 10_000


def snapshot_problem(
    stream_id: uuid.UUID,
    version: int,
    schema_version: int,
    state: Any,
    event_hash: str | None,
    anchor: str | None,
    signature: str | None,
    key_id: str | None,
) -> str | None:
    """Why a stored snapshot must not be used, or None when it checks out.

    Args:
        event_hash: the stored hash of the stream's event at ``version`` (None: no event).
        anchor, signature, key_id: the snapshot row's own columns.
    """
    if signature is None or key_id is None or anchor is None:
        return "not signed by the application"
    if event_hash is None:
        return f"anchored to version {version}, which the stream does not have"
    if anchor != event_hash:
        return "its anchor is not the hash of the event at its version"
    state_text = canonical_json(state)
    keys = keyring()
    cache_key = (
        stream_id,
        version,
        schema_version,
        anchor,
        signature,
        key_id,
        state_text,
        id(keys),
    )
    if cache_key in _verified_snapshots:
        return None
    try:
        valid = keys.verify(
            key_id,
            signature,
            snapshot_message(stream_id, version, schema_version, anchor, state_text),
        )
    except UnknownKeyError as exc:
        return str(exc)
    if not valid:
        return f"its signature does not verify with key {key_id!r}"
    if len(_verified_snapshots) >= _VERIFIED_SNAPSHOTS_MAX:
        _verified_snapshots.clear()
    _verified_snapshots[cache_key] = True
    return None


_rejections_logged: set[tuple[uuid.UUID, int, str]] = set()


def _reject_snapshot(stream_id: uuid.UUID, version: int, problem: str) -> None:
    snapshots_rejected.add(1)
    # Logged once per process and snapshot: a forged snapshot is loaded again and again.
    if (stream_id, version, problem) in _rejections_logged:
        return
    if len(_rejections_logged) >= _VERIFIED_SNAPSHOTS_MAX:
        _rejections_logged.clear()
    _rejections_logged.add((stream_id, version, problem))
    security_log.warning(
        "security: snapshot of stream %s at version %s rejected (%s); replaying the stream "
        "without it. Run `python manage.py verify_events --full` and investigate who wrote "
        "to the snapshots table.",
        stream_id,
        version,
        problem,
        extra={"stream_id": str(stream_id), "version": version, "security_event": True},
    )


def _event_data(rows: Sequence[Sequence[Any]]) -> list[EventData]:
    loads = _py_json
    if has_upcasters():
        return [EventData(r[0], r[1], *upcast(r[1], r[2], loads(r[3]))) for r in rows]
    return [EventData(r[0], r[1], r[2], loads(r[3])) for r in rows]


def version_at(stream_id: uuid.UUID, at: datetime) -> int:
    """Return the newest version of a stream whose event occurred at or before ``at``.

    0 when the stream had no event yet then (or has none at all). Replay the stream up to
    this version for its state at that time: a prefix, never a filtered subset.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT MAX(version) FROM events WHERE stream_id = %s AND occurred_at <= %s",
            [_db_uuid(stream_id), _db_time(at)],
        )
        row = cursor.fetchone()
    return row[0] or 0


def count_after(position: int) -> int:
    """Return how many stored events come after a global position (a follower's lag)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM events WHERE position > %s", [position])
        return cursor.fetchone()[0]


def head_position() -> int:
    """Return the highest committed global position (0 for an empty store)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT MAX(position) FROM events")
        row = cursor.fetchone()
    return row[0] or 0


def read_all(*, after_position: int, limit: int = 1000) -> list[RecordedEvent]:
    """Return the events after a global position, in position order, whole appends only.

    See :func:`_read_all`.
    """
    with span("event_store.read_all", "project", after_position=after_position) as current:
        events = _read_all(after_position=after_position, limit=limit)
        current.set_attribute("events_count", len(events))
        return events


# The payload and the metadata as their JSON text: decoded when a follower looks at them.
_READ_ALL_SQL = (
    "SELECT position, event_id, stream_id, stream_type, version, event_type, schema_version, "
    "CAST(data AS text), CAST(metadata AS text), occurred_at, recorded_at, commit_id, hash "
    "FROM events WHERE position > %s ORDER BY position LIMIT %s"
)


def _recorded_rows(cursor: Any) -> Callable[[Sequence[Any]], RecordedEvent]:
    """psycopg row factory: a RecordedEvent straight from the binary row (no Python per
    column: UUIDs, times, integers and texts come decoded by psycopg's C loaders; the
    payload and the metadata are decoded when asked)."""
    return RecordedEvent._make


def _select_after(cursor: Any, position: int, limit: int) -> list[RecordedEvent]:
    with _traced(cursor, ("SELECT", "events", _READ_ALL_SQL)):
        if psycopg is not None and type(cursor) is psycopg.Cursor:
            cursor.execute(_READ_ALL_SQL, [position, limit], prepare=_prepare(), binary=True)
            return cursor.fetchall()
        cursor.execute(_READ_ALL_SQL, [position, limit])
        rows = cursor.fetchall()
    return [_to_recorded(row, upcasted=False) for row in rows]


@contextlib.contextmanager
def _follower_cursor() -> Iterator[Any]:
    if connection.vendor == "postgresql" and _prepared_statements():
        with psycopg.Cursor(_pg_connection(), row_factory=_recorded_rows) as cursor:
            yield cursor
    else:
        with connection.cursor() as cursor:
            yield cursor


def _upcasted(events: list[RecordedEvent]) -> list[RecordedEvent]:
    if not has_upcasters():
        return events
    return [_upcast_recorded(event) for event in events]


def _read_all(*, after_position: int, limit: int = 1000) -> list[RecordedEvent]:
    """Return the events after a global position, in position order, whole appends only.

    One SQL statement decides what is visible and fetches it: with appends serialised,
    every committed position below a visible one is visible too, so nothing read past can
    still appear later. A batch never ends in the middle of one append (a transfer's two
    sides arrive together); an append larger than ``limit`` comes whole, alone.

    Args:
        after_position: the reader's checkpoint (0 to start at the beginning).
        limit: the batch size.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    with _follower_cursor() as cursor:
        rows = _select_after(cursor, after_position, limit)
        if len(rows) < limit:
            return _upcasted(rows)
        last_commit = rows[-1].commit_id
        cut = len(rows)
        while cut > 0 and rows[cut - 1].commit_id == last_commit:
            cut -= 1
        if cut > 0:
            rows = rows[:cut]
        else:
            # One append fills the whole batch: deliver all of it (it committed whole). Its
            # positions are contiguous (appends are serialised), so read on in position
            # order until another append's rows begin.
            while True:
                more = _select_after(cursor, rows[-1].position, limit)
                same = [row for row in more if row.commit_id == last_commit]
                rows += same
                if len(same) < limit:
                    break
    return _upcasted(rows)


# --- snapshots ------------------------------------------------------------------------


def save_snapshot(
    stream_id: uuid.UUID,
    *,
    stream_type: str,
    version: int,
    schema_version: int,
    state: dict[str, Any],
    anchor: str | None = None,
) -> bool:
    """Store a signed snapshot of a stream's state at ``version`` (a no-op if one exists there).

    Args:
        anchor: the hash of the stream's event at ``version`` when the caller has it (an
            append's ``AppendResult.heads``); read from the store otherwise. A snapshot with
            a wrong anchor is never used by loads.

    Returns:
        True when a new snapshot row was written.

    Raises:
        InvalidEventError: the state is not storable JSON, or the stream has no event at
            ``version``.
        StoreUnavailableError: the database refused or did not answer.
    """
    _check_json(state, "snapshot state")
    with span("snapshot_store.save", "snapshot", aggregate_id=str(stream_id), version=version):
        try:
            return _save_snapshot(stream_id, stream_type, version, schema_version, state, anchor)
        except _DRIVER_ERRORS as exc:  # psycopg's own cursor: not wrapped in Django's errors
            raise StoreUnavailableError(f"the snapshot was not stored ({exc})") from exc


def _save_snapshot(
    stream_id: uuid.UUID,
    stream_type: str,
    version: int,
    schema_version: int,
    state: dict[str, Any],
    anchor: str | None,
) -> bool:
    cast = "%s::jsonb" if _is_postgres() else "%s"
    state_text = canonical_json(state)
    with _cursor() as cursor:
        if anchor is None:
            anchor_sql = "SELECT hash FROM events WHERE stream_id = %s AND version = %s"
            with _traced(cursor, ("SELECT", "events", anchor_sql)):
                _execute(cursor, anchor_sql, [_db_uuid(stream_id), version])
                row = cursor.fetchone()
            if row is None:
                raise InvalidEventError(
                    f"stream {stream_id} has no event at version {version} to snapshot"
                )
            anchor = row[0]
        key_id, signature = keyring().sign(
            snapshot_message(stream_id, version, schema_version, anchor, state_text)
        )
        insert_sql = (
            "INSERT INTO snapshots (stream_id, stream_type, version, schema_version, state, "
            f"created_at, anchor_hash, signature, key_id) "
            f"VALUES (%s, %s, %s, %s, {cast}, %s, %s, %s, %s) "
            "ON CONFLICT (stream_id, version) DO NOTHING"
        )
        with _traced(cursor, ("INSERT", "snapshots", insert_sql)):
            _execute(
                cursor,
                insert_sql,
                [
                    _db_uuid(stream_id),
                    stream_type,
                    version,
                    schema_version,
                    state_text,
                    _db_time(timezone.now()),
                    anchor,
                    signature,
                    key_id,
                ],
            )
            return cursor.rowcount == 1


def load_snapshot(
    stream_id: uuid.UUID, *, schema_version: int, up_to_version: int | None = None
) -> StoredSnapshot | None:
    """Return the newest snapshot at or below ``up_to_version`` in ``schema_version``."""
    with span("snapshot_store.load", "snapshot", aggregate_id=str(stream_id)) as current:
        snapshot = _load_snapshot(stream_id, schema_version, up_to_version)
        current.set_attribute("snapshot_version", snapshot.version if snapshot else 0)
        return snapshot


def _load_snapshot(
    stream_id: uuid.UUID, schema_version: int, up_to_version: int | None
) -> StoredSnapshot | None:
    """Return the newest snapshot at or below ``up_to_version`` in ``schema_version``.

    Snapshots written by another schema version of the state are never trusted: they are
    passed over (the caller then replays more events). Neither is a snapshot that fails
    its signature or anchor check: None then (logged as a security event).
    """
    sql = (
        "SELECT s.stream_id, s.stream_type, s.version, s.schema_version, s.state, s.created_at, "
        "(SELECT hash FROM events e WHERE e.stream_id = s.stream_id AND e.version = s.version), "
        "s.anchor_hash, s.signature, s.key_id "
        "FROM snapshots s WHERE s.stream_id = %s AND s.schema_version = %s "
        "AND (s.signature IS NOT NULL OR s.id >= "
        "COALESCE((SELECT MIN(snapshots_from_id) FROM signing_epoch), 0))"
    )
    params: list[Any] = [_db_uuid(stream_id), schema_version]
    if up_to_version is not None:
        sql += " AND s.version <= %s"
        params.append(up_to_version)
    sql += " ORDER BY s.version DESC LIMIT 1"
    with _cursor() as cursor, _traced(cursor, ("SELECT", "snapshots", sql)):
        _execute(cursor, sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    state = _py_json(row[4])
    problem = snapshot_problem(stream_id, row[2], row[3], state, *row[6:10])
    if problem is not None:
        _reject_snapshot(stream_id, row[2], problem)
        return None
    return StoredSnapshot(
        stream_id=_py_uuid(row[0]),
        stream_type=row[1],
        version=row[2],
        schema_version=row[3],
        state=state,
        created_at=_py_time(row[5]),
    )
