"""Events written before signing began stay verifiable as the unsigned segment.

The store is taken back to the schema before migration 0005 (no signature columns), events
are written there as the old code wrote them, and the migration is applied: it records the
signing epoch, below which events may be unsigned. Everything after must be signed.
"""

from __future__ import annotations

import json
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

import eventstore as es
from eventstore.hashing import GENESIS_HASH, canonical_json, canonical_time, event_hash
from tests.support import new_event

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("eventstore", "0004_only_the_indexes_queries_use")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def _latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def _old_style_append(stream_id, count):
    """INSERT events the way the store did before signing (no signature columns exist)."""
    previous, adapt = GENESIS_HASH, connection.ops.adapt_datetimefield_value
    db = (lambda u: u) if connection.vendor == "postgresql" else (lambda u: u.hex)
    jsonb = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    with connection.cursor() as cursor:
        for version in range(1, count + 1):
            event_id, now = uuid.uuid4(), timezone.now()
            data, metadata = {"n": version}, {}
            previous = event_hash(
                previous_hash=previous,
                event_id=event_id,
                stream_id=stream_id,
                stream_type="legacy",
                version=version,
                event_type="Old",
                data_json=canonical_json(data),
                metadata_json=canonical_json(metadata),
                occurred_text=canonical_time(now),
                recorded_text=canonical_time(now),
                schema_version=1,
            )
            cursor.execute(
                "INSERT INTO events (event_id, stream_id, stream_type, version, event_type, "
                f"schema_version, data, metadata, occurred_at, recorded_at, commit_id, hash) "
                f"VALUES (%s, %s, 'legacy', %s, 'Old', 1, {jsonb}, {jsonb}, %s, %s, %s, %s)",
                [
                    db(event_id),
                    db(stream_id),
                    version,
                    json.dumps(data),
                    json.dumps(metadata),
                    adapt(now),
                    adapt(now),
                    version,
                    previous,
                ],
            )


@pytest.fixture
def legacy_stream():
    latest = _latest()
    _migrate(BEFORE)
    try:
        stream = uuid.uuid4()
        _old_style_append(stream, 3)
    finally:
        _migrate(latest)
    assert not es.trigger_problems()  # the round trip kept every immutability trigger
    return stream


def test_events_from_before_signing_verify_as_the_unsigned_segment(legacy_stream, capsys):
    epoch = es.signing_epoch()
    assert epoch.events_from_position > max(e.position for e in es.read_stream(legacy_stream))
    # New appends to the old stream are signed and seal the old events with them.
    es.append(legacy_stream, [new_event("New")], stream_type="legacy", expected_version=3)
    call_command("verify_events", "--full", verbosity=0)
    out = capsys.readouterr().out
    assert "3 events of the unsigned segment (written before signing began)" in out
    assert "all chains and seals intact" in out

    # An unsigned event added now is not part of that segment: it is named.
    other = uuid.uuid4()
    es.append(other, [new_event("New")], stream_type="legacy", expected_version=0)
    from tests.eventstore.forgery import forge_event

    version = forge_event(other, {"n": 2})
    with pytest.raises(CommandError):
        call_command("verify_events", "--full", verbosity=0)
    assert f"stream {other}: version {version}: not covered" in capsys.readouterr().err


def test_a_row_slipped_into_the_unsigned_segment_is_counted(legacy_stream, capsys):
    """Below the epoch nothing needs a signature, so the migration counted the rows there."""
    from tests.eventstore.forgery import forge_event

    version = forge_event(legacy_stream, {"n": 4})
    forged = es.read_stream(legacy_stream)[-1]
    free = min(e.position for e in es.read_stream(legacy_stream)) - 1
    from tests.support import triggers_disabled

    with triggers_disabled(), connection.cursor() as cursor:  # as if INSERTed there
        cursor.execute(
            "UPDATE events SET position = %s WHERE position = %s", [free, forged.position]
        )
    with pytest.raises(CommandError):
        call_command("verify_events", "--full", verbosity=0)
    err = capsys.readouterr().err
    assert "4 events lie below the signing epoch" in err and "counted 3" in err
    assert f"version {version}: stored out of order" in err
