"""Verify the store: hash chains, the application's signatures, snapshots, external digests.

What is checked, per stream, in version order:

- the chain: each stored hash is ``sha256(previous hash, canonical content)`` (``hashing``);
- the seals: every signature verifies with its key id's public key over the stream's head
  at that event (``signing``), and every event at or after the signing epoch is covered
  by one (the stream's last event is signed, or belongs to the unsigned segment written
  before signing began);
- the snapshots: signed, anchored to the stored hash of the event at their version, and
  equal to the replay of the events up to it (a replay registered per stream type and
  state schema version with :func:`~eventstore.snapshot_check.register_snapshot_replay`);
- against a digest kept elsewhere: each stream still extends the head the digest saw.

This module is the full pass, which records nothing: :func:`verify_all` over the whole
store (or one stream) and :func:`verify_stream`. Its parts: ``chain_check`` (the walk over
each stream's events: chain, seals, the unsigned segment), ``epoch`` (where signing began),
``snapshot_check``, ``digests``, and ``findings`` (the report). Recorded runs, full and
incremental, are in ``runs`` and what they leave in ``run_records``; the health checks
built on them in ``health``. Only public keys are needed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.db import connection

from .chain_check import StreamChecker, event_rows, walk_streams
from .digests import expected_heads, report_missing_streams
from .epoch import signing_epoch
from .findings import StreamProblem, VerificationReport
from .reading import head_position
from .signing import Keyring, keyring
from .snapshot_check import check_snapshots


def verify_all(
    *,
    digest: dict[str, Any] | None = None,
    stream_id: uuid.UUID | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 2000,
    keys: Keyring | None = None,
) -> VerificationReport:
    """Check every stream (or one) in full: chains, seals, snapshots, and a digest.

    Records nothing (see :func:`~eventstore.runs.run_verification`).

    Args:
        digest: a digest written earlier by :func:`~eventstore.digests.make_digest`; every
            stream it names must still extend it.
        stream_id: verify only this stream.
        progress: called with the number of events checked since the last call.
        chunk: rows fetched per round trip.
        keys: the public keys to verify with (default: the configured ones).

    Returns:
        A report with counts, every stream's head and the problems found.
    """
    keys = keys or keyring()
    epoch = signing_epoch()
    report = VerificationReport(head_position=head_position())
    if epoch.problem:
        report.store_problems.append(epoch.problem)
    if stream_id is None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM events WHERE position < %s", [epoch.events_from_position]
            )
            below = cursor.fetchone()[0]
        if below != epoch.unsigned_events:
            report.store_problems.append(
                f"{below} events lie below the signing epoch (position "
                f"{epoch.events_from_position}) where migration 0005 counted "
                f"{epoch.unsigned_events}: rows were slipped into (or removed from) the "
                "unsigned segment; compare with a backup and a digest from before"
            )
    heads: dict[uuid.UUID, tuple[int, str]] = {}
    if digest is not None:
        heads = expected_heads(report, digest)
    walk_streams(
        report,
        event_rows(stream_id, chunk),
        lambda s: StreamChecker(s, keys, epoch, expected=heads.pop(s, None)),
        progress,
        chunk,
    )
    if stream_id is None:
        report_missing_streams(report, heads)
    check_snapshots(report, keys, epoch, stream_id=stream_id)
    report.problems.sort(key=lambda p: str(p.stream_id))
    return report


def verify_stream(stream_id: uuid.UUID) -> StreamProblem | None:
    """Check one stream in full (chain, seals, snapshots); its first problem, or None.

    Args:
        stream_id: the stream to check.
    """
    report = verify_all(stream_id=stream_id)
    problems = report.problems + report.snapshot_problems
    return problems[0] if problems else None
