"""python manage.py run_projections [name ...]"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection

import eventstore as es
from projections.base import ProjectionError
from projections.runner import catch_up, get_projections, status

log = logging.getLogger("projections.runner")

try:  # the LISTEN connection is plain psycopg: its errors are not Django's
    import psycopg

    DATABASE_ERRORS: tuple[type[Exception], ...] = (
        DatabaseError,
        es.StoreUnavailableError,
        psycopg.Error,
    )
except ImportError:  # pragma: no cover - SQLite only
    DATABASE_ERRORS = (DatabaseError, es.StoreUnavailableError)


def _lock_key(name: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(f"projection:{name}".encode(), digest_size=8).digest(), "big", signed=True
    )


class Command(BaseCommand):
    help = "Follow the event store and keep the projections up to date until SIGINT/SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="projections to follow (default: all)")
        parser.add_argument("--batch-size", type=int, default=1000, help="events per batch (1000)")
        parser.add_argument(
            "--poll-interval",
            type=float,
            default=1.0,
            help="seconds between polls (a fallback on PostgreSQL, which wakes on NOTIFY)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            projections = get_projections(options["names"])
        except ProjectionError as exc:
            raise CommandError(str(exc)) from exc
        names = [p.name for p in projections]
        stop = threading.Event()

        def request_stop(signum: int, frame: Any) -> None:
            log.info("signal %s: stopping after the current batch", signum)
            stop.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        follower = _Follower(names, options["batch_size"], options["poll_interval"], stop, self)
        try:
            follower.run()
        finally:
            follower.close()
        self.stdout.write(
            self.style.SUCCESS(f"stopped cleanly; applied {follower.applied} events")
        )


class _Follower:
    def __init__(self, names, batch_size, poll_interval, stop, command) -> None:
        self.names = names
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.stop = stop
        self.command = command
        self.owned: set[str] = set()
        self.listener = None
        self.applied = 0
        self.postgres = connection.vendor == "postgresql"

    def say(self, message: str) -> None:
        self.command.stdout.write(message)

    def run(self) -> None:
        self.say(f"following {', '.join(self.names)} ({connection.vendor}); stop with Ctrl-C")
        while not self.stop.is_set():
            try:
                self._acquire()
                if self.owned:
                    owned = [n for n in self.names if n in self.owned]
                    self.applied += catch_up(
                        owned, limit=self.batch_size, should_stop=self.stop.is_set
                    )
                    status(owned)  # publishes the lag gauge
                self._wait()
            except ProjectionError as exc:
                log.error("%s", exc)
                self.command.stderr.write(f"{exc}; retrying in {self.poll_interval * 5:.0f} s")
                self.stop.wait(self.poll_interval * 5)
            except DATABASE_ERRORS as exc:
                # The database went away: drop the connection (and the locks with it),
                # wait, start again. Nothing was half-applied: batches are transactions.
                log.warning("database error, retrying: %s", exc)
                self.command.stderr.write(f"database unavailable ({exc}); retrying")
                self._drop_connection()
                self.stop.wait(self.poll_interval)

    def _acquire(self) -> None:
        """Take the lock of every projection nobody else follows (PostgreSQL).

        A second runner waits as a standby and takes over when the first one stops or dies
        (its session ends, and its locks with it).
        """
        if not self.postgres:
            self.owned = set(self.names)
            return
        for name in self.names:
            if name in self.owned:
                continue
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [_lock_key(name)])
                if cursor.fetchone()[0]:
                    self.owned.add(name)
                    self.say(f"following {name}")
        waiting = set(self.names) - self.owned
        if waiting and not self.owned:
            log.info("standing by: %s followed by another runner", ", ".join(sorted(waiting)))

    def _wait(self) -> None:
        if not self.postgres:
            self.stop.wait(self.poll_interval)
            return
        if self.listener is None:
            import psycopg

            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            self.listener = psycopg.connect(**params, autocommit=True)
            self.listener.execute(f"LISTEN {es.APPEND_CHANNEL}")
        # Wake on the first notification or after the poll interval, whichever comes first;
        # a notification missed while busy is covered by the catch-up that follows anyway.
        deadline = time.monotonic() + self.poll_interval
        while not self.stop.is_set() and time.monotonic() < deadline:
            for _ in self.listener.notifies(timeout=min(0.25, self.poll_interval), stop_after=1):
                return

    def _drop_connection(self) -> None:
        self.owned.clear()
        with contextlib.suppress(DatabaseError):
            connection.close()
        if self.listener is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self.listener.close()
            self.listener = None

    def close(self) -> None:
        if self.postgres and self.owned:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock_all()")
            except DatabaseError:
                pass
        self._drop_connection()
