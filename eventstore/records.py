"""Plain value types of the event store's public API (no Django imports)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from .jsoncodec import loads

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class NewEvent:
    """An event to append.

    Attributes:
        event_type: e.g. ``MoneyDeposited``.
        data: the JSON payload.
        schema_version: version of this event type's payload shape.
        occurred_at: when the command happened (the caller's clock).
        event_id: a unique id; re-appending the same id with the same content is a no-op.
        metadata: extra metadata merged over the append's common metadata.
    """

    event_type: str
    data: dict[str, Any]
    occurred_at: datetime
    schema_version: int = 1
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamHead:
    """A stream's newest version and that event's hash (version 0 and "" when empty).

    Passing a head read earlier as the expected version spares the append a read: the
    store then checks, in its INSERT statement, that the event at that version still has
    that hash.
    """

    version: int
    hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamAppend:
    """The events to append to one stream within a multi-stream append."""

    stream_id: uuid.UUID
    stream_type: str
    expected_version: int | StreamHead
    events: list[NewEvent]


class _RecordedRow(NamedTuple):
    position: int
    event_id: uuid.UUID
    stream_id: uuid.UUID
    stream_type: str
    version: int
    event_type: str
    schema_version: int
    data_json: str | dict[str, Any]
    metadata_json: str | dict[str, Any]
    occurred_at: datetime
    recorded_at: datetime
    commit_id: int
    hash: str


class RecordedEvent(_RecordedRow):
    """A stored event as read back (after upcasting): an immutable tuple of its columns.

    A tuple, so that a follower's read builds each event straight from the database row
    (``read_all`` reads hundreds of thousands). The payload and the metadata come as the
    stored JSON text (``data_json``, ``metadata_json``; already decoded where a read had to
    decode it, to upcast it) and are decoded on first access to ``data`` and ``metadata``,
    then kept: a follower pays only for what it looks at. Two RecordedEvents are equal
    when they are the same stored event (position and id).
    """

    # No __slots__: the instance's (lazily created) __dict__ keeps the decoded values.

    def __eq__(self, other: object) -> bool:
        """The same stored event: same position and id (its content cannot differ, whether
        its payload was decoded, or upcast, or not)."""
        if isinstance(other, RecordedEvent):
            return self.position == other.position and self.event_id == other.event_id
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash((self.position, self.event_id))

    @property
    def data(self) -> dict[str, Any]:
        """The event's payload (in the current schema version)."""
        return self._decoded("data", self.data_json)

    @property
    def metadata(self) -> dict[str, Any]:
        """The event's metadata (actor, correlation, causation, trace ids...)."""
        return self._decoded("metadata", self.metadata_json)

    def decoded_with(self, decoder: Callable[[RecordedEvent], _T]) -> _T:
        """``decoder(self)``, computed once per event and decoder, then kept.

        For consumers that turn the same event into their own objects several times: two
        projections handling one batch decode each event once between them.
        """
        cache: dict[Callable[[RecordedEvent], Any], Any] = self.__dict__.setdefault(
            "_decoders",
            {},  # not the method's name: the instance's dict would hide it
        )
        try:
            return cache[decoder]  # type: ignore[no-any-return]
        except KeyError:
            value = cache[decoder] = decoder(self)
            return value

    def _decoded(self, name: str, raw: str | dict[str, Any]) -> dict[str, Any]:
        cache = self.__dict__
        try:
            return cache[name]  # type: ignore[no-any-return]
        except KeyError:
            value = loads(raw) if isinstance(raw, str | bytes) else raw
            cache[name] = value
            return value


class EventData(NamedTuple):
    """The part of a stored event that rebuilding an aggregate needs (after upcasting)."""

    version: int
    event_type: str
    schema_version: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StreamData:
    """A stream's events as lean tuples, and the head to append at after the last one."""

    events: list[EventData]
    head: StreamHead | None


class SnapshotData(NamedTuple):
    """The part of a stored snapshot that rebuilding an aggregate needs."""

    version: int
    schema_version: int
    state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LoadedStream:
    """A stream as an aggregate is rebuilt from it: the newest snapshot at or below the
    wanted version (in the wanted schema version; None if there is none), the events after
    it, and the head to append at (None when the stream has no events at all)."""

    snapshot: SnapshotData | None
    events: list[EventData]
    head: StreamHead | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendResult:
    """Where an append's events landed.

    Attributes:
        positions: the global position of each event, in the order given.
        versions: per stream, the stream's version after the append.
        replayed: True when every event was already stored (idempotent re-append).
        heads: per stream, its new head (version and hash) when this call wrote it; empty
            for a replay.
    """

    positions: list[int]
    versions: dict[uuid.UUID, int]
    replayed: bool = False
    heads: dict[uuid.UUID, StreamHead] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredSnapshot:
    """A stored snapshot of a stream's state at a version."""

    stream_id: uuid.UUID
    stream_type: str
    version: int
    schema_version: int
    state: dict[str, Any]
    created_at: datetime
