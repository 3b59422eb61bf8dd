"""Evidence packs: one stream's history, self-contained, for someone outside the system.

A pack holds what an auditor needs to check a stream without database access: every
event from version 1 with each field exactly as the chain hash covers it (data and
metadata as their canonical JSON text, times as canonical text), the stored hash and the
application's signature, the snapshot the application relied on at that version, the
public keys, the signing epoch, and the newest recorded verification run. The check
needs only the standard library and ``cryptography`` (README, "Evidence pack").

An append signs only each stream's last event of the append, so a pack asked to end in
the middle of an append also carries the events up to the next signed one: without them
nothing would vouch for its last event. ``up_to_version`` says what was asked for,
``sealed_through`` which signed event covers the pack (None when the pack ends in the
unsigned segment written before signing began, which only the chain protects).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from django.db import connection

from .backends import backend
from .epoch import signing_epoch
from .errors import EventStoreError, StreamNotFound
from .hashing import canonical_json, canonical_time
from .rows import py_json, py_time, py_uuid
from .run_records import last_run
from .signing import keyring
from .snapshots import load_snapshot

EVIDENCE_FORMAT = "eventstore-evidence/1"

VERSION_NOT_IN_STREAM = "version_not_in_stream"
NOT_SEALED = "not_sealed"
VERSION_NOT_IN_STREAM_MESSAGE = (
    "stream {stream_id} has versions 1 to {version}; ask for a version in that range, not {asked}"
)
NOT_SEALED_MESSAGE = (
    "stream {stream_id}: version {version} is not covered by any signature (no signed event "
    "follows it); the stream fails verification: run `verify_events --stream {stream_id}`"
)

_EVENT_COLUMNS = (
    "position, event_id, stream_type, version, event_type, schema_version, data, metadata, "
    "occurred_at, recorded_at, hash, signature, key_id"
)


class VersionNotInStream(EventStoreError):
    """The asked version is below 1 or beyond the stream's newest version."""

    code = VERSION_NOT_IN_STREAM

    def __init__(self, *, stream_id: uuid.UUID, asked: int, version: int) -> None:
        self.stream_id, self.asked, self.version = stream_id, asked, version
        super().__init__(
            VERSION_NOT_IN_STREAM_MESSAGE.format(stream_id=stream_id, version=version, asked=asked)
        )


class NotSealed(EventStoreError):
    """An event after the signing epoch has no signed event after it: it cannot be vouched for."""

    code = NOT_SEALED

    def __init__(self, *, stream_id: uuid.UUID, version: int) -> None:
        self.stream_id, self.version = stream_id, version
        super().__init__(NOT_SEALED_MESSAGE.format(stream_id=stream_id, version=version))


def build_pack(
    stream_id: uuid.UUID,
    *,
    up_to_version: int | None = None,
    snapshot_schema_version: int | None = None,
) -> dict[str, Any]:
    """Return the evidence pack of a stream up to a version, as a JSON-able dict.

    Args:
        stream_id: the stream.
        up_to_version: the last version the pack is about (default: the stream's newest).
            When that event is not signed, the events up to the next signed one are
            included too.
        snapshot_schema_version: the state schema version whose snapshots the application
            loads; the newest verified one at or below ``up_to_version`` is included.
            None: no snapshot.

    Raises:
        StreamNotFound: the stream has no events.
        VersionNotInStream: ``up_to_version`` is below 1 or beyond the stream.
        NotSealed: no signature covers the event at ``up_to_version`` (the stream fails
            verification).
    """
    epoch = signing_epoch()
    # No read transaction is needed: stored events and snapshots never change, and what is
    # appended meanwhile lies beyond the versions read here.
    head, sealed_through = _head_and_seal(stream_id, up_to_version)
    asked = head if up_to_version is None else up_to_version
    rows = _event_rows(stream_id, sealed_through or asked)
    if sealed_through is None and rows[-1][0] >= epoch.events_from_position:
        raise NotSealed(stream_id=stream_id, version=asked)
    snapshot = None
    if snapshot_schema_version is not None:
        snapshot = _snapshot(stream_id, snapshot_schema_version, asked)
    run = last_run()
    return {
        "format": EVIDENCE_FORMAT,
        "stream_id": str(stream_id),
        "up_to_version": asked,
        "sealed_through": sealed_through,
        "events": [_event(stream_id, row) for row in rows],
        "snapshot": snapshot,
        "public_keys": keyring().public_key_texts(),
        "signing_epoch": {"events_from_position": epoch.events_from_position},
        "latest_digest": None
        if run is None
        else {
            "finished_at": canonical_time(run.finished_at),
            "full": run.full,
            "ok": run.ok,
            "head_position": run.head_position,
            "root": run.root,
        },
        "exported_at": canonical_time(datetime.now(UTC)),
    }


def _head_and_seal(stream_id: uuid.UUID, up_to_version: int | None) -> tuple[int, int | None]:
    """The stream's newest version, and its first signed version at or after the asked one."""
    db_stream = backend().db_uuid(stream_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT MAX(version) FROM events WHERE stream_id = %s", [db_stream])
        head = cursor.fetchone()[0] or 0
        if head == 0:
            raise StreamNotFound(stream_id)
        asked = head if up_to_version is None else up_to_version
        if isinstance(asked, bool) or not isinstance(asked, int) or not 1 <= asked <= head:
            raise VersionNotInStream(stream_id=stream_id, asked=asked, version=head)
        cursor.execute(
            "SELECT MIN(version) FROM events WHERE stream_id = %s AND version >= %s "
            "AND signature IS NOT NULL",
            [db_stream, asked],
        )
        return head, cursor.fetchone()[0]


def _event_rows(stream_id: uuid.UUID, through: int) -> list[Any]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE stream_id = %s AND version <= %s "
            "ORDER BY version",
            [backend().db_uuid(stream_id), through],
        )
        rows: list[Any] = cursor.fetchall()
        return rows


def _event(stream_id: uuid.UUID, row: Any) -> dict[str, Any]:
    """One event with every field as the chain hash covers it (stored, not upcast)."""
    return {
        "position": row[0],
        "event_id": str(py_uuid(row[1])),
        "stream_id": str(stream_id),
        "stream_type": row[2],
        "version": row[3],
        "event_type": row[4],
        "schema_version": row[5],
        "data": canonical_json(py_json(row[6])),
        "metadata": canonical_json(py_json(row[7])),
        "occurred_at": canonical_time(py_time(row[8])),
        "recorded_at": canonical_time(py_time(row[9])),
        "hash": row[10],
        "signature": row[11],
        "key_id": row[12],
    }


def _snapshot(stream_id: uuid.UUID, schema_version: int, version: int) -> dict[str, Any] | None:
    """The snapshot a load at ``version`` uses (verified by ``load_snapshot``), or None."""
    used = load_snapshot(stream_id, schema_version=schema_version, up_to_version=version)
    if used is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT state, anchor_hash, signature, key_id FROM snapshots "
            "WHERE stream_id = %s AND version = %s",
            [backend().db_uuid(stream_id), used.version],
        )
        state, anchor, signature, key_id = cursor.fetchone()
    return {
        "version": used.version,
        "schema_version": used.schema_version,
        "state": canonical_json(py_json(state)),
        "anchor_hash": anchor,
        "signature": signature,
        "key_id": key_id,
    }
