"""Contract tests of the store's public API; they run on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

import eventstore as es
from eventstore.backends import backend
from eventstore.errors import CONCURRENCY_MESSAGE
from eventstore.models import Event
from eventstore.upcasting import unregister_upcaster
from tests.support import new_event, now

pytestmark = pytest.mark.django_db


def test_append_to_a_new_stream_then_read_it_back_in_version_order():
    stream = uuid.uuid4()
    result = es.append(
        stream,
        [new_event("A", n=1), new_event("B", n=2), new_event("C", n=3)],
        stream_type="test.thing",
        expected_version=0,
        metadata={"actor": "alice"},
    )
    assert result.versions == {stream: 3}
    assert result.positions == sorted(result.positions)
    events = es.read_stream(stream)
    assert [(e.version, e.event_type, e.data) for e in events] == [
        (1, "A", {"n": 1}),
        (2, "B", {"n": 2}),
        (3, "C", {"n": 3}),
    ]
    assert all(e.metadata == {"actor": "alice"} for e in events)
    assert all(e.stream_type == "test.thing" and e.stream_id == stream for e in events)
    assert len({e.commit_id for e in events}) == 1
    assert es.stream_version(stream) == 3
    assert [e.version for e in es.read_stream(stream, after_version=1, up_to_version=2)] == [2]


def test_an_event_keeps_its_own_metadata_over_the_common_metadata():
    stream = uuid.uuid4()
    event = es.NewEvent(
        event_type="A", data={}, occurred_at=now(), metadata={"actor": "bob", "extra": 1}
    )
    es.append(
        stream, [event], stream_type="t", expected_version=0, metadata={"actor": "x", "c": 2}
    )
    (stored,) = es.read_stream(stream)
    assert stored.metadata == {"actor": "bob", "extra": 1, "c": 2}


def test_stale_expected_version_raises_naming_expected_and_actual_and_writes_nothing():
    stream = uuid.uuid4()
    es.append(stream, [new_event(), new_event()], stream_type="t", expected_version=0)
    before = Event.objects.count()
    with pytest.raises(es.ConcurrencyError) as caught:
        es.append(stream, [new_event()], stream_type="t", expected_version=1)
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert str(caught.value) == CONCURRENCY_MESSAGE.format(stream_id=stream, expected=1, actual=2)
    assert Event.objects.count() == before


def test_expected_version_ahead_of_the_stream_is_refused_so_no_gap_can_appear():
    stream = uuid.uuid4()
    es.append(stream, [new_event()], stream_type="t", expected_version=0)
    with pytest.raises(es.ConcurrencyError) as caught:
        es.append(stream, [new_event()], stream_type="t", expected_version=5)
    assert (caught.value.expected, caught.value.actual) == (5, 1)
    assert es.stream_version(stream) == 1


def test_expected_version_zero_refuses_an_existing_stream():
    stream = uuid.uuid4()
    es.append(stream, [new_event()], stream_type="t", expected_version=0)
    with pytest.raises(es.ConcurrencyError):
        es.append(stream, [new_event()], stream_type="t", expected_version=0)


def test_multi_stream_append_writes_every_stream_in_one_commit():
    a, b = uuid.uuid4(), uuid.uuid4()
    es.append(a, [new_event()], stream_type="t", expected_version=0)
    result = es.append_streams(
        [
            es.StreamAppend(
                stream_id=a, stream_type="t", expected_version=1, events=[new_event("Sent")]
            ),
            es.StreamAppend(
                stream_id=b, stream_type="t", expected_version=0, events=[new_event("Got")]
            ),
        ]
    )
    assert result.versions == {a: 2, b: 1}
    sent, got = es.read_stream(a)[-1], es.read_stream(b)[-1]
    assert sent.commit_id == got.commit_id
    assert result.positions == [sent.position, got.position]


def test_multi_stream_append_rolls_back_entirely_when_one_stream_is_stale():
    a, b = uuid.uuid4(), uuid.uuid4()
    es.append(a, [new_event()] * 1, stream_type="t", expected_version=0)
    es.append(b, [new_event(), new_event()], stream_type="t", expected_version=0)
    before = Event.objects.count()
    with pytest.raises(es.ConcurrencyError) as caught:
        es.append_streams(
            [
                es.StreamAppend(
                    stream_id=a, stream_type="t", expected_version=1, events=[new_event()]
                ),
                es.StreamAppend(
                    stream_id=b, stream_type="t", expected_version=1, events=[new_event()]
                ),
            ]
        )
    assert caught.value.stream_id == b
    assert Event.objects.count() == before
    assert (es.stream_version(a), es.stream_version(b)) == (1, 2)


def test_a_multi_event_append_is_all_or_nothing_when_the_database_refuses_one_row():
    stream = uuid.uuid4()
    es.append(stream, [new_event()], stream_type="t", expected_version=0)
    taken = es.read_stream(stream)[0].event_id
    clash = es.NewEvent(event_type="Other", data={"x": 1}, occurred_at=now(), event_id=taken)
    before = Event.objects.count()
    with pytest.raises(es.EventIdReusedError):
        es.append(stream, [new_event(), clash], stream_type="t", expected_version=1)
    assert Event.objects.count() == before


def test_re_appending_a_stored_event_is_idempotent_whatever_the_expected_version():
    stream = uuid.uuid4()
    es.append(stream, [new_event(), new_event(), new_event()], stream_type="t", expected_version=0)
    event = new_event("Fourth", n=4)
    first = es.append(stream, [event], stream_type="t", expected_version=3)
    for expected in (3, 4, 0):
        again = es.append(stream, [event], stream_type="t", expected_version=expected)
        assert again.replayed
        assert again.positions == first.positions
        assert again.versions == {stream: 4}
    assert Event.objects.filter(event_id=event.event_id).count() == 1
    assert es.stream_version(stream) == 4


def test_the_same_event_id_with_other_content_is_refused_and_nothing_is_written():
    stream = uuid.uuid4()
    event = new_event("A", n=1)
    es.append(stream, [event], stream_type="t", expected_version=0)
    changed = es.NewEvent(
        event_type="A", data={"n": 2}, occurred_at=now(), event_id=event.event_id
    )
    with pytest.raises(es.EventIdReusedError) as caught:
        es.append(stream, [changed], stream_type="t", expected_version=1)
    assert str(event.event_id) in str(caught.value)
    assert es.stream_version(stream) == 1


@pytest.mark.parametrize(
    "data",
    [{"s": "nul\x00inside"}, {"s": "lone \ud800 surrogate"}, {"f": float("nan")}, {"o": object()}],
    ids=["nul", "surrogate", "nan", "object"],
)
def test_payloads_either_backend_cannot_store_faithfully_are_refused(data):
    stream = uuid.uuid4()
    bad = es.NewEvent(event_type="A", data=data, occurred_at=now())
    with pytest.raises(es.InvalidEventError):
        es.append(stream, [bad], stream_type="t", expected_version=0)
    assert es.stream_version(stream) == 0


def test_unicode_and_big_integers_round_trip_exactly():
    stream = uuid.uuid4()
    data = {
        "name": "Zoë ⚖ 銀行 \U0001f4b0",
        "big": 2**53 - 1,
        "neg": -(2**63),
        "nested": [{"a": None}],
    }
    es.append(
        stream,
        [es.NewEvent(event_type="A", data=data, occurred_at=now())],
        stream_type="t",
        expected_version=0,
    )
    assert es.read_stream(stream)[0].data == data
    assert es.verify_stream(stream) is None


def test_version_at_a_time_is_the_newest_event_that_occurred_by_then():
    stream = uuid.uuid4()
    t0 = now() - timedelta(hours=3)
    events = [
        es.NewEvent(event_type="A", data={"i": i}, occurred_at=t0 + timedelta(hours=i))
        for i in range(3)
    ]
    es.append(stream, events, stream_type="t", expected_version=0)
    assert es.version_at(stream, t0 + timedelta(hours=1, minutes=30)) == 2
    assert es.version_at(stream, t0 + timedelta(hours=2)) == 3
    assert es.version_at(stream, t0 - timedelta(seconds=1)) == 0
    assert es.version_at(uuid.uuid4(), now()) == 0


def test_read_all_returns_events_after_a_position_in_order():
    streams = [uuid.uuid4() for _ in range(3)]
    for s in streams:
        es.append(s, [new_event(), new_event()], stream_type="t", expected_version=0)
    start = es.read_stream(streams[0])[0].position - 1
    everything = es.read_all(after_position=start, limit=100)
    assert [e.position for e in everything] == sorted(e.position for e in everything)
    assert len(everything) == 6
    later = es.read_all(after_position=everything[1].position, limit=100)
    assert [e.position for e in later] == [e.position for e in everything[2:]]


@pytest.mark.django_db(transaction=True)
def test_read_all_never_splits_one_append_across_batches():
    a, b = uuid.uuid4(), uuid.uuid4()
    es.append(a, [new_event()], stream_type="t", expected_version=0)
    es.append(b, [new_event() for _ in range(5)], stream_type="t", expected_version=0)
    start = es.read_stream(a)[0].position - 1
    first = es.read_all(after_position=start, limit=3)
    assert [e.stream_id for e in first] == [a]  # b's five-event append does not fit: held back
    second = es.read_all(after_position=first[-1].position, limit=3)
    assert [e.stream_id for e in second] == [b] * 5  # delivered whole though it exceeds limit


@override_settings(EVENTSTORE_PREPARED_STATEMENTS=False)  # so Django's cursor sees the SQL
def test_the_follower_read_is_a_single_sql_statement():
    stream = uuid.uuid4()
    es.append(stream, [new_event(), new_event()], stream_type="t", expected_version=0)
    with CaptureQueriesContext(connection) as queries:
        got = es.read_all(after_position=0, limit=1000)
    assert got
    assert len(queries.captured_queries) == 1


def test_upcasters_turn_old_payloads_into_the_current_shape_and_leave_the_row_as_stored():
    stream = uuid.uuid4()
    old = es.NewEvent(
        event_type="UpcastMe", data={"amount": 5}, occurred_at=now(), schema_version=1
    )
    es.append(stream, [old], stream_type="t", expected_version=0)

    @es.register_upcaster("UpcastMe", 1)
    def upcast_upcastme_v1_v2(data):
        return {"amount_cents": data["amount"]}

    @es.register_upcaster("UpcastMe", 2)
    def upcast_upcastme_v2_v3(data):
        return {**data, "currency": "EUR"}

    try:
        (event,) = es.read_stream(stream)
        assert (event.schema_version, event.data) == (3, {"amount_cents": 5, "currency": "EUR"})
        (raw,) = es.read_stream(stream, upcasted=False)
        assert (raw.schema_version, raw.data) == (1, {"amount": 5})
        assert Event.objects.get(event_id=old.event_id).data == {"amount": 5}
        assert es.read_all(after_position=event.position - 1)[0].data["currency"] == "EUR"
        assert es.verify_stream(stream) is None
    finally:
        unregister_upcaster("UpcastMe", 1)
        unregister_upcaster("UpcastMe", 2)


def test_snapshots_newest_at_or_below_a_version_and_stale_schema_ignored():
    stream = uuid.uuid4()
    assert es.load_snapshot(stream, schema_version=1) is None
    with pytest.raises(es.InvalidEventError, match="no event at version 10"):
        es.save_snapshot(stream, stream_type="t", version=10, schema_version=1, state={"v": 10})
    _appended(stream, 30)
    assert es.save_snapshot(stream, stream_type="t", version=10, schema_version=1, state={"v": 10})
    assert es.save_snapshot(stream, stream_type="t", version=20, schema_version=1, state={"v": 20})
    assert es.save_snapshot(stream, stream_type="t", version=30, schema_version=2, state={"v": 30})
    # Saving twice at one version is a no-op, never an overwrite.
    assert not es.save_snapshot(
        stream, stream_type="t", version=20, schema_version=1, state={"v": 0}
    )
    assert es.load_snapshot(stream, schema_version=1).state == {"v": 20}
    assert es.load_snapshot(stream, schema_version=1, up_to_version=19).state == {"v": 10}
    assert es.load_snapshot(stream, schema_version=1, up_to_version=9) is None
    assert es.load_snapshot(stream, schema_version=2).version == 30
    assert es.load_snapshot(stream, schema_version=3) is None


@pytest.mark.django_db(transaction=True)
def test_stream_locks_need_a_transaction():
    with pytest.raises(RuntimeError, match="inside transaction.atomic"):
        es.lock_streams([uuid.uuid4()])
    from django.db import transaction

    with transaction.atomic():
        es.lock_streams([uuid.uuid4(), uuid.uuid4()])


@pytest.mark.django_db(transaction=True)
def test_an_append_larger_than_one_statement_is_still_one_atomic_append():
    stream = uuid.uuid4()
    result = es.append(
        stream, [new_event("Big", i=i) for i in range(2500)], stream_type="t", expected_version=0
    )
    assert result.positions == list(range(result.positions[0], result.positions[0] + 2500))
    events = es.read_stream(stream)
    assert len({e.commit_id for e in events}) == 1
    assert [e.version for e in events] == list(range(1, 2501))
    assert es.verify_stream(stream) is None
    with pytest.raises(es.ConcurrencyError):
        es.append(
            stream, [new_event() for _ in range(1500)], stream_type="t", expected_version=2499
        )
    assert es.stream_version(stream) == 2500


def _appended(stream, count, start=0):
    es.append(
        stream,
        [new_event("E", n=start + i + 1) for i in range(count)],
        stream_type="t",
        expected_version=start,
    )


def test_load_streams_gives_the_newest_snapshot_and_exactly_the_events_after_it():
    stream, other, missing = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    _appended(stream, 12)
    _appended(other, 3)
    es.save_snapshot(stream, stream_type="t", version=5, schema_version=1, state={"n": 5})
    es.save_snapshot(stream, stream_type="t", version=10, schema_version=1, state={"n": 10})
    es.save_snapshot(stream, stream_type="t", version=11, schema_version=2, state={"n": 11})
    head = es.stream_head(stream)

    loaded, plain, nothing = es.load_streams([stream, other, missing], snapshot_schema_version=1)
    assert loaded.snapshot == es.SnapshotData(10, 1, {"n": 10})  # v2's snapshot is skipped
    assert [(e.version, e.data["n"]) for e in loaded.events] == [(11, 11), (12, 12)]
    assert loaded.head == head
    assert plain.snapshot is None and [e.version for e in plain.events] == [1, 2, 3]
    assert nothing == es.LoadedStream(None, [], None)

    (then,) = es.load_streams([stream], snapshot_schema_version=1, up_to_version=9)
    assert then.snapshot.version == 5 and [e.version for e in then.events] == [6, 7, 8, 9]
    assert then.head.version == 9
    (full,) = es.load_streams([stream], snapshot_schema_version=None)
    assert full.snapshot is None and [e.version for e in full.events] == list(range(1, 13))


# (snapshot before, snapshot saved in between, up_to_version, streams loaded)
RACES = {
    "a newer snapshot": (5, 10, None, 1),
    "a first snapshot": (None, 10, None, 1),
    "the second stream of two": (5, 10, None, 2),
    "time travel": (5, 10, 11, 1),
}


@pytest.mark.parametrize("lock", [False, True], ids=["unlocked", "locked"])
@pytest.mark.parametrize("race", RACES.values(), ids=RACES.keys())
def test_a_snapshot_saved_between_a_loads_two_statements_is_never_mixed_with_other_events(
    monkeypatch, lock, race
):
    """The snapshot and the events after it are two statements (each with its span), which
    at READ COMMITTED see different moments: a snapshot committed between them must not
    pair the first one's state (v5, or none) with the events after the new one (v10)."""
    before, saved, up_to, count = race
    streams = [uuid.uuid4() for _ in range(count)]
    for stream in streams:
        _appended(stream, 12)
        if before is not None:
            es.save_snapshot(
                stream, stream_type="t", version=before, schema_version=1, state={"n": before}
            )
    raced = streams[-1]
    db = backend()
    real = db.run_loads
    sent = []

    def snapshot_saved_in_between(loads, lock_ids):
        sent.append([load.collection for load in loads])
        if len(sent) > 1:
            return real(loads, lock_ids)
        # The last stream's snapshot is saved right before its events statement runs.
        first = real(loads[:-1], lock_ids)
        es.save_snapshot(raced, stream_type="t", version=saved, schema_version=1, state={"n": 10})
        return first + real(loads[-1:], ())

    monkeypatch.setattr(db, "run_loads", snapshot_saved_in_between)
    with transaction.atomic():
        loaded = es.load_streams(
            streams, snapshot_schema_version=1, up_to_version=up_to, lock=lock
        )
    last = up_to or 12
    for stream, got in zip(streams, loaded, strict=True):
        if before is None:
            assert got.snapshot is None
        else:
            assert got.snapshot == es.SnapshotData(before, 1, {"n": before})
        start = (before or 0) + 1
        assert [(e.version, e.data["n"]) for e in got.events] == [
            (v, v) for v in range(start, last + 1)
        ], stream
        assert got.head.version == last
    assert loaded[-1].head == es.stream_head(raced) or up_to is not None
    # The raced stream's events were read again, in a round trip of their own.
    assert sent == [["snapshots", "events"] * count, ["events"]]
    monkeypatch.undo()
    (now_loaded,) = es.load_streams([raced], snapshot_schema_version=1, up_to_version=up_to)
    assert now_loaded.snapshot.version == 10
    assert [e.version for e in now_loaded.events] == list(range(11, last + 1))


def test_load_streams_takes_the_head_from_the_snapshots_event_when_none_follows():
    stream = uuid.uuid4()
    _appended(stream, 4)
    es.save_snapshot(stream, stream_type="t", version=4, schema_version=1, state={"n": 4})
    (loaded,) = es.load_streams([stream], snapshot_schema_version=1)
    assert loaded.events == [] and loaded.head == es.stream_head(stream)
    # ... so an append at that head goes through.
    es.append(stream, [new_event("E")], stream_type="t", expected_version=loaded.head)
    assert es.stream_version(stream) == 5


@pytest.mark.django_db(transaction=True)
def test_load_streams_takes_locks_only_inside_a_transaction():
    from django.db import transaction

    with pytest.raises(RuntimeError, match="inside transaction.atomic"):
        es.load_streams([uuid.uuid4()], snapshot_schema_version=1, lock=True)
    stream = uuid.uuid4()
    _appended(stream, 2)
    with transaction.atomic():
        (loaded,) = es.load_streams([stream], snapshot_schema_version=1, lock=True)
    assert [e.version for e in loaded.events] == [1, 2]
