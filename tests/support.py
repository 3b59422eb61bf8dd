"""Helpers shared by the tests (not part of the product)."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from django.db import connection, connections

IMMUTABLE_TABLES = ("events", "snapshots")


@contextlib.contextmanager
def triggers_disabled(conn: Any = None) -> Iterator[None]:
    """Switch the immutability triggers off, as the database owner could, then back on.

    On PostgreSQL the triggers are disabled by name and re-enabled ``ALWAYS``; on SQLite
    they are dropped and recreated from the SQL that ``sqlite_master`` keeps.
    """
    conn = conn or connection
    with conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            cursor.execute(
                "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE c.relname = ANY(%s) AND NOT t.tgisinternal",
                [list(IMMUTABLE_TABLES)],
            )
            triggers = cursor.fetchall()
            for table, name in triggers:
                cursor.execute(f'ALTER TABLE {table} DISABLE TRIGGER "{name}"')
            try:
                yield
            finally:
                with conn.cursor() as again:
                    for table, name in triggers:
                        again.execute(f'ALTER TABLE {table} ENABLE ALWAYS TRIGGER "{name}"')
        else:
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
                f"({', '.join('?' * len(IMMUTABLE_TABLES))})".replace("?", "%s"),
                list(IMMUTABLE_TABLES),
            )
            triggers = cursor.fetchall()
            for name, _ in triggers:
                cursor.execute(f'DROP TRIGGER "{name}"')
            try:
                yield
            finally:
                with conn.cursor() as again:
                    for _, sql in triggers:
                        again.execute(sql)


def now() -> datetime:
    return datetime.now(UTC)


def new_event(event_type: str = "Happened", **data: Any) -> Any:
    from eventstore import NewEvent

    return NewEvent(event_type=event_type, data=data or {"n": 1}, occurred_at=now())


def run_threads(
    count: int, target: Callable[[int, threading.Barrier], Any], *, timeout: float = 120
) -> list[Any]:
    """Run ``target(i, barrier)`` in ``count`` threads, each with its own connection.

    Returns each thread's result or the exception it raised.
    """
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def runner(index: int) -> None:
        try:
            results[index] = target(index, barrier)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a worker thread did not finish"
    return results


def stream() -> uuid.UUID:
    return uuid.uuid4()


def ensure_roles() -> None:
    """Recreate the staff groups if a transactional test's flush removed them."""
    import importlib

    from django.apps import apps

    roles = importlib.import_module("bank.migrations.0002_staff_roles")
    roles.create_roles(apps, None)


def database_url(name: str | None = None, *, user: str | None = None) -> str:
    """The PostgreSQL URL of the test database (or of ``name`` on the same server), for
    processes the tests start."""
    s = connection.settings_dict
    host, port = s["HOST"] or "127.0.0.1", s["PORT"] or 5432
    return f"postgres://{user or s['USER']}@{host}:{port}/{name or s['NAME']}"
