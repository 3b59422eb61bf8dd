"""Tamper evidence: each event's hash chains to the previous event of its stream.

``hash(v) = sha256(hash(v-1) || canonical(content(v)))`` where content covers the event's
identity (event id, stream id and type, version), its type and schema version, its data
and metadata, and both its times. ``hash(0)`` is the empty string. Canonical JSON sorts
keys, uses no insignificant white space and keeps non-ASCII characters as UTF-8 (the
shape RFC 8785 gives for the integers, strings, lists and objects our events hold).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = ""


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of ``value``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_time(value: datetime) -> str:
    """Return a datetime as UTC ISO-8601 text with microseconds (what both backends keep)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def content_text(
    *,
    event_id: uuid.UUID,
    stream_id: uuid.UUID,
    stream_type: str,
    version: int,
    event_type: str,
    schema_version: int,
    data_json: str,
    metadata_json: str,
    occurred_at: datetime,
    recorded_text: str,
) -> str:
    """Return the canonical text of an event's content from its already-canonical parts.

    The same text as ``canonical_json([...])`` of the parts, built without serialising the
    payload twice (appends are on the hot path).
    """
    return (
        f'["{event_id}","{stream_id}",{json.dumps(stream_type, ensure_ascii=False)},'
        f"{version},{json.dumps(event_type, ensure_ascii=False)},{schema_version},"
        f'{data_json},{metadata_json},"{canonical_time(occurred_at)}","{recorded_text}"]'
    )


def chain(previous_hash: str, content: str) -> str:
    """Return ``sha256(previous_hash || NUL || content)`` as hex."""
    digest = hashlib.sha256(previous_hash.encode("ascii"))
    digest.update(b"\x00")
    digest.update(content.encode("utf-8"))
    return digest.hexdigest()


def event_hash(
    *,
    previous_hash: str,
    event_id: uuid.UUID,
    stream_id: uuid.UUID,
    stream_type: str,
    version: int,
    event_type: str,
    schema_version: int,
    data: dict[str, Any],
    metadata: dict[str, Any],
    occurred_at: datetime,
    recorded_at: datetime,
) -> str:
    """Return the chain hash of one event given the previous event's hash."""
    return chain(
        previous_hash,
        content_text(
            event_id=event_id,
            stream_id=stream_id,
            stream_type=stream_type,
            version=version,
            event_type=event_type,
            schema_version=schema_version,
            data_json=canonical_json(data),
            metadata_json=canonical_json(metadata),
            occurred_at=occurred_at,
            recorded_text=canonical_time(recorded_at),
        ),
    )
