"""PostgreSQL: prepared statements, pipelined loads, advisory locks and NOTIFY.

Gap-free global order: an append takes one transaction-scoped advisory lock (the append
lock) right before its INSERT and holds it until commit, so positions are handed out in
commit order (``appending``). A statement's NOTIFY is delivered at commit, so followers
wake at once instead of polling.

The hot path runs on psycopg cursors of the store's own on Django's connection (same
session, same transaction as the ORM's): they bind on the server, so the few statements
every command runs are parsed and planned once per connection (prepared) instead of every
time; Django's cursors bind on the client and never prepare. Set
``EVENTSTORE_PREPARED_STATEMENTS = False`` behind a pooler that cannot keep prepared
statements (PgBouncer before 1.22 in transaction mode): Django's cursors are used then.
The psycopg instrumentation traces Django's cursors, not these: their statements' client
spans are the store's own (``telemetry.statements``).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection

from ..errors import StoreUnavailableError
from ..records import RecordedEvent
from ..rows import py_uuid, to_recorded
from ..telemetry import Statement, statements
from .base import INSERT_COLUMNS, ROWS_PER_STATEMENT, Backend, Load, Triggers

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

# The advisory lock that serialises appends ("es" + "append" as a number).
APPEND_LOCK_KEY = 0x6573_6170_7065_6E64
# Every append notifies this channel (delivered at commit, payload-less), so followers can
# wake at once instead of polling. Appends are serialised already, so the lock NOTIFY
# takes at commit costs them little.
APPEND_CHANNEL = "eventstore_appended"
# The streams' locks, in key order: two writers locking the same pair cannot deadlock.
LOCK_SQL = "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k ORDER BY k"
_ROW = (
    "(%s::uuid, %s::uuid, %s, %s::integer, %s, %s::smallint, %s::jsonb, %s::jsonb, "
    "%s::timestamptz, %s::timestamptz, %s, %s::text, %s::text)"
)


def prepared_statements() -> bool:
    """Whether the hot path prepares its statements (``EVENTSTORE_PREPARED_STATEMENTS``)."""
    return bool(getattr(settings, "EVENTSTORE_PREPARED_STATEMENTS", True))


def _prepare() -> bool | None:
    """psycopg's ``prepare`` argument: None lets the connection's ``prepare_threshold``
    decide (a statement is prepared on its third run on one connection, so a connection
    made for one request never pays for a Parse it will not reuse); False never prepares.
    """
    return None if prepared_statements() else False


def _pg_connection() -> Any:
    """Django's own psycopg connection (same session, same transaction as the ORM's)."""
    connection.ensure_connection()
    return connection.connection


def stream_lock_key(stream_id: uuid.UUID) -> int:
    """The advisory lock key of a stream (never the append lock's)."""
    folded = (stream_id.int >> 64) ^ (stream_id.int & 0xFFFF_FFFF_FFFF_FFFF)
    key = folded - (1 << 64) if folded >= 1 << 63 else folded
    # Never the append lock's key: that one is always taken last, by appends.
    return key if key != APPEND_LOCK_KEY else key - 1


def _recorded_rows(cursor: Any) -> Callable[[Sequence[Any]], RecordedEvent]:
    """psycopg row factory: a RecordedEvent straight from the binary row (no Python per
    column: UUIDs, times, integers and texts come decoded by psycopg's C loaders; the
    payload and the metadata are decoded when asked)."""
    return RecordedEvent._make


class PostgresBackend(Backend):
    """PostgreSQL through psycopg 3."""

    vendor = "postgresql"
    autocommit_appends = True
    savepoint_round_trips = True
    json_param = "%s::jsonb"
    integrity_errors = (IntegrityError, *_DRIVER_INTEGRITY_ERRORS)
    operational_errors = (OperationalError, *_DRIVER_OPERATIONAL_ERRORS)
    driver_errors = _DRIVER_ERRORS

    def metadata_text(self, path: Sequence[str]) -> str:
        return "metadata #>> '{" + ",".join(path) + "}'"

    def __init__(self) -> None:
        super().__init__()
        settings_dict = connection.settings_dict
        self.span_attributes["server.address"] = settings_dict.get("HOST") or "localhost"
        self.span_attributes["server.port"] = int(settings_dict.get("PORT") or 5432)

    def db_uuid(self, value: uuid.UUID) -> Any:
        return value

    def db_time(self, value: datetime) -> Any:
        return value

    def cursor(self) -> Any:
        if prepared_statements():
            return psycopg.Cursor(_pg_connection())
        return connection.cursor()

    def traced(self, cursor: Any, *described: tuple[str, str, str]) -> AbstractContextManager[Any]:
        # Django's cursor: the psycopg instrumentation traces its statements already.
        if type(cursor) is not psycopg.Cursor:
            return contextlib.nullcontext()
        return statements(self.span_attributes, *described)

    def execute(self, cursor: Any, sql: str, params: Sequence[Any]) -> None:
        # Statements are prepared only because settings give the connection a
        # ``prepare_threshold`` (Django's default, None, makes psycopg never prepare);
        # tests/eventstore/test_round_trips.py checks ``pg_prepared_statements``.
        if type(cursor) is psycopg.Cursor:
            cursor.execute(sql, params, prepare=_prepare(), binary=False)
        else:
            cursor.execute(sql, params)

    @contextlib.contextmanager
    def follower_cursor(self) -> Iterator[Any]:
        if prepared_statements():
            with psycopg.Cursor(_pg_connection(), row_factory=_recorded_rows) as cursor:
                yield cursor
        else:
            with connection.cursor() as cursor:
                yield cursor

    def select_recorded(self, cursor: Any, sql: str, params: Sequence[Any]) -> list[RecordedEvent]:
        with self.traced(cursor, ("SELECT", "events", sql)):
            if type(cursor) is psycopg.Cursor:
                # Binary results: UUIDs, times and integers load in psycopg's C loaders.
                cursor.execute(sql, params, prepare=_prepare(), binary=True)
                return cursor.fetchall()
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        return [to_recorded(row, upcasted=False) for row in rows]

    def insert_events(
        self,
        cursor: Any,
        rows: list[list[Any]],
        guards: list[str],
        guard_params: list[Any],
        lock_ids: Sequence[uuid.UUID],
    ) -> dict[uuid.UUID, int]:
        by_id: dict[uuid.UUID, int] = {}
        lock_keys = sorted({stream_lock_key(stream_id) for stream_id in lock_ids})
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            values = ", ".join([_ROW] * len(chunk))
            params = [value for row in chunk for value in row]
            if start == 0:
                # One statement takes the append lock (in its FROM clause, evaluated left to
                # right, so no row, and no position, exists before the lock is held),
                # notifies followers and inserts. As a transaction of its own it first
                # takes the streams' locks, in key order as lock_streams() takes them: a
                # command that loaded under them cannot be overtaken by one that loaded
                # without, which waits here and is then refused. The guards may be judged
                # on a snapshot from before the locks: they test immutable rows, and a
                # stream that moved on meanwhile is refused by UNIQUE(stream_id, version).
                stream_locks = "pg_advisory_xact_lock(%s), " * len(lock_keys)
                sql = (
                    f"INSERT INTO events ({INSERT_COLUMNS}) "
                    "SELECT v.*, pg_current_xact_id()::text::bigint "
                    f"FROM (SELECT {stream_locks}pg_advisory_xact_lock(%s), pg_notify(%s, '')) "
                    f"AS append_lock, (VALUES {values}) AS v"
                )
                params[:0] = [*lock_keys, APPEND_LOCK_KEY, APPEND_CHANNEL]
                if guards:
                    sql += " WHERE " + " AND ".join(guards)
                    params += guard_params
            else:  # later statements of a large append: the lock is held already
                sql = (
                    f"INSERT INTO events ({INSERT_COLUMNS}) "
                    f"SELECT v.*, pg_current_xact_id()::text::bigint FROM (VALUES {values}) AS v"
                )
            returned = self.run_insert(cursor, sql, params, len(chunk))
            by_id.update((py_uuid(event_id), position) for position, event_id in returned)
        return by_id

    def lock_streams(self, stream_ids: Iterable[uuid.UUID]) -> None:
        keys = sorted({stream_lock_key(stream_id) for stream_id in stream_ids})
        if not keys:
            return
        try:
            with self.cursor() as cursor, self.traced(cursor, ("SELECT", "", LOCK_SQL)):
                self.execute(cursor, LOCK_SQL, [keys])
        except self.operational_errors as exc:
            raise StoreUnavailableError(
                f"a stream lock was not granted in time ({exc}); retry later"
            ) from exc

    def run_loads(self, loads: list[Load], lock_ids: Sequence[uuid.UUID]) -> list[list[Any]]:
        conn = _pg_connection()
        prepare = _prepare()
        if len(loads) == 1 and not lock_ids:
            # One statement needs no pipeline (whose result handling costs more on long reads).
            try:
                with (
                    psycopg.Cursor(conn) as cursor,
                    statements(self.span_attributes, loads[0].described()),
                ):
                    cursor.execute(loads[0].sql, loads[0].params, prepare=prepare)
                    return [cursor.fetchall()]
            except _DRIVER_OPERATIONAL_ERRORS as exc:
                raise StoreUnavailableError(
                    f"the event store did not answer in time ({exc}); retry later"
                ) from exc
        # psycopg's own Cursor: server-side binding, so it can be prepared (the connection's
        # default cursor is Django's client-binding one).
        cursors = [psycopg.Cursor(conn) for _ in range(len(loads) + 1)]
        sent: list[Statement] = []
        if lock_ids:  # the locks belong to the first load (under its store span, if named)
            parent = loads[0].parent if loads else None
            sent.append(
                ("SELECT", "", LOCK_SQL) if parent is None else ("SELECT", "", LOCK_SQL, parent)
            )
        sent += [load.described() for load in loads]
        try:
            # One round trip: every statement's span covers it.
            with statements(self.span_attributes, *sent):
                with conn.pipeline():
                    if lock_ids:
                        keys = sorted({stream_lock_key(stream_id) for stream_id in lock_ids})
                        cursors[-1].execute(LOCK_SQL, [keys], prepare=prepare)
                    for cursor, load in zip(cursors, loads, strict=False):
                        cursor.execute(load.sql, load.params, prepare=prepare)
                # Leaving the block synced the pipeline: every result is here, no more waiting.
                return [cursor.fetchall() for cursor in cursors[:-1]]
        except _DRIVER_OPERATIONAL_ERRORS as exc:
            raise StoreUnavailableError(
                f"the event store did not answer in time ({exc}); retry later"
            ) from exc
        finally:
            for cursor in cursors:
                cursor.close()

    def try_session_lock(self, key: int) -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            return bool(cursor.fetchone()[0])

    def session_unlock(self, key: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])

    def immutability_triggers(self, tables: Sequence[str]) -> Triggers:
        problems = []
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE c.relname = ANY(%s) AND NOT t.tgisinternal",
                [list(tables)],
            )
            found = {(table, name): enabled for table, name, enabled in cursor.fetchall()}
            # The triggers call this function: an owner could replace its body with a no-op.
            cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = 'eventstore_refuse_change'")
            bodies = [row[0] for row in cursor.fetchall()]
        if len(bodies) != 1 or "RAISE EXCEPTION" not in bodies[0]:
            problems.append(
                "function eventstore_refuse_change() no longer raises: the triggers that "
                "call it refuse nothing"
            )
        return Triggers(found, ("refuse_update_delete", "refuse_truncate"), problems)
