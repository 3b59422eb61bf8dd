"""A reusable, append-only event store for Django (knows nothing about banks).

The public API is what this module exports; import nothing else from outside the package.
Functions that touch the database are loaded lazily so that importing the package is safe
before Django's app registry is ready.
"""

from __future__ import annotations

from typing import Any

from .errors import (
    ConcurrencyError,
    EventIdReusedError,
    EventStoreError,
    ImmutableRecordError,
    InvalidEventError,
    StoreUnavailableError,
    StreamNotFound,
)
from .records import (
    AppendResult,
    EventData,
    LoadedStream,
    NewEvent,
    RecordedEvent,
    SnapshotData,
    StoredSnapshot,
    StreamAppend,
    StreamData,
    StreamHead,
)
from .upcasting import register_upcaster

_LAZY = {
    "APPEND_CHANNEL": "store",
    "append": "store",
    "append_streams": "store",
    "read_stream": "store",
    "read_stream_data": "store",
    "load_streams": "store",
    "read_all": "store",
    "stream_version": "store",
    "stream_head": "store",
    "lock_streams": "store",
    "version_at": "store",
    "head_position": "store",
    "count_after": "store",
    "load_snapshot": "store",
    "save_snapshot": "store",
    "verify_stream": "verification",
    "verify_all": "verification",
    "make_digest": "verification",
    "run_verification": "verification",
    "stream_status": "verification",
    "last_run": "verification",
    "signing_epoch": "verification",
    "register_snapshot_replay": "verification",
    "integrity_problems": "verification",
    "trigger_problems": "verification",
    "build_pack": "evidence",
}

__all__ = [
    "APPEND_CHANNEL",
    "AppendResult",
    "ConcurrencyError",
    "EventData",
    "EventIdReusedError",
    "EventStoreError",
    "ImmutableRecordError",
    "InvalidEventError",
    "LoadedStream",
    "NewEvent",
    "RecordedEvent",
    "SnapshotData",
    "StoreUnavailableError",
    "StoredSnapshot",
    "StreamAppend",
    "StreamData",
    "StreamHead",
    "StreamNotFound",
    "register_upcaster",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eventstore' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
