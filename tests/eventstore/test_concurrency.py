"""Concurrent writers and followers, with real commits (one connection per thread)."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest
from django.db import connection, transaction

import eventstore as es
import eventstore.reading as reading
from eventstore.models import Event
from tests.support import new_event, run_threads

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("as_head", [False, True], ids=["version", "head"])
@pytest.mark.parametrize("start_version", [0, 3], ids=["new stream", "existing stream"])
def test_eight_writers_at_one_expected_version_exactly_one_wins(start_version, as_head):
    stream = uuid.uuid4()
    if start_version:
        es.append(stream, [new_event() for _ in range(3)], stream_type="t", expected_version=0)
    expected = es.stream_head(stream) if as_head else start_version

    def write(i, barrier):
        barrier.wait()
        return es.append(
            stream, [new_event("W", writer=i)], stream_type="t", expected_version=expected
        )

    results = run_threads(8, write)
    wins = [r for r in results if isinstance(r, es.AppendResult)]
    losses = [r for r in results if isinstance(r, es.ConcurrencyError)]
    assert len(wins) == 1 and len(losses) == 7, results
    assert {(e.expected, e.actual) for e in losses} == {(start_version, start_version + 1)}
    versions = [e.version for e in es.read_stream(stream)]
    assert versions == list(range(1, start_version + 2))


def test_the_unique_index_is_the_guard_when_the_application_check_is_fooled(monkeypatch):
    stream = uuid.uuid4()
    es.append(stream, [new_event(), new_event()], stream_type="t", expected_version=0)
    real = reading.read_heads

    def stale_heads(cursor, stream_ids):
        heads = real(cursor, stream_ids)
        return {sid: (1, es.read_stream(sid)[0].hash) for sid in heads}

    monkeypatch.setattr(reading, "read_heads", stale_heads)
    with pytest.raises(es.ConcurrencyError):
        es.append(stream, [new_event()], stream_type="t", expected_version=1)
    monkeypatch.undo()
    assert [e.version for e in es.read_stream(stream)] == [1, 2]


def test_a_forged_stream_head_is_refused_and_nothing_is_written():
    stream = uuid.uuid4()
    es.append(stream, [new_event(), new_event()], stream_type="t", expected_version=0)
    with pytest.raises(es.InvalidEventError, match="not the stored one"):
        es.append(
            stream, [new_event()], stream_type="t", expected_version=es.StreamHead(2, "f" * 64)
        )
    with pytest.raises(es.ConcurrencyError):
        es.append(
            stream, [new_event()], stream_type="t", expected_version=es.StreamHead(1, "f" * 64)
        )
    assert es.stream_version(stream) == 2
    assert es.verify_stream(stream) is None


def test_concurrent_re_appends_of_one_event_store_it_once():
    stream = uuid.uuid4()
    es.append(stream, [new_event()], stream_type="t", expected_version=0)
    event = new_event("Once")

    def write(i, barrier):
        barrier.wait()
        return es.append(stream, [event], stream_type="t", expected_version=1)

    results = run_threads(5, write)
    assert all(isinstance(r, es.AppendResult) for r in results), results
    assert len({tuple(r.positions) for r in results}) == 1
    assert Event.objects.filter(event_id=event.event_id).count() == 1
    assert sum(not r.replayed for r in results) == 1


def _stress(*, writers, appends_each, streams, batch, rollback_rate, seed):
    rng = random.Random(seed)
    pool = [uuid.uuid4() for _ in range(streams)]
    committed: set[uuid.UUID] = set()
    rolled_back: set[uuid.UUID] = set()
    lock = threading.Lock()
    writers_done = threading.Event()
    seeds = [rng.random() for _ in range(writers)]

    class Rollback(Exception):
        pass

    def writer(i, barrier):
        wrng = random.Random(seeds[i])
        barrier.wait()
        for _ in range(appends_each):
            stream = wrng.choice(pool)
            events = [new_event("S", w=i) for _ in range(wrng.randint(1, 3))]
            try:
                with transaction.atomic():
                    es.append(
                        stream, events, stream_type="t", expected_version=es.stream_version(stream)
                    )
                    time.sleep(wrng.random() / 1000)  # a slow transaction holding its position
                    if wrng.random() < rollback_rate:
                        raise Rollback
            except Rollback:
                with lock:
                    rolled_back.update(e.event_id for e in events)
            except es.ConcurrencyError:
                pass
            else:
                with lock:
                    committed.update(e.event_id for e in events)

    def follower(barrier):
        seen = []
        cursor = 0
        barrier.wait()
        while True:
            finished = writers_done.is_set()
            got = es.read_all(after_position=cursor, limit=batch)
            seen.extend(got)
            if got:
                cursor = got[-1].position
            elif finished:
                return seen

    def role(i, barrier):
        return writer(i, barrier) if i < writers else follower(barrier)

    results = run_threads(writers + 2, _with_done(role, writers, writers_done))
    for r in results:
        if isinstance(r, BaseException):
            raise r
    for seen in results[writers:]:
        positions = [e.position for e in seen]
        assert positions == sorted(set(positions)), "positions must strictly increase"
        ids = [e.event_id for e in seen]
        assert len(ids) == len(set(ids)), "an event was delivered twice"
        assert set(ids) == committed, "the follower missed committed events or saw others"
        assert not set(ids) & rolled_back
        last_version: dict[uuid.UUID, int] = {}
        for e in seen:
            assert e.version == last_version.get(e.stream_id, 0) + 1
            last_version[e.stream_id] = e.version
    return committed, rolled_back


def _with_done(target, writers, done):
    remaining = [writers]
    lock = threading.Lock()

    def wrapped(i, barrier):
        try:
            return target(i, barrier)
        finally:
            if i < writers:
                with lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()

    return wrapped


@pytest.mark.parametrize("seed", [1, 2])
def test_followers_see_every_committed_event_exactly_once_under_concurrent_writers(seed):
    committed, rolled_back = _stress(
        writers=6, appends_each=40, streams=30, batch=7, rollback_rate=0.1, seed=seed
    )
    assert committed and rolled_back  # the run exercised both outcomes


def _wait_until(predicate, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting until {what}")


def _waiting_on_append_lock():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE %s AND datname = current_database()",
            ["%pg_advisory_xact_lock%"],
        )
        return cursor.fetchone()[0]


@pytest.mark.postgres
def test_a_follower_never_reads_past_an_append_still_in_flight():
    """TESTPLAN B1: T1 holds an open append; T2 appends after it; the follower waits."""
    start = es.head_position()
    s1, s2 = uuid.uuid4(), uuid.uuid4()
    t1_appended, release = threading.Event(), threading.Event()

    def t1(i, barrier):
        with transaction.atomic():
            es.append(s1, [new_event("First")], stream_type="t", expected_version=0)
            t1_appended.set()
            assert release.wait(30)

    def t2(i, barrier):
        assert t1_appended.wait(30)
        return es.append(s2, [new_event("Second")], stream_type="t", expected_version=0)

    results = []
    runner = threading.Thread(
        target=lambda: results.extend(run_threads(2, lambda i, b: (t1, t2)[i](i, b)))
    )
    runner.start()
    try:
        assert t1_appended.wait(30)
        _wait_until(lambda: _waiting_on_append_lock() == 1, "T2 waits for the append lock")
        for _ in range(20):
            assert es.read_all(after_position=start, limit=10) == []
    finally:
        release.set()
        runner.join(60)
    assert not any(isinstance(r, BaseException) for r in results), results
    delivered = es.read_all(after_position=start, limit=10)
    assert [e.event_type for e in delivered] == ["First", "Second"]
    assert delivered[0].position < delivered[1].position


@pytest.mark.postgres
def test_a_rolled_back_append_leaves_a_hole_nobody_waits_for():
    start = es.head_position()
    s = uuid.uuid4()
    with pytest.raises(RuntimeError), transaction.atomic():
        es.append(s, [new_event("Gone")], stream_type="t", expected_version=0)
        raise RuntimeError("roll back")
    kept = [uuid.uuid4() for _ in range(3)]
    for k in kept:
        es.append(k, [new_event("Kept")], stream_type="t", expected_version=0)
    delivered = es.read_all(after_position=start, limit=10)
    assert [e.stream_id for e in delivered] == kept
    assert delivered[0].position > start + 1  # the hole is there, and was passed


@pytest.mark.postgres
def test_two_large_appends_at_once_do_not_interleave_in_the_global_order():
    streams = [uuid.uuid4(), uuid.uuid4()]

    def write(i, barrier):
        barrier.wait()
        es.append(
            streams[i], [new_event() for _ in range(500)], stream_type="t", expected_version=0
        )

    assert run_threads(2, write) == [None, None]
    order = [e.stream_id for e in es.read_all(after_position=0, limit=5000)]
    switches = sum(1 for a, b in zip(order, order[1:], strict=False) if a != b)
    assert switches == 1


@pytest.mark.postgres
def test_a_stuck_appender_makes_others_fail_fast_and_is_then_cut_off():
    """TESTPLAN A10: lock_timeout bounds the wait; idle_in_transaction ends the holder."""
    holder_in, stop = threading.Event(), threading.Event()
    outcome = {}

    def stuck(i, barrier):
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL idle_in_transaction_session_timeout = '1500ms'")
                es.append(uuid.uuid4(), [new_event()], stream_type="t", expected_version=0)
                holder_in.set()
                stop.wait(30)  # idle inside the transaction, holding the append lock
        except Exception as exc:  # the server closed the session: the commit fails
            outcome["holder"] = exc

    def blocked(i, barrier):
        assert holder_in.wait(30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        try:
            es.append(uuid.uuid4(), [new_event()], stream_type="t", expected_version=0)
        except es.StoreUnavailableError as exc:
            outcome["fast_failure"] = exc
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '10s'")
        # The holder's session is terminated by the server; then appends go through again.
        outcome["later"] = es.append(
            uuid.uuid4(), [new_event()], stream_type="t", expected_version=0
        )
        stop.set()

    results = run_threads(2, lambda i, b: (stuck, blocked)[i](i, b))
    assert results == [None, None], results
    assert "lock" in str(outcome["fast_failure"]).lower()
    assert isinstance(outcome["later"], es.AppendResult)
    assert "holder" in outcome
