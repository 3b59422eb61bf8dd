"""A reusable, append-only event store for Django (knows nothing about banks).

The public API is what this module exports; import nothing else from outside the package
(an import-linter contract and tests/test_private_imports.py hold everyone to that). None
of these modules imports the ORM models at import time, so importing the package is safe
before Django's app registry is ready (settings import the key parsing from here).

Where things are: appends in ``appending`` (optimistic concurrency, the chain, the seals,
gap-free positions), reads and the global order in ``reading``, loads for aggregates in
``loading``, snapshots in ``snapshots``; ``backends`` holds every difference between
PostgreSQL and SQLite; ``validation`` what an append refuses; ``rows`` how database values
come back; ``hashing`` the chain, ``signing`` the seals; ``verification`` checks both (with
``chain_check``, ``snapshot_check``, ``digests``, ``runs``, ``run_records``, ``health`` and
``epoch``), ``evidence`` packs them for auditors; ``upcasting``, ``records``, ``errors``,
``telemetry``.
"""

from __future__ import annotations

from .appending import append, append_streams
from .backends import APPEND_CHANNEL
from .digests import make_digest
from .epoch import signing_epoch
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
from .health import integrity_problems, trigger_problems
from .loading import load_streams, lock_streams
from .reading import (
    count_after,
    head_position,
    read_all,
    read_by_metadata,
    read_events,
    read_stream,
    stream_head,
    stream_version,
    version_at,
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
    StreamHead,
)
from .run_records import RecordedStatus, last_run, recorded_statuses, stream_status
from .runs import run_verification
from .signing import KeyConfigError, dev_key_text, parse_keyring
from .snapshot_check import register_snapshot_replay
from .snapshots import load_snapshot, save_snapshot
from .telemetry import ActiveSpan, record_failure
from .upcasting import register_upcaster
from .verification import verify_all, verify_stream

__all__ = [
    "APPEND_CHANNEL",
    "ActiveSpan",
    "AppendResult",
    "ConcurrencyError",
    "EventData",
    "EventIdReusedError",
    "EventStoreError",
    "ImmutableRecordError",
    "InvalidEventError",
    "KeyConfigError",
    "LoadedStream",
    "NewEvent",
    "RecordedEvent",
    "RecordedStatus",
    "SnapshotData",
    "StoreUnavailableError",
    "StoredSnapshot",
    "StreamAppend",
    "StreamHead",
    "StreamNotFound",
    "append",
    "append_streams",
    "build_pack",
    "count_after",
    "dev_key_text",
    "head_position",
    "integrity_problems",
    "last_run",
    "load_snapshot",
    "load_streams",
    "lock_streams",
    "make_digest",
    "parse_keyring",
    "read_all",
    "read_by_metadata",
    "read_events",
    "read_stream",
    "record_failure",
    "recorded_statuses",
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
