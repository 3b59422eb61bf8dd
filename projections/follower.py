"""The follower engine: one loop for every consumer of the store's global order.

``run_projections`` and ``relay_events`` are thin commands over :class:`Follower`. A
follower calls its *step* (handle the next batch after the consumer's own checkpoint, in
one transaction, and return how many events it handled) until the step handles nothing,
then waits for the next append: on PostgreSQL it wakes on the store's NOTIFY
(``eventstore.APPEND_CHANNEL``), with ``poll_interval`` as a fallback; elsewhere it polls.

On PostgreSQL a follower first takes a session advisory lock per name in ``locks`` and
steps only for the names it holds: a second follower of the same names stands by and takes
over when the first one stops or dies (its session ends, and its locks with it). A failing
step is retried after a growing wait (:class:`Backoff`); a database error also drops the
connection, the locks and the LISTEN with it, and the next round starts afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from opentelemetry.trace import Status, StatusCode, use_span

import eventstore as es

from .models import DeadLetter
from .telemetry import tracer

log = logging.getLogger("projections.follower")

try:  # the LISTEN connection is plain psycopg: its errors are not Django's
    import psycopg
except ImportError:  # pragma: no cover - SQLite only, or Django on psycopg2: poll
    psycopg = None  # type: ignore[assignment]

DATABASE_ERRORS: tuple[type[Exception], ...] = (
    DatabaseError,
    es.StoreUnavailableError,
    *((psycopg.Error,) if psycopg is not None else ()),
)

DEFAULT_ATTEMPTS = 3
"""How many times a consumer tries an event before it parks it (the commands' --attempts)."""

Step = Callable[[list[str]], int]
"""Handles the next batch for the lock names held (in ``locks`` order); returns its size."""


def lock_key(name: str) -> int:
    """The advisory lock key of a follower's name.

    The derivation never changes, so that runners of older releases exclude newer ones.
    """
    digest = hashlib.blake2b(f"projection:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True, slots=True)
class Backoff:
    """The waits after consecutive failures: ``first`` seconds, doubling up to ``longest``."""

    first: float = 0.5
    longest: float = 30.0

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield min(delay, self.longest)
            delay *= 2


class Hooks:
    """What a follower reports, between steps and in its own thread; each does nothing here."""

    def leading(self, name: str) -> None:
        """This follower took the lock of ``name`` (PostgreSQL)."""

    def standing_by(self, names: list[str]) -> None:
        """Other followers hold every lock; called once each time this one starts waiting."""

    def progress(self, handled: int) -> None:
        """A step handled ``handled`` events (never 0)."""

    def caught_up(self, held: list[str]) -> None:
        """A step handled nothing: the follower is about to wait for the next append."""

    def failed(self, error: Exception, retry_in: float, *, database: bool) -> None:
        """A round failed (``database``: the database did, and the connection was dropped)."""

    def recovered(self) -> None:
        """A round succeeded after one or more failures."""


class Follower:
    """Follow the global order with ``step`` until :meth:`stop` (or, with ``once``, caught up).

    Args:
        step: handles the next batch for the names held; returns how many events it handled.
        name: what logs and spans call this follower.
        locks: names to take an advisory lock for (see :func:`lock_key`); empty: no
            leadership, every follower steps.
        channel: the NOTIFY channel to wake on; ``None``: poll only.
        poll_interval: the longest wait for the next append, in seconds.
        backoff: the waits after consecutive failures.
        retry_on: errors of the step that are waited out and retried (database errors
            always are); any other error ends :meth:`run`.
        fatal: errors that end :meth:`run` even when ``retry_on`` covers them (a
            configuration the server refused: waiting will not fix it).
        give_up_after: end :meth:`run` by raising the last error after this many
            consecutive failed rounds (``None``: never give up).
        once: return at the first step that handles nothing instead of waiting.
        hooks: what to report to (the command's output).
    """

    def __init__(
        self,
        step: Step,
        *,
        name: str,
        locks: Sequence[str] = (),
        channel: str | None = es.APPEND_CHANNEL,
        poll_interval: float = 1.0,
        backoff: Backoff = Backoff(),
        retry_on: tuple[type[Exception], ...] = (),
        fatal: tuple[type[Exception], ...] = (),
        give_up_after: int | None = None,
        once: bool = False,
        hooks: Hooks | None = None,
    ) -> None:
        self.step = step
        self.name = name
        self.locks = list(locks)
        self.channel = channel
        self.poll_interval = poll_interval
        self.backoff = backoff
        self.retry_on = retry_on
        self.fatal = fatal
        self.give_up_after = give_up_after
        self.once = once
        self.hooks = hooks or Hooks()
        self.handled = 0
        self._stop = threading.Event()
        self._postgres = False
        self._held: set[str] = set()
        self._standing_by = False
        self._listener: Any = None
        self._delays: Iterator[float] | None = None  # set while failing
        self._failures = 0  # consecutive failed rounds
        self.last_error: Exception | None = None  # the current failure; None once recovered

    # --- stopping ----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current step (safe from any thread)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @contextlib.contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """Stop after the current step on SIGINT or SIGTERM (main thread only)."""

        def request_stop(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: stopping after the current batch", signum)
            self.stop()

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    # --- the loop ----------------------------------------------------------------------

    def run(self) -> int:
        """Follow until stopped; return how many events the steps handled in all."""
        self._postgres = connection.vendor == "postgresql"
        try:
            while not self.stopped:
                started = time.time_ns()
                try:
                    if self._round():
                        return self.handled
                except self.fatal:
                    raise
                except DATABASE_ERRORS as exc:
                    # Nothing was half-applied (a step is one transaction): drop the session,
                    # and the locks with it, and start again once the database is back.
                    self._drop_connection()
                    self._failed(exc, started, database=True)
                except self.retry_on as exc:
                    self._failed(exc, started, database=False)
            return self.handled
        finally:
            self._close()

    def _round(self) -> bool:
        """Lead (or stand by), catch up, wait; return True when ``once`` is done."""
        held = self._lead()
        if self.locks and not held:
            self._succeeded()
            self._pause(self.poll_interval)
            return False
        # LISTEN before reading, so that an append committed meanwhile still wakes us.
        self._listen()
        while not self.stopped:
            handled = self.step(held)
            self._succeeded()
            if not handled:
                self.hooks.caught_up(held)
                if self.once:
                    return True
                self._wait()
                return False
            self.handled += handled
            self.hooks.progress(handled)
        return False

    def _succeeded(self) -> None:
        self._failures = 0
        self.last_error = None
        if self._delays is not None:
            self._delays = None
            log.info("%s: working again", self.name)
            self.hooks.recovered()

    def _failed(self, error: Exception, started: int, *, database: bool) -> None:
        self._failures += 1
        self.last_error = error
        if self.give_up_after is not None and self._failures >= self.give_up_after:
            log.warning(
                "%s: giving up after %d failed rounds: %r", self.name, self._failures, error
            )
            raise error
        if self._delays is None:
            self._delays = self.backoff.delays()
        retry_in = next(self._delays)
        # The span covers the failed round; the log line below carries its trace id.
        span = tracer.start_span(
            "follower.retry",
            start_time=started,
            attributes={"follower": self.name, "database": database, "retry_in_s": retry_in},
        )
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__qualname__))
        with use_span(span, end_on_exit=True):
            log.warning("%s failed, retrying in %.1f s: %r", self.name, retry_in, error)
            self.hooks.failed(error, retry_in, database=database)
        self._pause(retry_in)

    # --- leadership --------------------------------------------------------------------

    def _lead(self) -> list[str]:
        """Try the locks this follower does not hold yet; return the names it holds."""
        if not self._postgres:
            return list(self.locks)
        for name in self.locks:
            if name not in self._held:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_key(name)])
                    if cursor.fetchone()[0]:
                        self._held.add(name)
                        log.info("%s: leading %s", self.name, name)
                        self.hooks.leading(name)
        held = [n for n in self.locks if n in self._held]
        standing_by = bool(self.locks) and not held
        if standing_by and not self._standing_by:
            log.info("standing by: %s followed by another runner", ", ".join(self.locks))
            self.hooks.standing_by(list(self.locks))
        self._standing_by = standing_by
        return held

    # --- waking ------------------------------------------------------------------------

    def _listen(self) -> None:
        if self._listener is not None or not self._postgres or self.channel is None:
            return
        if psycopg is None:  # pragma: no cover - Django on psycopg2
            log.warning("%s: no psycopg to LISTEN with; polling", self.name)
            self.channel = None
            return
        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        listener = psycopg.connect(**params, autocommit=True)
        try:
            listener.execute(f"LISTEN {self.channel}")
        except psycopg.Error:
            listener.close()
            raise
        self._listener = listener

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or until a stop is asked.

        In slices of 0.25 s: a signal the kernel delivers to another thread of the process
        does not wake the main thread, whose Python handler (the stop) runs only once it wakes.
        """
        deadline = time.monotonic() + seconds
        while not self.stopped and (remaining := deadline - time.monotonic()) > 0:
            self._stop.wait(min(remaining, 0.25))

    def _wait(self) -> None:
        """Until an append is announced, the poll interval passes, or a stop is asked."""
        if self._listener is None:
            self._pause(self.poll_interval)
            return
        # Notifications are read in short slices so that a stop is seen within 0.25 s; one
        # missed while stepping only makes the next step find more.
        deadline = time.monotonic() + self.poll_interval
        while not self.stopped and (remaining := deadline - time.monotonic()) > 0:
            for _ in self._listener.notifies(timeout=min(0.25, remaining), stop_after=1):
                return

    # --- cleaning up -------------------------------------------------------------------

    def _drop_connection(self) -> None:
        self._held.clear()
        self._standing_by = False
        with contextlib.suppress(DatabaseError):
            connection.close()
        self._close_listener()

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(*DATABASE_ERRORS, OSError):  # it may be broken already
                self._listener.close()
            self._listener = None

    def _close(self) -> None:
        """Release the locks (a standby takes over at once) and the LISTEN connection."""
        if self._held:
            with contextlib.suppress(*DATABASE_ERRORS), connection.cursor() as cursor:
                for name in self._held:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_key(name)])
            self._held.clear()
        self._close_listener()


# --- dead letters ----------------------------------------------------------------------


@dataclass(slots=True)
class Failure:
    """An event's failures so far (counted in memory: a restarted follower counts afresh)."""

    event: es.RecordedEvent
    error: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime


