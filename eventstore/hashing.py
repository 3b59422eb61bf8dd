"""Tamper evidence: each event's hash chains to the previous event of its stream.

``hash(v) = sha256(hash(v-1) || NUL || canonical(content(v)))`` where content covers the
event's identity (event id, stream id and type, version), its type and schema version, its
data and metadata, and both its times. ``hash(0)`` is the empty string. Canonical JSON
sorts keys, uses no insignificant white space and keeps non-ASCII characters as UTF-8 (the
shape RFC 8785 gives for the integers, strings, lists and objects our events hold).

:func:`event_hash` is the one place that computes it: the append, verification and the
tests' forgeries all call it.
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


def event_hash(
    *,
    previous_hash: str,
    event_id: uuid.UUID,
    stream_id: uuid.UUID,
    stream_type: str,
    version: int,
    event_type: str,
    schema_version: int,
    data_json: str,
    metadata_json: str,
    occurred_text: str,
    recorded_text: str,
) -> str:
    """Return the chain hash of one event, as hex, given the previous event's hash.

    The content is hashed as the canonical JSON of ``[event_id, stream_id, stream_type,
    version, event_type, schema_version, data, metadata, occurred_at, recorded_at]``, built
    here from parts that are canonical already, so that an append does not serialise its
    payload twice (once for the row, once for the hash).

    Args:
        previous_hash: the hash of the stream's previous event (``GENESIS_HASH`` for the
            first).
        data_json: the payload's ``canonical_json``.
        metadata_json: the metadata's ``canonical_json``.
        occurred_text: ``canonical_time`` of when the event occurred.
        recorded_text: ``canonical_time`` of when it was recorded.
    """
    content = (
        f'["{event_id}","{stream_id}",{json.dumps(stream_type, ensure_ascii=False)},'
        f"{version},{json.dumps(event_type, ensure_ascii=False)},{schema_version},"
        f'{data_json},{metadata_json},"{occurred_text}","{recorded_text}"]'
    )
    digest = hashlib.sha256(previous_hash.encode("ascii"))
    digest.update(b"\x00")
    digest.update(content.encode("utf-8"))
    return digest.hexdigest()
