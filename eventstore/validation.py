"""What the store refuses before it touches the database (``InvalidEventError``).

An event is refused when either vendor would store it differently from what was given or
not at all: the value read back would then not be the one hashed, and the event would look
tampered with. So a store moves between PostgreSQL and SQLite unchanged.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from .errors import InvalidEventError
from .hashing import GENESIS_HASH
from .records import NewEvent, StreamAppend, StreamHead

MAX_TYPE_LENGTH = 100


def check_json(value: Any, where: str) -> None:
    """Refuse what either backend would store differently or not at all.

    Args:
        value: a JSON value (payload, metadata, snapshot state).
        where: what it is, for the message (``stream ... event 0.data``).

    Raises:
        InvalidEventError: the value, or a value inside it, cannot be stored as given.
    """
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidEventError(f"{where}: NUL characters cannot be stored")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidEventError(
                f"{where}: lone surrogate characters cannot be stored"
            ) from exc
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidEventError(f"{where}: NaN and Infinity are not JSON")
        # PostgreSQL's jsonb keeps numbers as numeric: -0.0 comes back as 0.0, and a float
        # written with an exponent of 16 or more (1e+16, all of them whole) as an integer,
        # so the value read back would not be the one hashed and the event would look
        # tampered with. Refused on both vendors, so that a store moves between them.
        if (value == 0.0 and math.copysign(1.0, value) < 0) or (
            abs(value) >= 1e16 and value.is_integer()
        ):
            raise InvalidEventError(
                f"{where}: {value!r} would not read back as written (store it as an "
                "integer or a string)"
            )
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidEventError(f"{where}: object keys must be strings, got {key!r}")
            check_json(key, where)
            check_json(item, f"{where}.{key}")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json(item, f"{where}[{index}]")
        return
    raise InvalidEventError(f"{where}: {type(value).__name__} is not a JSON value")


def check_event(event: NewEvent, where: str) -> None:
    """Refuse an event that cannot be stored as given.

    Raises:
        InvalidEventError: the message names the event (``where``) and what is wrong.
    """
    if not isinstance(event, NewEvent):
        raise InvalidEventError(f"{where}: expected a NewEvent, got {type(event).__name__}")
    if not event.event_type or len(event.event_type) > MAX_TYPE_LENGTH:
        raise InvalidEventError(f"{where}: event_type must be 1 to {MAX_TYPE_LENGTH} characters")
    if not isinstance(event.schema_version, int) or event.schema_version < 1:
        raise InvalidEventError(f"{where}: schema_version must be a positive integer")
    if not isinstance(event.data, dict):
        raise InvalidEventError(f"{where}: data must be a JSON object")
    if timezone.is_naive(event.occurred_at):
        raise InvalidEventError(f"{where}: occurred_at must be timezone-aware")
    check_json(event.event_type, f"{where}.event_type")
    check_json(event.data, f"{where}.data")
    check_json(event.metadata, f"{where}.metadata")


def check_appends(appends: Sequence[StreamAppend]) -> None:
    """Refuse a malformed multi-stream append: no stream, a stream named twice, a bad
    expected version or stream type, no events, a bad event, an event id given twice.

    Raises:
        InvalidEventError: the message names the stream or event and what is wrong.
    """
    if not appends:
        raise InvalidEventError("an append needs at least one stream")
    seen_streams: set[uuid.UUID] = set()
    seen_events: set[uuid.UUID] = set()
    for a in appends:
        if a.stream_id in seen_streams:
            raise InvalidEventError(f"stream {a.stream_id} is named twice in one append")
        seen_streams.add(a.stream_id)
        expected = a.expected_version
        if isinstance(expected, StreamHead):
            if expected.version < 0 or (expected.version == 0) != (expected.hash == GENESIS_HASH):
                raise InvalidEventError(f"stream {a.stream_id}: {expected} is not a stream head")
        elif not isinstance(expected, int) or isinstance(expected, bool) or expected < 0:
            raise InvalidEventError(f"stream {a.stream_id}: expected_version must be >= 0")
        if not a.events:
            raise InvalidEventError(f"stream {a.stream_id}: an append needs at least one event")
        if not a.stream_type or len(a.stream_type) > MAX_TYPE_LENGTH:
            raise InvalidEventError(f"stream {a.stream_id}: stream_type must be 1 to 100 chars")
        for i, event in enumerate(a.events):
            check_event(event, f"stream {a.stream_id} event {i}")
            if event.event_id in seen_events:
                raise InvalidEventError(f"event {event.event_id} is given twice in one append")
            seen_events.add(event.event_id)
