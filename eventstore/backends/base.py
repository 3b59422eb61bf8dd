"""What the event store asks of a database: one method per vendor difference.

The store's modules write their SQL once and call one backend object, chosen from the
connection's vendor (``backends.backend()``), for everything PostgreSQL and SQLite do
differently:

- value adaptation: how a UUID and a time are passed as parameters, and a JSON
  parameter's placeholder (what comes back is read the same way on both: ``rows``);
- the hot path's cursor: on PostgreSQL a psycopg cursor of the store's own that prepares
  its statements, the pipeline that sends a command's loads in one round trip, and the
  binary rows of the follower's reads;
- the append's INSERT and its locking: what hands out positions in commit order, the
  commit id, the streams' locks, and the NOTIFY that wakes followers;
- which driver errors mean a refused append or a database that did not answer;
- verification's lock and the catalogue of the immutability triggers.

A backend holds nothing that changes (one is shared by every thread) and is called once
per operation, never once per event: a loop over events binds ``db_uuid`` and ``db_time``
first.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, ClassVar, NamedTuple

from django.db import connection
from opentelemetry import trace

from ..records import RecordedEvent
from ..telemetry import Statement

# The columns an append writes (``position`` is the table's identity).
INSERT_COLUMNS = (
    "event_id, stream_id, stream_type, version, event_type, schema_version, data, metadata, "
    "occurred_at, recorded_at, hash, signature, key_id, commit_id"
)
# All events written by one transaction share a commit id: PostgreSQL's transaction id;
# on SQLite the store's head position + 1 under the write lock (fresh: BEGIN IMMEDIATE).
# Appends larger than this are written in several statements of one transaction.
ROWS_PER_STATEMENT = 1000
# Checked after the lock, in the INSERT itself: the head the events chain to is still there.
GUARD = "EXISTS (SELECT 1 FROM events WHERE stream_id = %s AND version = %s AND hash = %s)"


class Load(NamedTuple):
    """One statement of a load (``loading``): its SQL, parameters, the table it reads (for
    its client span) and the store span that span belongs under (None: the current one)."""

    sql: str
    params: list[Any]
    collection: str = "events"
    parent: trace.Span | None = None

    def described(self) -> Statement:
        """The statement as ``telemetry.statements`` takes it."""
        if self.parent is None:
            return ("SELECT", self.collection, self.sql)
        return ("SELECT", self.collection, self.sql, self.parent)


class VersionMismatch(Exception):
    """A stream head differs from the expected version (the append resolves it after rollback)."""


class Triggers(NamedTuple):
    """The immutability triggers found, as the vendor's catalogue describes them.

    Attributes:
        found: ``{(table, trigger name): state}``; state ``"A"`` is enabled always.
        suffixes: the trigger names each table must have, after ``<table>_``.
        problems: what is wrong besides the triggers themselves.
    """

    found: dict[tuple[str, str], Any]
    suffixes: tuple[str, ...]
    problems: list[str]


class Backend(abc.ABC):
    """The operations whose SQL or driver use differs between vendors."""

    vendor: ClassVar[str]
    # An append outside any transaction, its heads known, is one statement in autocommit.
    autocommit_appends: ClassVar[bool]
    # A savepoint costs round trips: worth sparing when the caller allows (``savepoint``).
    savepoint_round_trips: ClassVar[bool]
    # The placeholder of a JSON parameter.
    json_param: ClassVar[str]
    # Errors that mean a refused append (a constraint), or a database that did not answer
    # (a lock or statement timeout, a lost connection), from Django's cursors or the
    # driver's own; and every error of the driver's own cursors.
    integrity_errors: ClassVar[tuple[type[Exception], ...]]
    operational_errors: ClassVar[tuple[type[Exception], ...]]
    driver_errors: ClassVar[tuple[type[Exception], ...]]

    def __init__(self) -> None:
        settings_dict = connection.settings_dict
        # What every statement span carries (``telemetry.statements``), after
        # OpenTelemetry's database conventions.
        self.span_attributes: dict[str, Any] = {
            "db.system": self.vendor,
            "db.system.name": self.vendor,
            "db.namespace": str(settings_dict.get("NAME") or ""),
        }

    @abc.abstractmethod
    def db_uuid(self, value: uuid.UUID) -> Any:
        """A UUID as a statement parameter."""

    @abc.abstractmethod
    def db_time(self, value: datetime) -> Any:
        """An aware datetime as a statement parameter."""

    @abc.abstractmethod
    def metadata_text(self, path: Sequence[str]) -> str:
        """The SQL expression of the text at ``path`` in an event's metadata (NULL when
        absent). ``path``'s keys are identifiers, checked by the caller."""

    @abc.abstractmethod
    def cursor(self) -> Any:
        """A cursor for the hot path (appends, heads, versions, snapshots), on Django's
        connection: same session, same transaction as the ORM's."""

    @abc.abstractmethod
    def traced(self, cursor: Any, *described: tuple[str, str, str]) -> AbstractContextManager[Any]:
        """The client spans of statements run on ``cursor`` (``telemetry.statements``)
        that no instrumentation makes already."""

    @abc.abstractmethod
    def execute(self, cursor: Any, sql: str, params: Sequence[Any]) -> None:
        """Run a statement on a cursor of ``cursor()``."""

    @abc.abstractmethod
    def follower_cursor(self) -> AbstractContextManager[Any]:
        """A cursor for ``select_recorded`` (a follower's reads of the global order)."""

    @abc.abstractmethod
    def select_recorded(self, cursor: Any, sql: str, params: Sequence[Any]) -> list[RecordedEvent]:
        """Run a SELECT of ``rows.EVENT_COLUMNS`` on a ``follower_cursor()``; its rows as
        RecordedEvents, not upcast."""

    @abc.abstractmethod
    def insert_events(
        self,
        cursor: Any,
        rows: list[list[Any]],
        guards: list[str],
        guard_params: list[Any],
        lock_ids: Sequence[uuid.UUID],
    ) -> dict[uuid.UUID, int]:
        """INSERT an append's rows (``INSERT_COLUMNS`` but the commit id), at most
        ROWS_PER_STATEMENT per statement, under the append lock; return their positions.

        Args:
            cursor: a cursor of ``cursor()``, in the append's transaction (or autocommit,
                for one statement).
            rows: the rows, in order.
            guards: ``GUARD`` once per stream that has events already; ``guard_params``
                their parameters. The first statement inserts nothing unless all hold.
            lock_ids: the streams whose locks to take first (an append that is a
                transaction of its own); empty otherwise.

        Returns:
            Each inserted event's position, by event id.

        Raises:
            VersionMismatch: a statement inserted fewer rows than given (a guard failed).
        """

    def run_insert(
        self, cursor: Any, sql: str, params: list[Any], count: int
    ) -> list[tuple[int, Any]]:
        """Run one ``INSERT ...`` of ``count`` rows, returning (position, event id) of each.

        Raises:
            VersionMismatch: fewer rows were inserted (a guard failed).
        """
        sql += " RETURNING position, event_id"
        with self.traced(cursor, ("INSERT", "events", sql)):
            self.execute(cursor, sql, params)
            returned: list[tuple[int, Any]] = cursor.fetchall()
        if len(returned) != count:
            raise VersionMismatch
        return returned

    @abc.abstractmethod
    def lock_streams(self, stream_ids: Iterable[uuid.UUID]) -> None:
        """Take the streams' locks until the end of the current transaction, in one fixed
        order (``appending.lock_streams``).

        Raises:
            StoreUnavailableError: a lock was not granted within ``lock_timeout``.
        """

    @abc.abstractmethod
    def run_loads(self, loads: list[Load], lock_ids: Sequence[uuid.UUID]) -> list[list[Any]]:
        """Run the loads (after taking the locks of ``lock_ids``, if any); each one's rows.

        Raises:
            StoreUnavailableError: a lock or the database did not answer in time.
        """

    @abc.abstractmethod
    def try_session_lock(self, key: int) -> bool:
        """Take a lock held until ``session_unlock`` if nobody holds it; whether it was."""

    @abc.abstractmethod
    def session_unlock(self, key: int) -> None:
        """Release a lock taken by ``try_session_lock``."""

    @abc.abstractmethod
    def immutability_triggers(self, tables: Sequence[str]) -> Triggers:
        """The immutability triggers on ``tables`` as the database's catalogue has them."""
