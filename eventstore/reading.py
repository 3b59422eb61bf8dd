"""Reading events back: a stream, its versions, and the global order followers read.

The global order is gap-free because appends are serialised (``appending``): every
committed position below a visible one is visible too, so one statement decides what a
follower may see and fetches it, and nothing read past can still appear later.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from django.db import connection

from .backends import backend
from .hashing import GENESIS_HASH
from .jsoncodec import loads
from .records import EventData, RecordedEvent, StreamData, StreamHead
from .rows import EVENT_COLUMNS, to_recorded, upcast_all
from .telemetry import span
from .upcasting import has_upcasters, upcast

# The payload and the metadata as their JSON text: decoded when a follower looks at them.
_READ_ALL_SQL = (
    "SELECT position, event_id, stream_id, stream_type, version, event_type, schema_version, "
    "CAST(data AS text), CAST(metadata AS text), occurred_at, recorded_at, commit_id, hash "
    "FROM events WHERE position > %s ORDER BY position LIMIT %s"
)


def read_stream(
    stream_id: uuid.UUID,
    *,
    after_version: int = 0,
    up_to_version: int | None = None,
    upcasted: bool = True,
) -> list[RecordedEvent]:
    """Return a stream's events in version order.

    Args:
        stream_id: the stream.
        after_version: only events with a version above this.
        up_to_version: only events at or below this version.
        upcasted: apply registered upcasters (False gives the rows as stored).
    """
    sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = %s AND version > %s"
    params: list[Any] = [backend().db_uuid(stream_id), after_version]
    if up_to_version is not None:
        sql += " AND version <= %s"
        params.append(up_to_version)
    sql += " ORDER BY version"
    with (
        span("event_store.load_events", "replay", aggregate_id=str(stream_id)) as current,
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, params)
        events = [to_recorded(row, upcasted=upcasted) for row in cursor.fetchall()]
        current.set_attribute("events_count", len(events))
        return events


def read_stream_data(
    stream_id: uuid.UUID, *, after_version: int = 0, up_to_version: int | None = None
) -> StreamData:
    """Return a stream's events as lean, upcasted tuples, for rebuilding an aggregate.

    Reads only what a replay needs (no metadata, no times), so a long replay costs little
    more than fetching the rows. ``head`` is the last event's (version, hash): append at it.

    Args:
        stream_id: the stream.
        after_version: only events with a version above this (e.g. a snapshot's).
        up_to_version: only events at or below this version.
    """
    with span(
        "event_store.load_events_from_version",
        "replay",
        aggregate_id=str(stream_id),
        from_version=after_version,
    ) as current:
        data = _read_stream_data(stream_id, after_version, up_to_version)
        current.set_attribute("events_count", len(data.events))
        return data


def _read_stream_data(
    stream_id: uuid.UUID, after_version: int, up_to_version: int | None
) -> StreamData:
    db = backend()
    sql = (
        "SELECT version, event_type, schema_version, data, hash FROM events "
        "WHERE stream_id = %s AND version > %s"
    )
    params: list[Any] = [db.db_uuid(stream_id), after_version]
    if up_to_version is not None:
        sql += " AND version <= %s"
        params.append(up_to_version)
    sql += " ORDER BY version"
    with db.cursor() as cursor, db.traced(cursor, ("SELECT", "events", sql)):
        db.execute(cursor, sql, params)
        rows = cursor.fetchall()
    if not rows:
        return StreamData([], None)
    decode = loads
    if has_upcasters():
        events = [
            EventData(row[0], row[1], *upcast(row[1], row[2], decode(row[3]))) for row in rows
        ]
    else:
        events = [EventData(row[0], row[1], row[2], decode(row[3])) for row in rows]
    last = rows[-1]
    return StreamData(events, StreamHead(last[0], last[4]))


def read_heads(cursor: Any, stream_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, str]]:
    """Return each stream's head, (version, hash), read on ``cursor``; (0, "") when empty.

    Args:
        cursor: a cursor of ``backend().cursor()`` or Django's, in the caller's transaction.
        stream_ids: the streams.
    """
    db = backend()
    heads: dict[uuid.UUID, tuple[int, str]] = {}
    sql = "SELECT version, hash FROM events WHERE stream_id = %s ORDER BY version DESC LIMIT 1"
    for stream_id in stream_ids:
        with db.traced(cursor, ("SELECT", "events", sql)):
            db.execute(cursor, sql, [db.db_uuid(stream_id)])
            row = cursor.fetchone()
        heads[stream_id] = (row[0], row[1]) if row else (0, GENESIS_HASH)
    return heads


def stream_head(stream_id: uuid.UUID) -> StreamHead:
    """Return the stream's newest version and hash, to append at (0 and "" when empty)."""
    with backend().cursor() as cursor:
        return StreamHead(*read_heads(cursor, [stream_id])[stream_id])


def stream_version(stream_id: uuid.UUID) -> int:
    """Return the stream's current version (0 when it has no events)."""
    db = backend()
    sql = "SELECT MAX(version) FROM events WHERE stream_id = %s"
    with db.cursor() as cursor, db.traced(cursor, ("SELECT", "events", sql)):
        db.execute(cursor, sql, [db.db_uuid(stream_id)])
        row = cursor.fetchone()
    return row[0] or 0


def version_at(stream_id: uuid.UUID, at: datetime) -> int:
    """Return the newest version of a stream whose event occurred at or before ``at``.

    0 when the stream had no event yet then (or has none at all). Replay the stream up to
    this version for its state at that time: a prefix, never a filtered subset.
    """
    db = backend()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT MAX(version) FROM events WHERE stream_id = %s AND occurred_at <= %s",
            [db.db_uuid(stream_id), db.db_time(at)],
        )
        row = cursor.fetchone()
    return row[0] or 0


