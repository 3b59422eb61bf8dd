"""The follower engine itself: waking on NOTIFY, standing by, backing off, stopping."""

from __future__ import annotations

import io
import os
import signal
import threading
import uuid

import pytest
from django.core.management import call_command
from django.db import connection, connections
from opentelemetry.trace import StatusCode

import eventstore as es
from bank.services import Actor
from bank.services import accounts as svc
from projections.follower import Backoff, Follower, Hooks, lock_key
from tests.projections.helpers import read_model_balances, wait_until
from tests.support import run_threads

pytestmark = pytest.mark.django_db(transaction=True)

ACTOR = Actor.system("tests")


class Tail:
    """A step that follows the global order from the head it was made at, in memory."""

    def __init__(self) -> None:
        self.position = es.head_position()
        self.seen: list[es.RecordedEvent] = []
        self.calls = 0

    def __call__(self, held: list[str]) -> int:
        self.calls += 1
        events = es.read_all(after_position=self.position, limit=100)
        if events:
            self.position = events[-1].position
            self.seen += events
        return len(events)

    def streams(self) -> set[uuid.UUID]:
        return {e.stream_id for e in self.seen}


class Recorder(Hooks):
    def __init__(self) -> None:
        self.led: list[str] = []
        self.stood_by: list[list[str]] = []
        self.handled: list[int] = []
        self.failures: list[tuple[str, float, bool]] = []
        self.recoveries = 0
        self.waiting = threading.Event()

    def leading(self, name: str) -> None:
        self.led.append(name)

    def standing_by(self, names: list[str]) -> None:
        self.stood_by.append(names)

    def progress(self, handled: int) -> None:
        self.handled.append(handled)

    def caught_up(self, held: list[str]) -> None:
        self.waiting.set()

    def failed(self, error: Exception, retry_in: float, *, database: bool) -> None:
        self.failures.append((type(error).__name__, retry_in, database))

    def recovered(self) -> None:
        self.recoveries += 1


class Background:
    """Runs a follower in a thread of its own (with its own database connection)."""

    def __init__(self, follower: Follower) -> None:
        self.follower = follower
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.follower.run()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            self.errors.append(exc)
        finally:
            connections.close_all()

    def stop(self) -> None:
        self.follower.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the follower did not stop"
        assert self.errors == []


def _lock_is_free(name: str) -> bool:
    """Whether another session could take the lock of ``name`` now (it gives it back)."""

    def attempt(i, barrier):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_key(name)])
            free = cursor.fetchone()[0]
            if free:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_key(name)])
        return free

    (free,) = run_threads(1, attempt)
    return free


def test_the_lock_key_is_the_one_earlier_releases_used():
    # A runner of the previous release and one of this release must exclude each other.
    assert lock_key("balances") == 225650605499489388
    assert lock_key("relay:BANK_EVENTS") == 8005375125811833104


@pytest.mark.postgres
def test_a_follower_wakes_on_notify_long_before_its_poll_interval():
    tail, hooks = Tail(), Recorder()
    background = Background(Follower(tail, name="woken", poll_interval=30, hooks=hooks))
    try:
        wait_until(hooks.waiting.is_set, "the follower to wait for appends", timeout=30)
        account = svc.open_account(holder_name="Notify", actor=ACTOR)
        # The poll would come after 30 s: seeing the append within 10 s is the NOTIFY.
        wait_until(lambda: account.id in tail.streams(), "the NOTIFY to wake it", timeout=10)
    finally:
        background.stop()


def test_without_a_channel_a_follower_polls():
    tail, hooks = Tail(), Recorder()
    background = Background(
        Follower(tail, name="polling", channel=None, poll_interval=0.05, hooks=hooks)
    )
    try:
        wait_until(hooks.waiting.is_set, "the follower to wait for appends", timeout=30)
        account = svc.open_account(holder_name="Polled", actor=ACTOR)
        wait_until(lambda: account.id in tail.streams(), "a poll to find the append", timeout=30)
    finally:
        background.stop()


@pytest.mark.postgres
def test_a_standby_takes_over_when_the_leader_stops():
    lock = f"test:{uuid.uuid4().hex}"
    first_hooks, second_hooks = Recorder(), Recorder()
    second_tail = Tail()
    first = Background(
        Follower(Tail(), name="first", locks=[lock], poll_interval=0.1, hooks=first_hooks)
    )
    second = None
    try:
        wait_until(lambda: first_hooks.led == [lock], "the first follower to lead", timeout=30)
        second = Background(
            Follower(
                second_tail, name="second", locks=[lock], poll_interval=0.1, hooks=second_hooks
            )
        )
        wait_until(lambda: second_hooks.stood_by == [[lock]], "the second to stand by", timeout=30)
        assert second_tail.calls == 0
        first.stop()
        wait_until(lambda: second_hooks.led == [lock], "the standby to take over", timeout=30)
        account = svc.open_account(holder_name="Failover", actor=ACTOR)
        wait_until(lambda: account.id in second_tail.streams(), "the new leader to follow")
        assert second_hooks.stood_by == [[lock]]  # reported once, not at every poll
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert _lock_is_free(lock)


class Broken(Exception):
    pass


