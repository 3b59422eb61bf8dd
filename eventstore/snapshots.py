"""Snapshots: signed, anchored to the hash of the event at their version, checked on load.

A snapshot is signed by the application (``signing.snapshot_message``) over the stream,
its version and schema version, its state and its anchor (the stored hash of the event at
its version). Loads use only a snapshot whose check passes (``snapshot_problem``); one that
fails is never used (the stream is replayed without it), counted and logged as a security
event. Snapshots written by another schema version of the state are passed over, never
trusted. Loading an aggregate through its snapshot is ``loading``'s; this module saves
snapshots and reads one alone.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.utils import timezone

from .backends import backend
from .errors import InvalidEventError, StoreUnavailableError
from .hashing import canonical_json
from .records import StoredSnapshot
from .rows import py_json, py_time, py_uuid
from .signing import UnknownKeyError, keyring, snapshot_message
from .telemetry import snapshots_rejected, span
from .validation import check_json

security_log = logging.getLogger("eventstore.security")

# Snapshots whose check passed in this process, by everything the check covered: a stored
# snapshot is loaded again and again (until the next one), and an Ed25519 verification
# costs more than the rest of its load. Bounded; emptied when full or when keys change.
_verified_snapshots: dict[tuple[Any, ...], bool] = {}
_VERIFIED_SNAPSHOTS_MAX = 10_000
_rejections_logged: set[tuple[uuid.UUID, int, str]] = set()


def clear_caches() -> None:
    """Forget the snapshots verified in this process (the keys changed)."""
    _verified_snapshots.clear()


def save_snapshot(
    stream_id: uuid.UUID,
    *,
    stream_type: str,
    version: int,
    schema_version: int,
    state: dict[str, Any],
    anchor: str | None = None,
) -> bool:
    """Store a signed snapshot of a stream's state at ``version`` (a no-op if one exists there).

    Args:
        anchor: the hash of the stream's event at ``version`` when the caller has it (an
            append's ``AppendResult.heads``); read from the store otherwise. A snapshot with
            a wrong anchor is never used by loads.

    Returns:
        True when a new snapshot row was written.

    Raises:
        InvalidEventError: the state is not storable JSON, or the stream has no event at
            ``version``.
        StoreUnavailableError: the database refused or did not answer.
    """
    check_json(state, "snapshot state")
    db = backend()
    with span("snapshot_store.save", "snapshot", aggregate_id=str(stream_id), version=version):
        try:
            return _save_snapshot(stream_id, stream_type, version, schema_version, state, anchor)
        except db.driver_errors as exc:  # the driver's own cursor: not wrapped by Django
            raise StoreUnavailableError(f"the snapshot was not stored ({exc})") from exc


def _save_snapshot(
    stream_id: uuid.UUID,
    stream_type: str,
    version: int,
    schema_version: int,
    state: dict[str, Any],
    anchor: str | None,
) -> bool:
    db = backend()
    state_text = canonical_json(state)
    with db.cursor() as cursor:
        if anchor is None:
            anchor_sql = "SELECT hash FROM events WHERE stream_id = %s AND version = %s"
            with db.traced(cursor, ("SELECT", "events", anchor_sql)):
                db.execute(cursor, anchor_sql, [db.db_uuid(stream_id), version])
                row = cursor.fetchone()
            if row is None:
                raise InvalidEventError(
                    f"stream {stream_id} has no event at version {version} to snapshot"
                )
            anchor = row[0]
        key_id, signature = keyring().sign(
            snapshot_message(stream_id, version, schema_version, anchor, state_text)
        )
        insert_sql = (
            "INSERT INTO snapshots (stream_id, stream_type, version, schema_version, state, "
            f"created_at, anchor_hash, signature, key_id) "
            f"VALUES (%s, %s, %s, %s, {db.json_param}, %s, %s, %s, %s) "
            "ON CONFLICT (stream_id, version) DO NOTHING"
        )
        with db.traced(cursor, ("INSERT", "snapshots", insert_sql)):
            db.execute(
                cursor,
                insert_sql,
                [
                    db.db_uuid(stream_id),
                    stream_type,
                    version,
                    schema_version,
                    state_text,
                    db.db_time(timezone.now()),
                    anchor,
                    signature,
                    key_id,
                ],
            )
            inserted: bool = cursor.rowcount == 1
            return inserted


def load_snapshot(
    stream_id: uuid.UUID, *, schema_version: int, up_to_version: int | None = None
) -> StoredSnapshot | None:
    """Return the newest snapshot at or below ``up_to_version`` in ``schema_version``.

    Snapshots written by another schema version of the state are never trusted: they are
    passed over (the caller then replays more events). Neither is a snapshot that fails
    its signature or anchor check: None then (logged as a security event).
    """
    with span("snapshot_store.load", "snapshot", aggregate_id=str(stream_id)) as current:
        snapshot = _load_snapshot(stream_id, schema_version, up_to_version)
        current.set_attribute("snapshot_version", snapshot.version if snapshot else 0)
        return snapshot


def _load_snapshot(
    stream_id: uuid.UUID, schema_version: int, up_to_version: int | None
) -> StoredSnapshot | None:
    db = backend()
    sql = (
        "SELECT s.stream_id, s.stream_type, s.version, s.schema_version, s.state, s.created_at, "
        "(SELECT hash FROM events e WHERE e.stream_id = s.stream_id AND e.version = s.version), "
        "s.anchor_hash, s.signature, s.key_id "
        "FROM snapshots s WHERE s.stream_id = %s AND s.schema_version = %s "
        "AND (s.signature IS NOT NULL OR s.id >= "
        "COALESCE((SELECT MIN(snapshots_from_id) FROM signing_epoch), 0))"
    )
    params: list[Any] = [db.db_uuid(stream_id), schema_version]
    if up_to_version is not None:
        sql += " AND s.version <= %s"
        params.append(up_to_version)
    sql += " ORDER BY s.version DESC LIMIT 1"
    with db.cursor() as cursor, db.traced(cursor, ("SELECT", "snapshots", sql)):
        db.execute(cursor, sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    state = py_json(row[4])
    if not trusted_snapshot(stream_id, row[2], row[3], state, *row[6:10]):
        return None
    return StoredSnapshot(
        stream_id=py_uuid(row[0]),
        stream_type=row[1],
        version=row[2],
        schema_version=row[3],
        state=state,
        created_at=py_time(row[5]),
    )


def snapshot_problem(
    stream_id: uuid.UUID,
    version: int,
    schema_version: int,
    state: Any,
    event_hash: str | None,
    anchor: str | None,
    signature: str | None,
    key_id: str | None,
) -> str | None:
    """Why a stored snapshot must not be used, or None when it checks out.

    Args:
        event_hash: the stored hash of the stream's event at ``version`` (None: no event).
        anchor, signature, key_id: the snapshot row's own columns.
    """
    if signature is None or key_id is None or anchor is None:
        return "not signed by the application"
    if event_hash is None:
        return f"anchored to version {version}, which the stream does not have"
    if anchor != event_hash:
        return "its anchor is not the hash of the event at its version"
    state_text = canonical_json(state)
    keys = keyring()
    cache_key = (
        stream_id,
        version,
        schema_version,
        anchor,
        signature,
        key_id,
        state_text,
        id(keys),
    )
    if cache_key in _verified_snapshots:
        return None
    try:
        valid = keys.verify(
            key_id,
            signature,
            snapshot_message(stream_id, version, schema_version, anchor, state_text),
        )
    except UnknownKeyError as exc:
        return str(exc)
    if not valid:
        return f"its signature does not verify with key {key_id!r}"
    if len(_verified_snapshots) >= _VERIFIED_SNAPSHOTS_MAX:
        _verified_snapshots.clear()
    _verified_snapshots[cache_key] = True
    return None


def trusted_snapshot(
    stream_id: uuid.UUID,
    version: int,
    schema_version: int,
    state: Any,
    event_hash: str | None,
    anchor: str | None,
    signature: str | None,
    key_id: str | None,
) -> bool:
    """Whether a load may use a stored snapshot (``snapshot_problem`` finds nothing).

    A snapshot that fails is counted (``eventstore.snapshots_rejected``) and logged as a
    security event, once per process and snapshot.
    """
    problem = snapshot_problem(
        stream_id, version, schema_version, state, event_hash, anchor, signature, key_id
    )
    if problem is None:
        return True
    snapshots_rejected.add(1)
    # Logged once per process and snapshot: a forged snapshot is loaded again and again.
    if (stream_id, version, problem) in _rejections_logged:
        return False
    if len(_rejections_logged) >= _VERIFIED_SNAPSHOTS_MAX:
        _rejections_logged.clear()
    _rejections_logged.add((stream_id, version, problem))
    security_log.warning(
        "security: snapshot of stream %s at version %s rejected (%s); replaying the stream "
        "without it. Run `python manage.py verify_events --full` and investigate who wrote "
        "to the snapshots table.",
        stream_id,
        version,
        problem,
        extra={"stream_id": str(stream_id), "version": version, "security_event": True},
    )
    return False
