"""Hash chains, verify_events and digests kept outside the database."""

from __future__ import annotations

import json
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

import eventstore as es
from eventstore.hashing import canonical_json, canonical_time, event_hash
from tests.support import new_event, triggers_disabled

pytestmark = pytest.mark.django_db


def _streams(count=3, events=4):
    streams = [uuid.uuid4() for _ in range(count)]
    for s in streams:
        es.append(
            s, [new_event("E", i=i) for i in range(events)], stream_type="t", expected_version=0
        )
    return streams


def _tamper(sql, params):
    with triggers_disabled(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def _db(stream):
    return stream if connection.vendor == "postgresql" else stream.hex


def test_each_hash_chains_to_the_previous_event_of_its_stream():
    (stream,) = _streams(1, 3)
    events = es.read_stream(stream, upcasted=False)
    previous = ""
    for e in events:
        expected = event_hash(
            previous_hash=previous,
            event_id=e.event_id,
            stream_id=e.stream_id,
            stream_type=e.stream_type,
            version=e.version,
            event_type=e.event_type,
            schema_version=e.schema_version,
            data_json=canonical_json(e.data),
            metadata_json=canonical_json(e.metadata),
            occurred_text=canonical_time(e.occurred_at),
            recorded_text=canonical_time(e.recorded_at),
        )
        assert e.hash == expected
        previous = e.hash


def test_verify_events_passes_on_an_intact_store(capsys):
    _streams()
    call_command("verify_events", verbosity=0)
    out = capsys.readouterr().out
    assert "full verification: checked 3 streams, 12 events" in out  # the first run is full
    assert "all chains and seals intact" in out


def test_verify_events_names_the_first_changed_event_and_exits_non_zero(capsys):
    streams = _streams()
    victim = streams[1]
    data = json.dumps({"i": 999})
    cast = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    _tamper(
        f"UPDATE events SET data = {cast} WHERE stream_id = %s AND version = 3",
        [data, _db(victim)],
    )
    assert es.read_stream(victim)[2].data == {"i": 999}
    with pytest.raises(CommandError, match="1 broken stream"):
        call_command("verify_events", verbosity=0)
    err = capsys.readouterr().err
    assert f"stream {victim}: version 3: stored content no longer matches" in err
    assert es.verify_stream(victim).version == 3
    for other in (streams[0], streams[2]):
        assert es.verify_stream(other) is None


def test_a_deleted_event_in_the_middle_of_a_stream_is_reported_as_missing():
    (stream,) = _streams(1, 4)
    _tamper("DELETE FROM events WHERE stream_id = %s AND version = 2", [_db(stream)])
    problem = es.verify_stream(stream)
    assert problem.version == 2 and "missing" in problem.reason


def _rewrite_consistently(stream, new_amount):
    """Change an event and recompute every hash after it, as an attacker with write access could."""
    rows = es.read_stream(stream, upcasted=False)
    previous = ""
    with triggers_disabled(), connection.cursor() as cursor:
        for e in rows:
            data = {"i": new_amount} if e.version == 2 else e.data
            new_hash = event_hash(
                previous_hash=previous,
                event_id=e.event_id,
                stream_id=e.stream_id,
                stream_type=e.stream_type,
                version=e.version,
                event_type=e.event_type,
                schema_version=e.schema_version,
                data_json=canonical_json(data),
                metadata_json=canonical_json(e.metadata),
                occurred_text=canonical_time(e.occurred_at),
                recorded_text=canonical_time(e.recorded_at),
            )
            cast = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
            cursor.execute(
                f"UPDATE events SET data = {cast}, hash = %s WHERE position = %s",
                [json.dumps(data), new_hash, e.position],
            )
            previous = new_hash


def test_a_consistently_rewritten_chain_passes_alone_but_fails_against_an_earlier_digest(
    tmp_path, capsys
):
    streams = _streams()
    digest = tmp_path / "digest.json"
    call_command("verify_events", digest_out=str(digest), verbosity=0)
    saved = json.loads(digest.read_text())
    assert set(saved["streams"]) == {str(s) for s in streams}
    assert saved["streams"][str(streams[0])]["version"] == 4

    # New events after the digest are fine: the store still extends it.
    es.append(streams[0], [new_event()], stream_type="t", expected_version=4)
    call_command("verify_events", digest=str(digest), verbosity=0)
    assert "extends the digest" in capsys.readouterr().out

    _rewrite_consistently(streams[2], 1_000_000)
    # The chain alone cannot tell, but the application's signature over the old head no
    # longer verifies (a rewriter without the signing key cannot re-sign).
    report = es.verify_all()
    assert [(p.stream_id, p.version, p.kind) for p in report.problems] == [(streams[2], 4, "seal")]
    with pytest.raises(CommandError):
        call_command("verify_events", digest=str(digest), verbosity=0)
    assert f"stream {streams[2]}: version 4: its signature does not verify" in (
        capsys.readouterr().err
    )


def test_a_truncated_stream_fails_against_an_earlier_digest(tmp_path):
    streams = _streams(2, 4)
    digest = tmp_path / "d.json"
    call_command("verify_events", digest_out=str(digest), verbosity=0)
    _tamper("DELETE FROM events WHERE stream_id = %s AND version >= 3", [_db(streams[1])])
    report = es.verify_all(digest=json.loads(digest.read_text()))
    assert not report.ok
    assert [(p.stream_id, p.version) for p in report.problems] == [(streams[1], 3)]


def test_an_edited_digest_file_is_refused(tmp_path):
    _streams(1, 2)
    digest = tmp_path / "d.json"
    call_command("verify_events", digest_out=str(digest), verbosity=0)
    saved = json.loads(digest.read_text())
    key = next(iter(saved["streams"]))
    saved["streams"][key]["version"] = 1
    digest.write_text(json.dumps(saved))
    with pytest.raises(CommandError, match="digest problem"):
        call_command("verify_events", digest=str(digest), verbosity=0)


def test_no_digest_is_written_for_a_broken_store(tmp_path):
    (stream,) = _streams(1, 2)
    _tamper("DELETE FROM events WHERE stream_id = %s AND version = 1", [_db(stream)])
    digest = tmp_path / "d.json"
    with pytest.raises(CommandError):
        call_command("verify_events", digest_out=str(digest), verbosity=0)
    assert not digest.exists()


def test_verify_events_explains_bad_arguments():
    with pytest.raises(CommandError, match="UUID"):
        call_command("verify_events", stream="nope", verbosity=0)
    with pytest.raises(CommandError, match="cannot read the digest"):
        call_command("verify_events", digest="/nonexistent/d.json", verbosity=0)


def test_verifying_a_stream_that_does_not_exist_is_an_error_not_all_intact():
    stream = uuid.uuid4()
    es.append(stream, [new_event("A")], stream_type="t", expected_version=0)
    call_command("verify_events", "--stream", str(stream), verbosity=0)  # exists: passes
    unknown = uuid.uuid4()
    with pytest.raises(CommandError, match=f"stream {unknown} has no events"):
        call_command("verify_events", "--stream", str(unknown), verbosity=0)
