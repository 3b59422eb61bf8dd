"""Forgery below the application, as a database writer without the signing key does it:
rows written with raw SQL, with hashes computed exactly as the product computes them.
Shared by the integrity tests of the store, the API and the unsigned segment."""

from __future__ import annotations

import base64
import json
import uuid

from django.db import connection
from django.utils import timezone

import eventstore as es
from eventstore.hashing import canonical_json, canonical_time, event_hash
from eventstore.signing import seal_message


def db_stream(stream):
    """A stream id as the connection's vendor stores it."""
    return stream if connection.vendor == "postgresql" else stream.hex


def jsonb_param():
    """The placeholder of a JSON value on the connection's vendor."""
    return "%s::jsonb" if connection.vendor == "postgresql" else "%s"


def forge_snapshot(account_id, version, state, *, signature="", key_id="dev", anchor=None):
    """INSERT a snapshot as anyone allowed to INSERT into ``snapshots`` could."""
    with connection.cursor() as cursor:
        if anchor is None:
            cursor.execute(
                "SELECT hash FROM events WHERE stream_id = %s AND version = %s",
                [db_stream(account_id), version],
            )
            anchor = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO snapshots (stream_id, stream_type, version, schema_version, state, "
            f"created_at, anchor_hash, signature, key_id) VALUES (%s, %s, %s, 1, {jsonb_param()}, "
            "%s, %s, %s, %s)",
            [
                db_stream(account_id),
                "bank.account",
                version,
                canonical_json(state),
                connection.ops.adapt_datetimefield_value(timezone.now()),
                anchor,
                signature or None,
                key_id if signature else None,
            ],
        )


def forge_event(stream_id, data, *, sign_with=None, key_id="dev"):
    """INSERT the stream's next event with a correct SHA-256 chain hash (and, optionally, a
    signature made with ``sign_with``, a private key that is not the application's)."""
    (last,) = es.read_stream(stream_id, upcasted=False)[-1:]
    version = last.version + 1
    event_id = uuid.uuid4()
    now = timezone.now()
    metadata = {"actor": {"type": "user", "username": "mallory"}}
    new_hash = event_hash(
        previous_hash=last.hash,
        event_id=event_id,
        stream_id=stream_id,
        stream_type=last.stream_type,
        version=version,
        event_type="MoneyDeposited",
        data_json=canonical_json(data),
        metadata_json=canonical_json(metadata),
        occurred_text=canonical_time(now),
        recorded_text=canonical_time(now),
        schema_version=1,
    )
    signature = None
    if sign_with is not None:
        raw = sign_with.sign(seal_message(stream_id, version, version, new_hash))
        signature = base64.b64encode(raw).decode()
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO events (event_id, stream_id, stream_type, version, event_type, "
            "schema_version, data, metadata, occurred_at, recorded_at, commit_id, hash, "
            f"signature, key_id) VALUES (%s, %s, %s, %s, 'MoneyDeposited', 1, {jsonb_param()}, "
            f"{jsonb_param()}, %s, %s, %s, %s, %s, %s)",
            [
                db_stream(event_id),
                db_stream(stream_id),
                last.stream_type,
                version,
                json.dumps(data),
                json.dumps(metadata),
                adapt(now),
                adapt(now),
                last.commit_id + 1_000_000,
                new_hash,
                signature,
                key_id if signature else None,
            ],
        )
    return version
