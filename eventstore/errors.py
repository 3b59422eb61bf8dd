"""The event store's errors. Each carries a stable ``code`` that callers may map."""

from __future__ import annotations

import uuid

CONCURRENCY_CONFLICT = "concurrency_conflict"
IMMUTABLE_RECORD = "immutable_record"
EVENT_ID_REUSED = "event_id_reused"
INVALID_EVENT = "invalid_event"
STORE_UNAVAILABLE = "store_unavailable"
STREAM_NOT_FOUND = "stream_not_found"

CONCURRENCY_MESSAGE = "stream {stream_id}: expected version {expected}, but it is at {actual}"
CONCURRENCY_UNKNOWN_MESSAGE = (
    "stream {stream_id}: expected version {expected}, but another append got there first; "
    "roll back the transaction and retry"
)
IMMUTABLE_MESSAGE = (
    "{model} rows are append-only: {operation} is refused. "
    "Events are written only through eventstore.append()/append_streams()."
)
EVENT_ID_REUSED_MESSAGE = (
    "event {event_id} is already stored with other content "
    "(stream {stored_stream}, version {stored_version}, type {stored_type}); "
    "give a new event its own id"
)


class EventStoreError(Exception):
    """Base of every error the event store raises."""

    code = "event_store_error"


class ConcurrencyError(EventStoreError):
    """The stream is not at the version the caller expected; nothing was written."""

    code = CONCURRENCY_CONFLICT

    def __init__(self, *, stream_id: uuid.UUID, expected: int, actual: int | None) -> None:
        self.stream_id = stream_id
        self.expected = expected
        #: The stream's version, or None when it could not be read: an append made with
        #: ``savepoint=False`` was refused, and the caller's transaction must be rolled back.
        self.actual = actual
        super().__init__(
            CONCURRENCY_MESSAGE.format(stream_id=stream_id, expected=expected, actual=actual)
            if actual is not None
            else CONCURRENCY_UNKNOWN_MESSAGE.format(stream_id=stream_id, expected=expected)
        )


class ImmutableRecordError(EventStoreError):
    """Someone tried to change or delete a stored event or snapshot."""

    code = IMMUTABLE_RECORD

    def __init__(self, *, model: str, operation: str) -> None:
        self.model = model
        self.operation = operation
        super().__init__(IMMUTABLE_MESSAGE.format(model=model, operation=operation))


class EventIdReusedError(EventStoreError):
    """An event id is already stored with different content; nothing was written."""

    code = EVENT_ID_REUSED

    def __init__(
        self,
        *,
        event_id: uuid.UUID,
        stored_stream: uuid.UUID,
        stored_version: int,
        stored_type: str,
    ) -> None:
        self.event_id = event_id
        super().__init__(
            EVENT_ID_REUSED_MESSAGE.format(
                event_id=event_id,
                stored_stream=stored_stream,
                stored_version=stored_version,
                stored_type=stored_type,
            )
        )


class InvalidEventError(EventStoreError):
    """An event cannot be stored as given (bad type, NUL characters, not JSON, ...)."""

    code = INVALID_EVENT


class StoreUnavailableError(EventStoreError):
    """The database did not answer in time (lock timeout, connection lost); retry later."""

    code = STORE_UNAVAILABLE


class StreamNotFound(EventStoreError):
    """The stream has no events (at or below the asked version)."""

    code = STREAM_NOT_FOUND

    def __init__(self, stream_id: uuid.UUID) -> None:
        self.stream_id = stream_id
        super().__init__(f"stream {stream_id} has no events")