def test_a_failing_step_is_retried_with_growing_waits_then_recovers(spans):
    calls = []

    def step(held):
        calls.append(held)
        if len(calls) <= 4:
            raise Broken(f"failure {len(calls)}")
        return 5 if len(calls) == 5 else 0

    hooks = Recorder()
    follower = Follower(
        step,
        name="flaky",
        channel=None,
        backoff=Backoff(first=0.01, longest=0.03),
        retry_on=(Broken,),
        once=True,
        hooks=hooks,
    )
    assert follower.run() == 5
    assert hooks.failures == [("Broken", d, False) for d in (0.01, 0.02, 0.03, 0.03)]
    assert (hooks.recoveries, hooks.handled, len(calls)) == (1, [5], 6)
    retries = [s for s in spans.get_finished_spans() if s.name == "follower.retry"]
    assert [s.attributes["retry_in_s"] for s in retries] == [0.01, 0.02, 0.03, 0.03]
    for number, span in enumerate(retries, start=1):
        assert span.status.status_code is StatusCode.ERROR
        (event,) = span.events
        assert event.attributes["exception.message"] == f"failure {number}"


def test_a_fatal_error_ends_the_loop_even_where_errors_are_retried():
    calls = []

    def step(held):
        calls.append(held)
        raise Broken("the server refused the configuration")

    follower = Follower(step, name="fatal", channel=None, retry_on=(Exception,), fatal=(Broken,))
    with pytest.raises(Broken, match="refused the configuration"):
        follower.run()
    assert len(calls) == 1


def test_a_follower_told_to_give_up_raises_the_last_error_after_that_many_failed_rounds():
    calls = []

    def step(held):
        calls.append(held)
        raise Broken(f"failure {len(calls)}")

    hooks = Recorder()
    follower = Follower(
        step,
        name="giving up",
        channel=None,
        backoff=Backoff(first=0.01),
        retry_on=(Broken,),
        give_up_after=3,
        once=True,
        hooks=hooks,
    )
    with pytest.raises(Broken, match="failure 3"):
        follower.run()
    assert len(calls) == 3 and len(hooks.failures) == 2  # no wait after the last
    assert str(follower.last_error) == "failure 3"


def test_a_database_error_drops_the_connection_and_the_round_starts_again():
    calls = []

    def step(held):
        calls.append(held)
        if len(calls) == 1:
            raise es.StoreUnavailableError("the database went away")
        return 0

    hooks = Recorder()
    lock = f"test:{uuid.uuid4().hex}"
    follower = Follower(
        step,
        name="reconnecting",
        locks=[lock],
        channel=None,
        backoff=Backoff(first=0.01),
        once=True,
        hooks=hooks,
    )
    assert follower.run() == 0
    assert hooks.failures == [("StoreUnavailableError", 0.01, True)]
    assert calls == [[lock], [lock]] and hooks.recoveries == 1
    if connection.vendor == "postgresql":
        assert hooks.led == [lock, lock]  # the lock went with the session, and came back
        assert _lock_is_free(lock)


def test_an_error_it_is_not_told_to_retry_ends_the_loop_and_frees_the_lock():
    def step(held):
        raise ValueError("a bug")

    lock = f"test:{uuid.uuid4().hex}"
    follower = Follower(step, name="buggy", locks=[lock], retry_on=(Broken,), channel=None)
    with pytest.raises(ValueError, match="a bug"):
        follower.run()
    if connection.vendor == "postgresql":
        assert _lock_is_free(lock)


def test_a_signal_during_a_step_lets_it_finish_and_starts_no_other():
    calls = []

    def step(held):
        calls.append(held)
        signal.raise_signal(signal.SIGTERM)
        return 3

    previous = signal.getsignal(signal.SIGTERM)
    follower = Follower(step, name="signalled", channel=None, poll_interval=30)
    with follower.stop_on_signals():
        assert follower.run() == 3
    assert len(calls) == 1
    assert signal.getsignal(signal.SIGTERM) is previous


def test_a_signal_while_waiting_ends_the_loop():
    hooks = Recorder()
    follower = Follower(Tail(), name="waiting", poll_interval=600, hooks=hooks)
    finished, rescued = threading.Event(), threading.Event()

    def interrupt():
        hooks.waiting.wait(30)
        os.kill(os.getpid(), signal.SIGINT)
        if not finished.wait(30):  # never leave the test hanging: stop it the other way
            rescued.set()
            follower.stop()

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    try:
        with follower.stop_on_signals():
            follower.run()
    finally:
        finished.set()
        thread.join(60)
    assert hooks.waiting.is_set() and not rescued.is_set()


def test_run_projections_follows_then_stops_cleanly_on_sigterm():
    account = svc.open_account(holder_name="Command", initial_balance_cents=7, actor=ACTOR)
    events = len(es.read_all(after_position=0, limit=100))

    def terminate():
        try:
            wait_until(lambda: account.id in read_model_balances(), "the read model", timeout=60)
        finally:
            connections.close_all()
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=terminate, daemon=True)
    thread.start()
    out = io.StringIO()
    call_command("run_projections", "--poll-interval", "0.05", stdout=out)
    thread.join(60)
    output = out.getvalue()
    assert f"({connection.vendor}); stop with Ctrl-C" in output
    assert f"stopped cleanly; applied {events} events" in output