@dataclass(frozen=True, slots=True)
class Retried:
    """What retrying the parked events did."""

    resolved: int
    still_parked: int


def describe(event: es.RecordedEvent) -> str:
    """``MoneyDeposited at position 7 (version 2 of <stream>)``: an event, for messages."""
    return (
        f"{event.event_type} at position {event.position} "
        f"(version {event.version} of {event.stream_id})"
    )


def waits_for_text(position: int) -> str:
    return f"waits for parked event at position {position}"


class Parking:
    """Counts the failures of one follower's events and parks those that keep failing.

    Args:
        follower: the follower's name (a projection, or ``relay:<stream>``).
        attempts: tries before an event is parked; ``None``: never park, the caller raises.
        on_park: called with each parked event's record once its transaction commits.
    """

    def __init__(
        self,
        follower: str,
        *,
        attempts: int | None = DEFAULT_ATTEMPTS,
        on_park: Callable[[DeadLetter], None] | None = None,
    ) -> None:
        if attempts is not None and attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.follower = follower
        self.attempts = attempts
        self.on_park = on_park
        self._failures: dict[int, Failure] = {}

    def blocked(self) -> dict[uuid.UUID, int]:
        """The streams with a parked event: each with the position of its first one."""
        first: dict[uuid.UUID, int] = {}
        for stream_id, position in (
            DeadLetter.objects.filter(follower=self.follower, resolved_at__isnull=True)
            .order_by("position")
            .values_list("stream_id", "position")
        ):
            first.setdefault(stream_id, position)
        return first

    def failed(self, event: es.RecordedEvent, error: str) -> Failure:
        """Count one more failure of ``event``; return its failures so far."""
        now = timezone.now()
        failure = self._failures.get(event.position)
        if failure is None:
            failure = self._failures[event.position] = Failure(event, error, 0, now, now)
        failure.attempts += 1
        failure.error, failure.last_failed_at = error, now
        return failure

    def exhausted(self, failure: Failure) -> bool:
        """Whether the event has failed as often as it may: park it."""
        return self.attempts is not None and failure.attempts >= self.attempts

    def park(self, failure: Failure) -> None:
        """Park an event that kept failing (in the caller's transaction)."""
        self._save(
            failure.event,
            error=failure.error,
            waits_for=None,
            attempts=failure.attempts,
            first=failure.first_failed_at,
            last=failure.last_failed_at,
        )

    def park_behind(self, event: es.RecordedEvent, position: int) -> None:
        """Park an event of a stream whose event at ``position`` is parked."""
        now = timezone.now()
        self._save(
            event,
            error=waits_for_text(position),
            waits_for=position,
            attempts=0,
            first=now,
            last=now,
        )

    def _save(
        self,
        event: es.RecordedEvent,
        *,
        error: str,
        waits_for: int | None,
        attempts: int,
        first: datetime,
        last: datetime,
    ) -> None:
        # A row may be there already, resolved: a rebuild replays what was retried before.
        letter, _ = DeadLetter.objects.update_or_create(
            follower=self.follower,
            position=event.position,
            defaults={
                "stream_id": event.stream_id,
                "version": event.version,
                "event_id": event.event_id,
                "event_type": event.event_type,
                "error": error,
                "waits_for": waits_for,
                "attempts": attempts,
                "first_failed_at": first,
                "last_failed_at": last,
                "resolved_at": None,
            },
        )
        # Forgotten only once the park commits: a round that rolls back (another event of
        # the batch still had tries left) keeps the count, so the event is parked again at
        # once in the next round, and two events failing in turn cannot stall the follower.
        transaction.on_commit(lambda: self._failures.pop(event.position, None))
        log.warning("%s: parked %s: %s", self.follower, describe(event), error)
        if self.on_park is not None:
            on_park = self.on_park
            transaction.on_commit(lambda: on_park(letter))

    def retry(
        self,
        apply: Callable[[es.RecordedEvent], None],
        *,
        transient: tuple[type[Exception], ...],
        progress: Callable[[int], None] | None = None,
    ) -> Retried:
        """Apply the parked events again, in position order; mark those that apply resolved.

        An event that fails again stays parked (its error and attempts updated), and so do
        the later parked events of its stream. Passes repeat while they resolve something,
        so that an event a running follower parked meanwhile behind a resolved one goes too.

        Args:
            apply: handles one event; raises when it cannot.
            transient: errors that are not the event's fault (the database, the broker):
                they propagate, and the event stays parked as it was.
            progress: called with 1 for each parked event tried.
        """
        resolved = 0
        while True:
            this_pass = self._retry_pass(apply, transient=transient, progress=progress)
            resolved += this_pass.resolved
            if not this_pass.resolved or not this_pass.still_parked:
                return Retried(resolved, this_pass.still_parked)

    def _retry_pass(
        self,
        apply: Callable[[es.RecordedEvent], None],
        *,
        transient: tuple[type[Exception], ...],
        progress: Callable[[int], None] | None,
    ) -> Retried:
        failed_streams: set[uuid.UUID] = set()
        resolved = still = 0
        letters = DeadLetter.objects.filter(
            follower=self.follower, resolved_at__isnull=True
        ).order_by("position")
        for letter in letters:
            if progress is not None:
                progress(1)
            if letter.stream_id in failed_streams:
                still += 1
                continue
            (event,) = es.read_stream(
                letter.stream_id, after_version=letter.version - 1, up_to_version=letter.version
            )
            try:
                apply(event)
            except transient:
                raise
            except Exception as exc:  # noqa: BLE001 - the event's own failure: it stays parked
                letter.attempts += 1
                letter.error = error_text(exc)
                letter.waits_for = None
                letter.last_failed_at = timezone.now()
                letter.save(update_fields=["attempts", "error", "waits_for", "last_failed_at"])
                log.warning("%s: %s still fails: %s", self.follower, describe(event), letter.error)
                failed_streams.add(letter.stream_id)
                still += 1
                continue
            letter.resolved_at = timezone.now()
            letter.save(update_fields=["resolved_at"])
            resolved += 1
        return Retried(resolved, still)


def error_text(error: BaseException) -> str:
    """An error as a dead letter records it: its type and its message."""
    message = str(error) or getattr(error, "description", None) or ""
    return f"{type(error).__name__}: {message}" if message else repr(error)


def parked(follower: str | None = None, *, limit: int | None = None) -> list[DeadLetter]:
    """The parked (unresolved) events, of one follower or of all, in position order."""
    letters = DeadLetter.objects.filter(resolved_at__isnull=True)
    if follower is not None:
        letters = letters.filter(follower=follower)
    return list(letters.order_by("follower", "position")[:limit])