def events_by_id(event_ids: list[uuid.UUID]) -> list[RecordedEvent]:
    """Return the stored events with these ids (as stored, not upcast; in no given order)."""
    if not event_ids:
        return []
    marks = ", ".join(["%s"] * len(event_ids))
    db_uuid = backend().db_uuid
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN ({marks})",
            [db_uuid(i) for i in event_ids],
        )
        return [to_recorded(row, upcasted=False) for row in cursor.fetchall()]


def read_events(event_ids: list[uuid.UUID]) -> list[RecordedEvent]:
    """The stored events with these ids, upcast, in the global order (unknown ids are left
    out: compare the ids to tell)."""
    found = events_by_id(list(dict.fromkeys(event_ids)))
    return upcast_all(sorted(found, key=lambda event: event.position))


_METADATA_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_POSITION = 2**63 - 1


def read_by_metadata(
    path: str,
    value: str,
    *,
    before: int | None = None,
    after: int | None = None,
    newest_first: bool = False,
    limit: int = 100,
) -> list[RecordedEvent]:
    """The events whose metadata holds ``value`` at ``path``, in the global order.

    For audits: every event of one command (``"correlation_id"``), everything one person
    did (``"actor.username"``). No index serves these lookups (every index costs every
    append): each scans the events table from one end, up to ``limit`` matches; keep them
    to staff pages and page by position.

    Args:
        path: dotted keys into the metadata, e.g. ``"actor.username"``.
        value: the text to match exactly.
        before, after: only events at positions below / above these.
        newest_first: descending positions (else ascending).
        limit: at most this many events.

    Returns:
        The events, upcast.

    Raises:
        ValueError: a key of ``path`` is not an identifier.
    """
    keys = path.split(".")
    if not all(_METADATA_KEY.fullmatch(key) for key in keys):
        raise ValueError(f"metadata path {path!r}: keys are identifiers joined by dots")
    # Positions are 64-bit: a bound past them is no bound, or excludes everything.
    if (before is not None and before <= 1) or (after is not None and after >= _MAX_POSITION):
        return []
    db = backend()
    sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE {db.metadata_text(keys)} = %s"
    params: list[Any] = [value]
    if before is not None and before <= _MAX_POSITION:
        sql += " AND position < %s"
        params.append(before)
    if after is not None and after >= 1:
        sql += " AND position > %s"
        params.append(after)
    sql += f" ORDER BY position {'DESC' if newest_first else 'ASC'} LIMIT %s"
    params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return upcast_all([to_recorded(row, upcasted=False) for row in rows])


def count_after(position: int) -> int:
    """Return how many stored events come after a global position (a follower's lag)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM events WHERE position > %s", [position])
        count: int = cursor.fetchone()[0]
        return count


def head_position() -> int:
    """Return the highest committed global position (0 for an empty store)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT MAX(position) FROM events")
        row = cursor.fetchone()
    return row[0] or 0


def read_all(*, after_position: int, limit: int = 1000) -> list[RecordedEvent]:
    """Return the events after a global position, in position order, whole appends only.

    One SQL statement decides what is visible and fetches it: with appends serialised,
    every committed position below a visible one is visible too, so nothing read past can
    still appear later. A batch never ends in the middle of one append (a transfer's two
    sides arrive together); an append larger than ``limit`` comes whole, alone.

    Args:
        after_position: the reader's checkpoint (0 to start at the beginning).
        limit: the batch size.

    Raises:
        ValueError: ``limit`` is below 1.
    """
    with span("event_store.read_all", "project", after_position=after_position) as current:
        events = _read_all(after_position, limit)
        current.set_attribute("events_count", len(events))
        return events


def _read_all(after_position: int, limit: int) -> list[RecordedEvent]:
    if limit < 1:
        raise ValueError("limit must be at least 1")
    db = backend()
    with db.follower_cursor() as cursor:
        rows = db.select_recorded(cursor, _READ_ALL_SQL, [after_position, limit])
        if len(rows) < limit:
            return upcast_all(rows)
        last_commit = rows[-1].commit_id
        cut = len(rows)
        while cut > 0 and rows[cut - 1].commit_id == last_commit:
            cut -= 1
        if cut > 0:
            rows = rows[:cut]
        else:
            # One append fills the whole batch: deliver all of it (it committed whole). Its
            # positions are contiguous (appends are serialised), so read on in position
            # order until another append's rows begin.
            while True:
                more = db.select_recorded(cursor, _READ_ALL_SQL, [rows[-1].position, limit])
                same = [row for row in more if row.commit_id == last_commit]
                rows += same
                if len(same) < limit:
                    break
    return upcast_all(rows)
