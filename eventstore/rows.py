"""What the database gives back, as the store's values, whatever the vendor and the cursor.

Django's cursors and psycopg's own return the same columns as different Python types: a
UUID, or its 32 hex digits (SQLite); an aware datetime, a naive one in UTC (SQLite), or
ISO-8601 text; JSON as text or bytes (Django loads jsonb as text), or already decoded. The
functions here accept each of them, so a reader never asks which cursor it holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from .jsoncodec import loads
from .records import RecordedEvent
from .upcasting import has_upcasters, needs_upcast, upcast

# The columns of a RecordedEvent, in its order.
EVENT_COLUMNS = (
    "position, event_id, stream_id, stream_type, version, event_type, schema_version, "
    "data, metadata, occurred_at, recorded_at, commit_id, hash"
)


def py_uuid(value: Any) -> uuid.UUID:
    """A stored UUID (a UUID, or its text) as a UUID."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def py_time(value: Any) -> datetime:
    """A stored time (a datetime, naive in UTC or aware, or ISO-8601 text) as an aware one."""
    when: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    if timezone.is_naive(when):
        when = when.replace(tzinfo=UTC)
    return when


def py_json(value: Any) -> Any:
    """A stored JSON value (text or bytes, or decoded already) decoded."""
    return loads(value) if isinstance(value, str | bytes) else value


def to_recorded(row: Sequence[Any], *, upcasted: bool = True) -> RecordedEvent:
    """A RecordedEvent from a row of ``EVENT_COLUMNS`` read by a Django cursor (both vendors).

    Args:
        row: the row.
        upcasted: apply registered upcasters (False keeps the row as stored).
    """
    event = RecordedEvent(
        position=row[0],
        event_id=py_uuid(row[1]),
        stream_id=py_uuid(row[2]),
        stream_type=row[3],
        version=row[4],
        event_type=row[5],
        schema_version=row[6],
        data_json=row[7],
        metadata_json=row[8],
        occurred_at=py_time(row[9]),
        recorded_at=py_time(row[10]),
        commit_id=row[11],
        hash=row[12],
    )
    return upcast_recorded(event) if upcasted else event


def upcast_recorded(event: RecordedEvent) -> RecordedEvent:
    """The event in its type's newest schema version (itself when no upcaster applies)."""
    if not needs_upcast(event.event_type, event.schema_version):
        return event
    schema_version, data = upcast(event.event_type, event.schema_version, event.data)
    return event._replace(schema_version=schema_version, data_json=data)


def upcast_all(events: list[RecordedEvent]) -> list[RecordedEvent]:
    """``upcast_recorded`` of each event (the list itself when no upcaster is registered)."""
    if not has_upcasters():
        return events
    return [upcast_recorded(event) for event in events]
