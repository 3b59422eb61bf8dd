"""Reads by metadata and the recorded verification of many streams (the admin's audit
links and account list), through the public API, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from django.core.management import call_command

import eventstore as es
from tests.support import new_event

pytestmark = pytest.mark.django_db


def _append(stream, version, *, correlation, user, n=1):
    es.append(
        stream,
        [new_event("Happened", n=n)],
        stream_type="test.thing",
        expected_version=version,
        metadata={"correlation_id": correlation, "actor": {"username": user}},
    )


def test_events_are_found_by_a_value_in_their_metadata_in_global_order():
    a, b = uuid.uuid4(), uuid.uuid4()
    _append(a, 0, correlation="c-1", user="alice")
    _append(b, 0, correlation="c-1", user="bob")  # the other leg of one command
    _append(a, 1, correlation="c-2", user="alice", n=2)
    found = es.read_by_metadata("correlation_id", "c-1")
    assert [(e.stream_id, e.version) for e in found] == [(a, 1), (b, 1)]
    assert [e.metadata["actor"]["username"] for e in found] == ["alice", "bob"]
    alice = es.read_by_metadata("actor.username", "alice", newest_first=True)
    assert [e.data["n"] for e in alice] == [2, 1]
    # Pages by position, either way, and a limit.
    assert es.read_by_metadata("actor.username", "alice", before=alice[0].position) == [alice[1]]
    assert es.read_by_metadata("actor.username", "alice", after=alice[1].position) == [alice[0]]
    assert es.read_by_metadata("actor.username", "alice", limit=1) == [alice[1]]
    assert es.read_by_metadata("actor.username", "nobody") == []
    assert es.read_by_metadata("actor.username", "ALICE") == []  # exact match


@pytest.mark.parametrize("path", ["actor..username", "actor.user name", "x'; --", ""])
def test_a_metadata_path_that_is_not_identifiers_is_refused(path):
    with pytest.raises(ValueError, match="identifiers"):
        es.read_by_metadata(path, "x")


def test_recorded_statuses_of_many_streams_in_one_query(django_assert_num_queries):
    verified, later, never = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    _append(verified, 0, correlation="c", user="u")
    _append(later, 0, correlation="c", user="u")
    call_command("verify_events", "--full", verbosity=0)
    _append(later, 1, correlation="c", user="u")
    _append(never, 0, correlation="c", user="u")
    with django_assert_num_queries(1):
        statuses = es.recorded_statuses([verified, later, never])
    assert set(statuses) == {verified, later}
    assert statuses[verified].verified_version == 1 and statuses[verified].problem == ""
    assert statuses[later].verified_version == 1  # as recorded: nothing checked anew
    assert es.recorded_statuses([]) == {}


def test_position_bounds_beyond_64_bits_are_no_error():
    stream = uuid.uuid4()
    _append(stream, 0, correlation="c", user="carol")
    (event,) = es.read_by_metadata("actor.username", "carol")
    assert es.read_by_metadata("actor.username", "carol", before=10**30) == [event]
    assert es.read_by_metadata("actor.username", "carol", after=-(10**30)) == [event]
    assert es.read_by_metadata("actor.username", "carol", after=10**30) == []
    assert es.read_by_metadata("actor.username", "carol", before=-(10**30)) == []


def test_an_event_is_decoded_once_per_decoder():
    stream = uuid.uuid4()
    _append(stream, 0, correlation="c", user="dave")
    (event,) = es.read_stream(stream)
    calls = []

    def decoder(e):
        calls.append(e.position)
        return ("decoded", e.data["n"])

    assert event.decoded_with(decoder) == ("decoded", 1)
    assert event.decoded_with(decoder) == ("decoded", 1)
    assert calls == [event.position]
    assert event.decoded_with(lambda e: e.version) == 1  # another decoder, its own value
