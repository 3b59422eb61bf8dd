"""Check snapshots: signed, anchored to their event, and equal to the replay of the events.

A snapshot is what a load trusts instead of replaying a stream from version 1, so each is
checked for its signature and its anchor (the stored hash of the event at its version,
``snapshots.snapshot_problem``) and, when a replay is registered for its stream type and
state schema version (:func:`register_snapshot_replay`), for its state: the replay of the
events after the stream's previous good snapshot (or from version 1) up to its version.
Snapshots written before the signing epoch are counted and not checked: loads never use
them. Only the first bad snapshot of each stream is reported.

An incremental run checks only the snapshots written since the last run; the base of each
stream's replay is then the newest earlier snapshot that still checks out.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.db import connection

from .backends import backend
from .epoch import Epoch
from .findings import StreamProblem, VerificationReport
from .hashing import canonical_json
from .reading import read_stream_data
from .records import EventData, SnapshotData
from .rows import py_json, py_uuid
from .signing import Keyring
from .snapshots import snapshot_problem

_SNAPSHOT_COLUMNS = (
    "id, stream_id, stream_type, version, schema_version, state, anchor_hash, signature, key_id"
)

# (stream type, state schema version) -> replay(stream_id, base snapshot or None, events)
Replay = Callable[[uuid.UUID, SnapshotData | None, list[EventData]], dict[str, Any]]
_replays: dict[tuple[str, int], Replay] = {}


def register_snapshot_replay(stream_type: str, schema_version: int, replay: Replay) -> None:
    """Teach verification how to recompute a snapshot's state from events.

    ``replay(stream_id, base, events)`` returns the state after applying ``events`` (the
    stream's events after ``base``, or from version 1 when ``base`` is None), in the shape
    snapshots store. Snapshots of unregistered kinds are checked for signature and anchor
    only (the report counts them).

    Args:
        stream_type: the stream type whose snapshots ``replay`` recomputes.
        schema_version: the state schema version of those snapshots.
        replay: the function recomputing their state.
    """
    _replays[(stream_type, schema_version)] = replay


def check_snapshots(
    report: VerificationReport,
    keys: Keyring,
    epoch: Epoch,
    *,
    stream_id: uuid.UUID | None = None,
    after_id: int = 0,
) -> None:
    """Check snapshots (all, one stream's, or those with an id above ``after_id``).

    Counts and the first bad snapshot of each stream are added to ``report``.

    Args:
        report: the report to add to.
        keys: the public keys to verify signatures with.
        epoch: where signing began (older unsigned snapshots are only counted).
        stream_id: only this stream's snapshots.
        after_id: only snapshots with a higher id (an incremental run's).
    """
    sql = f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE id > %s"
    params: list[Any] = [after_id]
    if stream_id is not None:
        sql += " AND stream_id = %s"
        params.append(backend().db_uuid(stream_id))
    sql += " ORDER BY stream_id, version"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    flagged: set[uuid.UUID] = set()
    base: SnapshotData | None = None
    base_stream: uuid.UUID | None = None
    for row in rows:
        snap_id, stream, stream_type, version, schema_version = row[:5]
        stream = py_uuid(stream)
        state = py_json(row[5])
        report.snapshots += 1
        report.snapshot_id_reached = max(report.snapshot_id_reached, snap_id)
        if stream != base_stream:
            base_stream = stream
            base = _verified_base(stream, schema_version, version, after_id) if after_id else None
        if row[7] is None and snap_id < epoch.snapshots_from_id:
            report.unsigned_snapshots += 1  # from before signing: loads never use it
            continue
        if base is not None and base.schema_version != schema_version:
            base = None
        data = read_stream_data(
            stream, after_version=base.version if base else 0, up_to_version=version
        )
        event_hash = data.head.hash if data.head and data.head.version == version else None
        problem = snapshot_problem(stream, version, schema_version, state, event_hash, *row[6:9])
        if problem is None:
            replay = _replays.get((stream_type, schema_version))
            if replay is None:
                report.snapshots_state_unchecked += 1
            elif canonical_json(replay(stream, base, data.events)) != canonical_json(state):
                problem = "its state is not the replay of the events up to its version"
        if problem is not None:
            if stream not in flagged:  # the first bad snapshot of each stream
                flagged.add(stream)
                report.snapshot_problems.append(
                    StreamProblem(stream, version, problem, kind="snapshot")
                )
            continue
        base = SnapshotData(version, schema_version, state)


def _verified_base(
    stream_id: uuid.UUID, schema_version: int, below: int, up_to_id: int
) -> SnapshotData | None:
    """The newest snapshot below ``below`` that an earlier run checked and still checks out."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.version, s.schema_version, s.state, "
            "(SELECT hash FROM events e WHERE e.stream_id = s.stream_id "
            "AND e.version = s.version), s.anchor_hash, s.signature, s.key_id "
            "FROM snapshots s WHERE s.stream_id = %s AND s.schema_version = %s "
            "AND s.version < %s AND s.id <= %s AND s.signature IS NOT NULL "
            "ORDER BY s.version DESC LIMIT 1",
            [backend().db_uuid(stream_id), schema_version, below, up_to_id],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    state = py_json(row[2])
    if snapshot_problem(stream_id, row[0], row[1], state, *row[3:7]) is not None:
        return None
    return SnapshotData(row[0], row[1], state)
