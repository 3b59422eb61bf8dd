"""SQLite: the database's write lock orders appends; Django's cursors do the rest.

Gap-free global order: every transaction takes the database's write lock when it begins
(``transaction_mode = IMMEDIATE``, in settings), so appends are serialised and positions
handed out in commit order, as PostgreSQL's append lock does (``backends.postgres``). The
head position read under that lock is the append's commit id. There is nothing to
prepare, pipeline or notify: each statement is a call into the library.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from django.db import IntegrityError, OperationalError, connection

from ..records import RecordedEvent
from ..rows import py_uuid, to_recorded
from ..telemetry import statements
from .base import INSERT_COLUMNS, ROWS_PER_STATEMENT, Backend, Load, Triggers

_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
_HEAD_SQL = "SELECT COALESCE(MAX(position), 0) + 1 FROM events"


class SqliteBackend(Backend):
    """SQLite through Django's own backend."""

    vendor = "sqlite"
    # The commit id is read under the write lock first: always a transaction.
    autocommit_appends = False
    savepoint_round_trips = False
    json_param = "%s"
    integrity_errors = (IntegrityError,)
    operational_errors = (OperationalError,)
    driver_errors = ()

    def metadata_text(self, path: Sequence[str]) -> str:
        return "json_extract(metadata, '$." + ".".join(path) + "')"

    def db_uuid(self, value: uuid.UUID) -> Any:
        return value.hex

    def db_time(self, value: datetime) -> Any:
        return connection.ops.adapt_datetimefield_value(value)

    def cursor(self) -> Any:
        return connection.cursor()

    def traced(self, cursor: Any, *described: tuple[str, str, str]) -> AbstractContextManager[Any]:
        return statements(self.span_attributes, *described)

    def execute(self, cursor: Any, sql: str, params: Sequence[Any]) -> None:
        cursor.execute(sql, params)

    @contextlib.contextmanager
    def follower_cursor(self) -> Iterator[Any]:
        with connection.cursor() as cursor:
            yield cursor

    def select_recorded(self, cursor: Any, sql: str, params: Sequence[Any]) -> list[RecordedEvent]:
        with statements(self.span_attributes, ("SELECT", "events", sql)):
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
        # BEGIN IMMEDIATE already holds the database's write lock, so the head position
        # read here is final; every statement of this append shares it. The write lock
        # serialises every writer, so there are no streams' locks to take.
        with statements(self.span_attributes, ("SELECT", "events", _HEAD_SQL)):
            cursor.execute(_HEAD_SQL)
            commit_id = cursor.fetchone()[0]
        by_id: dict[uuid.UUID, int] = {}
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            values = ", ".join([_ROW] * len(chunk))
            params = [value for row in chunk for value in row]
            params[:0] = [commit_id]
            sql = (
                f"INSERT INTO events ({INSERT_COLUMNS}) SELECT v.*, %s FROM (VALUES {values}) AS v"
            )
            if start == 0 and guards:
                sql += " WHERE " + " AND ".join(guards)
                params += guard_params
            returned = self.run_insert(cursor, sql, params, len(chunk))
            by_id.update((py_uuid(event_id), position) for position, event_id in returned)
        return by_id

    def lock_streams(self, stream_ids: Iterable[uuid.UUID]) -> None:
        return  # the database's write lock already serialises every writer

    def run_loads(self, loads: list[Load], lock_ids: Sequence[uuid.UUID]) -> list[list[Any]]:
        with connection.cursor() as cursor:
            results = []
            for load in loads:
                with statements(self.span_attributes, load.described()):
                    cursor.execute(load.sql, load.params)
                    results.append(cursor.fetchall())
            return results

    def try_session_lock(self, key: int) -> bool:
        return True  # SQLite serialises writers; verification runs there are short

    def session_unlock(self, key: int) -> None:
        return

    def immutability_triggers(self, tables: Sequence[str]) -> Triggers:
        with connection.cursor() as cursor:
            cursor.execute("SELECT tbl_name, name, sql FROM sqlite_master WHERE type = 'trigger'")
            found = {
                (table, name): "A" if "RAISE(ABORT" in sql else "no-op"
                for table, name, sql in cursor.fetchall()
            }
        return Triggers(found, ("refuse_update", "refuse_delete"), [])
