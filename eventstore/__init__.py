"""A reusable, append-only event store for Django (knows nothing about banks).

The public API is what this module exports; import nothing else from outside the package
(an import-linter contract and tests/test_private_imports.py hold everyone to that). None
of these modules imports the ORM models at import time, so importing the package is safe
before Django's app registry is ready.
"""

from __future__ import annotations

from .errors import (
    ConcurrencyError,
    EventIdReusedError,
    EventStoreError,
    ImmutableRecordError,
    InvalidEventError,
    StoreUnavailableError,
    StreamNotFound,
)
from .evidence import build_pack
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
from .store import (
    APPEND_CHANNEL,
    append,
    append_streams,
    count_after,
    head_position,
    load_snapshot,
    load_streams,
    lock_streams,
    read_all,
    read_stream,
    save_snapshot,
    stream_head,
    stream_version,
    version_at,
)
from .upcasting import register_upcaster
from .verification import (
    integrity_problems,
    last_run,
    make_digest,
    register_snapshot_replay,
    run_verification,
    signing_epoch,
    stream_status,
    trigger_problems,
    verify_all,
    verify_stream,
)

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
    "append",
    "append_streams",
    "build_pack",
    "count_after",
    "head_position",
    "integrity_problems",
    "last_run",
    "load_snapshot",
    "load_streams",
    "lock_streams",
    "make_digest",
    "read_all",
    "read_stream",
    "register_snapshot_replay",
    "register_upcaster",
    "run_verification",
    "save_snapshot",
    "signing_epoch",
    "stream_head",
    "stream_status",
    "stream_version",
    "trigger_problems",
    "verify_all",
    "verify_stream",
    "version_at",
]
